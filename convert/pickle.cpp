// The restricted pickle machine. Over 500 lines: one interpreter, an opcode per case of one
// loop, with the bounds (stack, memo, sizes) it keeps as it runs; splitting it would split the
// switch.
#include "pickle.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "torshpkg/error.h"

namespace torshpkg::convert {
namespace {

using Kind = PickleValue::Kind;

class Machine {
 public:
  Machine(std::span<const uint8_t> bytes, std::string_view name, const PickleLimits& limits)
      : in_(bytes), name_(name), limits_(limits) {}

  PickleRef run();
  std::vector<std::unique_ptr<PickleValue>> take_values() { return std::move(values_list_); }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw corrupt(name_, "pickle: " + why + " at byte " + std::to_string(op_at_));
  }
  const uint8_t* take(size_t n) {
    if (n > in_.size() - at_) fail("truncated");
    const uint8_t* p = in_.data() + at_;
    at_ += n;
    return p;
  }
  uint64_t le(size_t n) {
    const uint8_t* p = take(n);
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
    return v;
  }
  std::string_view line() {
    const auto* start = in_.data() + at_;
    const void* nl = std::memchr(start, '\n', in_.size() - at_);
    if (nl == nullptr) fail("unterminated line");
    const size_t n = static_cast<const uint8_t*>(nl) - start;
    at_ += n + 1;
    return {reinterpret_cast<const char*>(start), n};
  }
  std::string bytes_of(uint64_t n) {
    if (n > in_.size() - at_) fail("truncated");
    const uint8_t* p = take(static_cast<size_t>(n));
    return {reinterpret_cast<const char*>(p), static_cast<size_t>(n)};
  }

  [[noreturn]] void over(const std::string& limit) const {
    throw unsupported(name_, "pickle: more than " + limit + " (the converter's limit) at byte " +
                                 std::to_string(op_at_));
  }
  // Counts memory the values hold against the budget.
  void charge(uint64_t bytes) {
    used_ += bytes;
    if (used_ > limits_.max_bytes) {
      const uint64_t b = limits_.max_bytes;
      over((b % (1 << 20) == 0 ? std::to_string(b >> 20) + " MiB" : std::to_string(b) + " bytes") +
           " of values");
    }
  }

  PickleRef make(Kind kind) {
    if (values_list_.size() >= limits_.max_values) {
      over(std::to_string(limits_.max_values) + " values");
    }
    charge(sizeof(PickleValue) + 32);  // the value, its allocation and its list slot
    values_list_.push_back(std::make_unique<PickleValue>());
    PickleRef v = values_list_.back().get();
    v->kind = kind;
    return v;
  }
  PickleRef make_int(int64_t i) {
    auto v = make(Kind::kInt);
    v->integer = i;
    return v;
  }
  PickleRef make_text(Kind kind, std::string text) {
    auto v = make(kind);
    charge(text.size());
    v->text = std::move(text);
    return v;
  }

  void push(PickleRef v) {
    if (stack_.size() + marks_.size() >= limits_.max_stack) {
      over(std::to_string(limits_.max_stack) + " stack entries");
    }
    stack_.push_back(std::move(v));
  }
  PickleRef pop() {
    if (stack_.size() <= floor()) fail("stack underflow");
    PickleRef v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  PickleRef& top() {
    if (stack_.size() <= floor()) fail("stack underflow");
    return stack_.back();
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void mark() {
    if (stack_.size() + marks_.size() >= limits_.max_stack) {
      over(std::to_string(limits_.max_stack) + " stack entries");
    }
    marks_.push_back(stack_.size());
  }
  // Pops everything above the last mark, and the mark.
  std::vector<PickleRef> pop_mark() {
    if (marks_.empty()) fail("no mark");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PickleRef> out(std::make_move_iterator(stack_.begin() + static_cast<ptrdiff_t>(m)),
                               std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return out;
  }

  void memo_put(uint64_t key) {
    if (stack_.size() <= floor()) fail("memoize with an empty stack");
    if (!memo_.contains(key)) {
      if (memo_.size() >= limits_.max_memo)
        over(std::to_string(limits_.max_memo) + " memo entries");
      charge(64);  // a hash map node
    }
    memo_[key] = stack_.back();
  }
  void memo_get(uint64_t key) {
    const auto it = memo_.find(key);
    if (it == memo_.end()) fail("memo entry " + std::to_string(key) + " missing");
    push(it->second);
  }

  PickleRef tuple_of(std::vector<PickleRef> items) {
    charge(items.size() * sizeof(PickleRef));
    auto t = make(Kind::kTuple);
    t->items = std::move(items);
    return t;
  }
  PickleRef global(std::string module, std::string name) {
    auto g = make(Kind::kGlobal);
    charge(module.size() + name.size());
    g->module = std::move(module);
    g->text = std::move(name);
    return g;
  }
  PickleRef object(PickleRef callable, PickleRef args) {
    auto o = make(Kind::kObject);
    o->callable = std::move(callable);
    o->args = std::move(args);
    return o;
  }

  void set_items(const PickleRef& target, std::vector<PickleRef> kv) {
    if (kv.size() % 2 != 0) fail("odd number of items for SETITEMS");
    if (target->kind != Kind::kDict && target->kind != Kind::kObject) fail("SETITEM on a non-dict");
    charge(kv.size() / 2 * sizeof(std::pair<PickleRef, PickleRef>) * 2);  // with vector growth
    for (size_t i = 0; i < kv.size(); i += 2) target->entries.emplace_back(kv[i], kv[i + 1]);
  }
  void append(const PickleRef& target, std::vector<PickleRef> items) {
    if (target->kind != Kind::kList && target->kind != Kind::kObject &&
        target->kind != Kind::kSet) {
      fail("APPEND to a non-list");
    }
    charge(items.size() * sizeof(PickleRef) * 2);  // with vector growth
    for (auto& v : items) target->items.push_back(std::move(v));
  }

  PickleRef int_from_text(std::string_view text, bool is_long);
  PickleRef long_from_bytes(std::string bytes);

  std::span<const uint8_t> in_;
  std::string name_;
  PickleLimits limits_;
  uint64_t used_ = 0;
  size_t at_ = 0;
  size_t op_at_ = 0;
  std::vector<std::unique_ptr<PickleValue>> values_list_;
  std::vector<PickleRef> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PickleRef> memo_;
};

PickleRef Machine::int_from_text(std::string_view text, bool is_long) {
  if (is_long && !text.empty() && text.back() == 'L') text.remove_suffix(1);
  if (!is_long && text == "00") {
    auto b = make(Kind::kBool);
    return b;
  }
  if (!is_long && text == "01") {
    auto b = make(Kind::kBool);
    b->boolean = true;
    return b;
  }
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc::result_out_of_range) return make_text(Kind::kBigInt, std::string(text));
  if (ec != std::errc() || end != text.data() + text.size()) fail("bad integer literal");
  return make_int(v);
}

PickleRef Machine::long_from_bytes(std::string bytes) {
  if (bytes.size() <= 8) {
    uint64_t v = 0;
    for (size_t i = 0; i < bytes.size(); ++i) {
      v |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
    }
    if (!bytes.empty() && bytes.size() < 8 && (static_cast<uint8_t>(bytes.back()) & 0x80)) {
      v |= ~uint64_t{0} << (8 * bytes.size());  // sign-extend
    }
    return make_int(static_cast<int64_t>(v));
  }
  return make_text(Kind::kBigInt, std::move(bytes));
}

PickleRef Machine::run() {
  while (true) {
    op_at_ = at_;
    const uint8_t op = *take(1);
    switch (op) {
      case 0x80:  // PROTO
        if (*take(1) > 5) fail("unknown protocol");
        break;
      case 0x95:  // FRAME: a length prefix only
        le(8);
        break;
      case '.': {  // STOP
        if (!marks_.empty() || stack_.size() != 1)
          fail("STOP with a stack of " + std::to_string(stack_.size()));
        return stack_.back();
      }
      case '(':  // MARK
        mark();
        break;
      case '0':  // POP
        if (stack_.size() > floor()) {
          stack_.pop_back();
        } else {
          pop_mark();  // POP at a mark discards the mark
        }
        break;
      case '1':  // POP_MARK
        pop_mark();
        break;
      case '2':  // DUP
        push(top());
        break;
      case 'N':
        push(make(Kind::kNone));
        break;
      case 0x88:    // NEWTRUE
      case 0x89: {  // NEWFALSE
        auto b = make(Kind::kBool);
        b->boolean = op == 0x88;
        push(b);
        break;
      }
      case 'I':
        push(int_from_text(line(), false));
        break;
      case 'L':
        push(int_from_text(line(), true));
        break;
      case 'J':
        push(make_int(static_cast<int32_t>(le(4))));
        break;
      case 'K':
        push(make_int(static_cast<int64_t>(le(1))));
        break;
      case 'M':
        push(make_int(static_cast<int64_t>(le(2))));
        break;
      case 0x8a:  // LONG1
        push(long_from_bytes(bytes_of(le(1))));
        break;
      case 0x8b: {  // LONG4
        const auto n = static_cast<int32_t>(le(4));
        if (n < 0) fail("negative length");
        push(long_from_bytes(bytes_of(static_cast<uint64_t>(n))));
        break;
      }
      case 'F': {
        const std::string text(line());
        char* end = nullptr;
        auto f = make(Kind::kFloat);
        f->real = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size()) fail("bad float literal");
        push(f);
        break;
      }
      case 'G': {  // BINFLOAT: big-endian double
        const uint8_t* p = take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = bits << 8 | p[i];
        auto f = make(Kind::kFloat);
        std::memcpy(&f->real, &bits, 8);
        push(f);
        break;
      }
      case 'S': {  // STRING: a quoted repr; kept as its text without the quotes
        std::string_view t = line();
        if (t.size() < 2 || (t.front() != '\'' && t.front() != '"') || t.back() != t.front()) {
          fail("bad STRING literal");
        }
        push(make_text(Kind::kBytes, std::string(t.substr(1, t.size() - 2))));
        break;
      }
      case 'T':    // BINSTRING
      case 'B': {  // BINBYTES
        const auto n = static_cast<int64_t>(static_cast<int32_t>(le(4)));
        if (op == 'T' && n < 0) fail("negative length");
        push(make_text(Kind::kBytes, bytes_of(static_cast<uint32_t>(n))));
        break;
      }
      case 'U':  // SHORT_BINSTRING
      case 'C':  // SHORT_BINBYTES
        push(make_text(Kind::kBytes, bytes_of(le(1))));
        break;
      case 0x8e:  // BINBYTES8
      case 0x96:  // BYTEARRAY8
        push(make_text(Kind::kBytes, bytes_of(le(8))));
        break;
      case 'V':  // UNICODE (raw-unicode-escape; kept as is)
        push(make_text(Kind::kStr, std::string(line())));
        break;
      case 'X':  // BINUNICODE
        push(make_text(Kind::kStr, bytes_of(le(4))));
        break;
      case 0x8c:  // SHORT_BINUNICODE
        push(make_text(Kind::kStr, bytes_of(le(1))));
        break;
      case 0x8d:  // BINUNICODE8
        push(make_text(Kind::kStr, bytes_of(le(8))));
        break;
      case ')':
        push(tuple_of({}));
        break;
      case 't':
        push(tuple_of(pop_mark()));
        break;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        std::vector<PickleRef> items(op - 0x84);
        for (size_t i = items.size(); i-- > 0;) items[i] = pop();
        push(tuple_of(std::move(items)));
        break;
      }
      case ']':
        push(make(Kind::kList));
        break;
      case 'l': {
        auto l = make(Kind::kList);
        l->items = pop_mark();
        push(l);
        break;
      }
      case 'a': {
        auto v = pop();
        append(top(), {std::move(v)});
        break;
      }
      case 'e': {
        auto items = pop_mark();
        append(top(), std::move(items));
        break;
      }
      case '}':
        push(make(Kind::kDict));
        break;
      case 'd': {
        auto d = make(Kind::kDict);
        set_items(d, pop_mark());
        push(d);
        break;
      }
      case 's': {
        auto v = pop();
        auto k = pop();
        set_items(top(), {std::move(k), std::move(v)});
        break;
      }
      case 'u': {
        auto kv = pop_mark();
        set_items(top(), std::move(kv));
        break;
      }
      case 0x8f:  // EMPTY_SET
        push(make(Kind::kSet));
        break;
      case 0x90: {  // ADDITEMS
        auto items = pop_mark();
        if (top()->kind != Kind::kSet) fail("ADDITEMS to a non-set");
        append(top(), std::move(items));
        break;
      }
      case 0x91: {  // FROZENSET
        auto s = make(Kind::kSet);
        s->items = pop_mark();
        push(s);
        break;
      }
      case 'c': {  // GLOBAL module\nname\n
        std::string module(line());
        std::string name(line());
        push(global(std::move(module), std::move(name)));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        auto name = pop();
        auto module = pop();
        if (module->kind != Kind::kStr || name->kind != Kind::kStr) {
          fail("STACK_GLOBAL needs two strings");
        }
        push(global(module->text, name->text));
        break;
      }
      case 'R': {  // REDUCE
        auto args = pop();
        auto callable = pop();
        push(object(std::move(callable), std::move(args)));
        break;
      }
      case 0x81: {  // NEWOBJ
        auto args = pop();
        auto cls = pop();
        push(object(std::move(cls), std::move(args)));
        break;
      }
      case 0x92: {  // NEWOBJ_EX
        auto kwargs = pop();
        auto args = pop();
        auto cls = pop();
        push(object(std::move(cls), tuple_of({std::move(args), std::move(kwargs)})));
        break;
      }
      case 'i': {  // INST module\nname\n with the marked arguments
        std::string module(line());
        std::string name(line());
        auto args = tuple_of(pop_mark());
        push(object(global(std::move(module), std::move(name)), std::move(args)));
        break;
      }
      case 'o': {  // OBJ: class and arguments after the mark
        auto items = pop_mark();
        if (items.empty()) fail("OBJ without a class");
        auto cls = items.front();
        items.erase(items.begin());
        push(object(std::move(cls), tuple_of(std::move(items))));
        break;
      }
      case 'b': {  // BUILD
        auto state = pop();
        PickleRef& target = top();
        if (target->kind == Kind::kObject) {
          target->state = std::move(state);
        } else {
          // BUILD on a plain value (e.g. a dict subclass rebuilt as a dict): keep the state as
          // an object so nothing is lost.
          auto o = object(nullptr, tuple_of({target}));
          o->state = std::move(state);
          target = o;
        }
        break;
      }
      case 'P': {  // PERSID
        auto p = make(Kind::kPersistentId);
        p->args = make_text(Kind::kStr, std::string(line()));
        push(p);
        break;
      }
      case 'Q': {  // BINPERSID
        auto p = make(Kind::kPersistentId);
        p->args = pop();
        push(p);
        break;
      }
      case 'p': {
        const std::string_view t = line();
        uint64_t key = 0;
        const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), key);
        if (ec != std::errc() || end != t.data() + t.size()) fail("bad PUT index");
        memo_put(key);
        break;
      }
      case 'q':
        memo_put(le(1));
        break;
      case 'r':
        memo_put(le(4));
        break;
      case 0x94:  // MEMOIZE
        memo_put(memo_.size());
        break;
      case 'g': {
        const std::string_view t = line();
        uint64_t key = 0;
        const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), key);
        if (ec != std::errc() || end != t.data() + t.size()) fail("bad GET index");
        memo_get(key);
        break;
      }
      case 'h':
        memo_get(le(1));
        break;
      case 'j':
        memo_get(le(4));
        break;
      case 0x82:
      case 0x83:
      case 0x84:
        throw unsupported(name_, "pickle: extension registry codes (EXT1/2/4) are not read");
      case 0x97:
      case 0x98:
        throw unsupported(name_, "pickle: out-of-band buffers are not read");
      default: {
        static const char* kHex = "0123456789abcdef";
        fail(std::string("unknown opcode 0x") + kHex[op >> 4] + kHex[op & 15]);
      }
    }
  }
}

}  // namespace

Pickle read_pickle(std::span<const uint8_t> bytes, std::string_view name,
                   const PickleLimits& limits) {
  Machine machine(bytes, name, limits);
  Pickle out;
  out.root = machine.run();
  out.values = machine.take_values();
  return out;
}

}  // namespace torshpkg::convert
