#include "numpy_sources.h"

#include <cctype>
#include <map>

#include "torshpkg/error.h"

namespace torshpkg::convert {
namespace {

constexpr uint64_t kMaxHeader = 1 << 20;

// A parser of the Python literal a .npy header holds: a dict of str keys whose values are
// strings, True/False, or tuples of integers.
class Literal {
 public:
  Literal(std::string_view text, const std::string& what) : t_(text), what_(what) {}

  struct Value {
    enum { kString, kBool, kTuple, kOther } kind = kOther;
    std::string text;
    bool boolean = false;
    std::vector<uint64_t> ints;
  };

  std::map<std::string, Value> dict() {
    std::map<std::string, Value> out;
    expect('{');
    while (true) {
      space();
      if (peek() == '}') break;
      const std::string key = string();
      expect(':');
      space();
      out[key] = value();
      space();
      if (peek() == ',') {
        ++at_;
        continue;
      }
      space();
      if (peek() != '}') fail("expected , or }");
    }
    ++at_;
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw corrupt(what_, "npy header: " + why);
  }
  char peek() const { return at_ < t_.size() ? t_[at_] : '\0'; }
  void space() {
    while (at_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[at_]))) ++at_;
  }
  void expect(char c) {
    space();
    if (peek() != c) fail(std::string("expected ") + c);
    ++at_;
  }
  std::string string() {
    space();
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a string");
    const size_t end = t_.find(q, at_ + 1);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string s(t_.substr(at_ + 1, end - at_ - 1));
    at_ = end + 1;
    return s;
  }
  Value value() {
    Value v;
    const char c = peek();
    if (c == '\'' || c == '"') {
      v.kind = Value::kString;
      v.text = string();
    } else if (t_.substr(at_).starts_with("True") || t_.substr(at_).starts_with("False")) {
      v.kind = Value::kBool;
      v.boolean = c == 'T';
      at_ += v.boolean ? 4 : 5;
    } else if (c == '(') {
      v.kind = Value::kTuple;
      ++at_;
      while (true) {
        space();
        if (peek() == ')') break;
        uint64_t n = 0;
        size_t digits = 0;
        while (std::isdigit(static_cast<unsigned char>(peek()))) {
          if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, peek() - '0', &n)) {
            fail("dimension overflows");
          }
          ++at_;
          ++digits;
        }
        if (digits == 0) fail("expected a dimension");
        if (peek() == 'L') ++at_;
        v.ints.push_back(n);
        if (v.ints.size() > 64) fail("rank above 64");
        space();
        if (peek() == ',') ++at_;
      }
      ++at_;
    } else if (c == '[') {
      // A list of fields: a structured (record) dtype, valid NumPy but not a tensor.
      throw unsupported(what_, "a structured (record) dtype has no safetensors equivalent");
    } else {
      fail("unsupported value in the header (a structured dtype?)");
    }
    return v;
  }

  std::string_view t_;
  std::string what_;
  size_t at_ = 0;
};

struct NpyType {
  char kind;
  unsigned size;
  Dtype dtype;
  bool split_complex;
};

constexpr NpyType kTypes[] = {
    {'b', 1, Dtype::kBool, false}, {'u', 1, Dtype::kU8, false},  {'i', 1, Dtype::kI8, false},
    {'u', 2, Dtype::kU16, false},  {'i', 2, Dtype::kI16, false}, {'f', 2, Dtype::kF16, false},
    {'u', 4, Dtype::kU32, false},  {'i', 4, Dtype::kI32, false}, {'f', 4, Dtype::kF32, false},
    {'u', 8, Dtype::kU64, false},  {'i', 8, Dtype::kI64, false}, {'f', 8, Dtype::kF64, false},
    {'c', 8, Dtype::kC64, false},  {'c', 16, Dtype::kF64, true},
};

// `open` gives the reader of the data when the tensor is written, told whether the view reads
// it front to back (see member_reader).
PlannedTensor planned_array(const NpyHeader& h, const std::string& name,
                            std::function<RangeReader(bool in_order)> open,
                            const std::string& what) {
  StridedView view;
  view.element_size = h.item_size;
  view.shape = h.shape;
  view.stride.resize(h.shape.size());
  uint64_t step = 1;
  const auto count = element_count(h.shape);
  view.storage_elements = *count;
  if (h.fortran_order) {
    for (size_t i = 0; i < h.shape.size(); ++i) {
      view.stride[i] = step;
      step *= h.shape[i];
    }
  } else {
    for (size_t i = h.shape.size(); i-- > 0;) {
      view.stride[i] = step;
      step *= h.shape[i];
    }
  }
  view.byte_swap = h.big_endian && h.item_size > 1;
  view.swap_unit = h.split_complex ? 8 : (h.dtype == Dtype::kC64 ? 4 : 0);
  PlannedTensor p;
  p.spec.name = name;
  p.spec.dtype = h.dtype;
  p.spec.shape = h.shape;
  if (h.split_complex) p.spec.shape.push_back(2);
  const uint64_t data_offset = h.data_offset;
  p.produce = [view, open, data_offset, what](const ByteSink& sink) {
    const RangeReader read = open(is_row_major(view));
    stream_view(
        view, [&](uint64_t offset, std::span<uint8_t> out) { read(data_offset + offset, out); },
        sink, what);
  };
  return p;
}

}  // namespace

NpyHeader read_npy_header(const std::function<void(uint64_t, std::span<uint8_t>)>& read,
                          uint64_t size, const std::string& what) {
  uint8_t head[12];
  if (size < 10) throw corrupt(what, "not a .npy file (too short)");
  read(0, std::span(head, std::min<uint64_t>(12, size)));
  if (std::string_view(reinterpret_cast<const char*>(head), 6) != "\x93NUMPY") {
    throw corrupt(what, "not a .npy file (bad magic)");
  }
  const unsigned major = head[6];
  uint64_t header_len = 0, header_at = 0;
  if (major == 1) {
    header_len = head[8] | head[9] << 8;
    header_at = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) throw corrupt(what, "truncated .npy header");
    header_len = head[8] | head[9] << 8 | head[10] << 16 | static_cast<uint64_t>(head[11]) << 24;
    header_at = 12;
  } else {
    throw unsupported(what, ".npy format version " + std::to_string(major));
  }
  if (header_len > kMaxHeader || header_at + header_len > size) {
    throw corrupt(what, ".npy header runs past the file");
  }
  std::string text(static_cast<size_t>(header_len), '\0');
  read(header_at, std::span(reinterpret_cast<uint8_t*>(text.data()), text.size()));
  auto dict = Literal(text, what).dict();
  const auto& descr = dict["descr"];
  const auto& fortran = dict["fortran_order"];
  const auto& shape = dict["shape"];
  if (descr.kind != Literal::Value::kString || fortran.kind != Literal::Value::kBool ||
      shape.kind != Literal::Value::kTuple) {
    throw corrupt(what, "npy header lacks descr, fortran_order or shape");
  }
  NpyHeader h;
  const std::string& d = descr.text;
  if (d.size() < 3 || std::string_view("<>|=").find(d[0]) == std::string_view::npos) {
    throw unsupported(what, "dtype '" + d + "' is not converted");
  }
  unsigned item = 0;
  for (size_t i = 2; i < d.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(d[i])) || item > 1000) {
      throw unsupported(what, "dtype '" + d + "' is not converted");
    }
    item = item * 10 + static_cast<unsigned>(d[i] - '0');
  }
  const NpyType* type = nullptr;
  for (const NpyType& t : kTypes) {
    if (t.kind == d[1] && t.size == item) type = &t;
  }
  if (type == nullptr) {
    throw unsupported(what, "dtype '" + d +
                                "' has no safetensors equivalent (objects, strings, records, "
                                "long doubles and datetimes are not converted)");
  }
  h.dtype = type->dtype;
  h.item_size = item;
  h.split_complex = type->split_complex;
  h.big_endian = d[0] == '>';
  h.fortran_order = fortran.boolean;
  h.shape = shape.ints;
  h.data_offset = header_at + header_len;
  const auto count = element_count(h.shape);
  if (!count || __builtin_mul_overflow(*count, uint64_t{item}, &h.data_bytes)) {
    throw corrupt(what, "array size overflows");
  }
  if (h.data_bytes != size - h.data_offset) {
    throw corrupt(what, "the array's " + std::to_string(h.data_bytes) + " bytes do not fill the " +
                            std::to_string(size - h.data_offset) + " after the header");
  }
  return h;
}

Plan plan_npy(std::shared_ptr<const ByteSource> source, const std::string& stem) {
  const std::string what = source->name();
  const auto read = [source](uint64_t offset, std::span<uint8_t> out) {
    source->read_at(offset, out);
  };
  const NpyHeader h = read_npy_header(read, source->size(), what);
  Plan plan;
  plan.kind = SourceKind::kNumpyArray;
  WeightsFile w;
  w.path = "model.safetensors";
  w.metadata = {{"format", "np"}};
  w.tensors.push_back(planned_array(
      h, stem, [read](bool) { return RangeReader(read); }, what));
  plan.weights.push_back(std::move(w));
  return plan;
}

bool is_npz(const SourceZip& zip) {
  bool any = false;
  for (const SourceZipEntry& e : zip.entries()) {
    if (e.directory()) continue;
    if (!e.name.ends_with(".npy")) return false;
    any = true;
  }
  return any;
}

Plan plan_npz(std::shared_ptr<const SourceZip> zip) {
  Plan plan;
  plan.kind = SourceKind::kNumpyArchive;
  WeightsFile w;
  w.path = "model.safetensors";
  w.metadata = {{"format", "np"}};
  for (const SourceZipEntry& e : zip->entries()) {
    if (e.directory()) continue;
    const std::string what = zip->name() + ":" + e.name;
    const NpyHeader h = read_npy_header(
        [&](uint64_t offset, std::span<uint8_t> out) { zip->read(e, offset, out); }, e.size, what);
    // Opened when the tensor is written, as the view reads it (a deflated member inflated a
    // window at a time, or spilled to a temporary file for a Fortran-order gather).
    const auto open = [zip, e](bool in_order) { return member_reader(zip, e, in_order); };
    w.tensors.push_back(planned_array(h, e.name.substr(0, e.name.size() - 4), open, what));
  }
  plan.weights.push_back(std::move(w));
  return plan;
}

}  // namespace torshpkg::convert
