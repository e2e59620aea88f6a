#include "torch_pickle.h"

#include <set>
#include <unordered_set>

#include "torshpkg/error.h"

namespace torshpkg::convert {
namespace {

using Kind = PickleValue::Kind;

struct Known {
  std::string_view storage;  // the legacy storage class
  TorchDtype dtype;
};

const Known kKnown[] = {
    {"FloatStorage", {"float32", Dtype::kF32, 4, false}},
    {"DoubleStorage", {"float64", Dtype::kF64, 8, false}},
    {"HalfStorage", {"float16", Dtype::kF16, 2, false}},
    {"BFloat16Storage", {"bfloat16", Dtype::kBF16, 2, false}},
    {"LongStorage", {"int64", Dtype::kI64, 8, false}},
    {"IntStorage", {"int32", Dtype::kI32, 4, false}},
    {"ShortStorage", {"int16", Dtype::kI16, 2, false}},
    {"CharStorage", {"int8", Dtype::kI8, 1, false}},
    {"ByteStorage", {"uint8", Dtype::kU8, 1, false}},
    {"BoolStorage", {"bool", Dtype::kBool, 1, false}},
    {"ComplexFloatStorage", {"complex64", Dtype::kC64, 8, false}},
    {"ComplexDoubleStorage", {"complex128", Dtype::kF64, 16, true}},
    {"UInt16Storage", {"uint16", Dtype::kU16, 2, false}},
    {"UInt32Storage", {"uint32", Dtype::kU32, 4, false}},
    {"UInt64Storage", {"uint64", Dtype::kU64, 8, false}},
    {"Float8_e4m3fnStorage", {"float8_e4m3fn", Dtype::kF8_E4M3, 1, false}},
    {"Float8_e5m2Storage", {"float8_e5m2", Dtype::kF8_E5M2, 1, false}},
    {"Float8_e4m3fnuzStorage", {"float8_e4m3fnuz", Dtype::kF8_E4M3FNUZ, 1, false}},
    {"Float8_e5m2fnuzStorage", {"float8_e5m2fnuz", Dtype::kF8_E5M2FNUZ, 1, false}},
    {"Float8_e8m0fnuStorage", {"float8_e8m0fnu", Dtype::kF8_E8M0, 1, false}},
};

constexpr size_t kMaxDepth = 2000;
constexpr size_t kMaxPath = 4096;
constexpr size_t kMaxRank = 64;
// Shared values are walked once per path to them (tied weights get both names); a hostile
// pickle could nest sharing so the paths multiply.
constexpr uint64_t kMaxVisits = 20'000'000;

class Walker {
 public:
  explicit Walker(const std::string& file) : file_(file) {}

  void walk(PickleRef v, const std::string& path, size_t depth) {
    if (v == nullptr) return;
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
    if (++visits_ > kMaxVisits) fail("too many paths to walk (shared values nested too often)");
    if (!on_path_.insert(v).second) return;  // a cycle
    visit(v, path, depth);
    on_path_.erase(v);
  }

  std::vector<TorchTensorRef> take() { return std::move(tensors_); }

 private:
  [[noreturn]] void fail(const std::string& why) const { throw corrupt(file_, "pickle: " + why); }

  // Tensor names are paths of keys; a memoized long key nested deep would make them grow
  // quadratically, so a path is limited (safetensors names are short in practice).
  std::string join(const std::string& path, const std::string& part) const {
    if (path.size() + part.size() + 1 > kMaxPath) {
      throw unsupported(file_, "pickle: a tensor name longer than the limit of " +
                                   std::to_string(kMaxPath) + " bytes");
    }
    return path.empty() ? part : path + "." + part;
  }

  static bool key_text(PickleRef k, std::string& out) {
    if (k->kind == Kind::kStr || k->kind == Kind::kBytes) {
      out = k->text;
      return true;
    }
    if (k->kind == Kind::kInt) {
      out = std::to_string(k->integer);
      return true;
    }
    return false;
  }

  void visit(PickleRef v, const std::string& path, size_t depth) {
    switch (v->kind) {
      case Kind::kDict:
        walk_entries(v, path, depth);
        return;
      case Kind::kList:
      case Kind::kTuple:
      case Kind::kSet:
        for (size_t i = 0; i < v->items.size(); ++i) {
          walk(v->items[i], join(path, std::to_string(i)), depth + 1);
        }
        return;
      case Kind::kObject:
        visit_object(v, path, depth);
        return;
      default:
        return;
    }
  }

  void walk_entries(PickleRef v, const std::string& path, size_t depth) {
    for (const auto& [k, value] : v->entries) {
      std::string key;
      if (key_text(k, key)) walk(value, join(path, key), depth + 1);
    }
  }

  void visit_object(PickleRef v, const std::string& path, size_t depth) {
    if (v->is_call_of("torch._utils", "_rebuild_tensor_v2") ||
        v->is_call_of("torch._utils", "_rebuild_tensor_v3")) {
      add_tensor(v, path);
      return;
    }
    if (v->is_call_of("torch._utils", "_rebuild_parameter") ||
        v->is_call_of("torch._utils", "_rebuild_parameter_with_state")) {
      if (v->args == nullptr || v->args->kind != Kind::kTuple || v->args->items.empty()) {
        fail("_rebuild_parameter without a tensor");
      }
      walk(v->args->items[0], path, depth + 1);
      return;
    }
    if (v->callable != nullptr && v->callable->kind == Kind::kGlobal &&
        v->callable->module == "torch._utils" &&
        (v->callable->text.starts_with("_rebuild_qtensor") ||
         v->callable->text.starts_with("_rebuild_sparse") ||
         v->callable->text.starts_with("_rebuild_nested"))) {
      throw unsupported(file_, "tensor " + path + " is built by torch._utils." + v->callable->text +
                                   ", which is not converted");
    }
    // An OrderedDict or another mapping filled by SETITEMS; a list-like filled by APPENDS.
    walk_entries(v, path, depth);
    for (size_t i = 0; i < v->items.size(); ++i) {
      walk(v->items[i], join(path, std::to_string(i)), depth + 1);
    }
    if (v->state != nullptr) walk_state(v->state, path, depth + 1);
  }

  // A module's state: its parameters, buffers and submodules carry their own names.
  void walk_state(PickleRef state, const std::string& path, size_t depth) {
    if (state->kind == Kind::kTuple) {  // (dict state, slot state)
      for (PickleRef s : state->items) walk_state(s, path, depth + 1);
      return;
    }
    if (state->kind != Kind::kDict) {
      walk(state, path, depth + 1);
      return;
    }
    for (const auto& [k, value] : state->entries) {
      std::string key;
      if (!key_text(k, key)) continue;
      if (key == "_parameters" || key == "_buffers" || key == "_modules") {
        walk(value, path, depth + 1);
      } else {
        walk(value, join(path, key), depth + 1);
      }
    }
  }

  static bool as_uint(PickleRef v, uint64_t& out) {
    if (v == nullptr || v->kind != Kind::kInt || v->integer < 0) return false;
    out = static_cast<uint64_t>(v->integer);
    return true;
  }

  std::vector<uint64_t> uint_tuple(PickleRef v, const std::string& what, const std::string& name) {
    if (v == nullptr || (v->kind != Kind::kTuple && v->kind != Kind::kList)) {
      fail("tensor " + name + ": " + what + " is not a tuple");
    }
    if (v->items.size() > kMaxRank) fail("tensor " + name + ": rank above 64");
    std::vector<uint64_t> out;
    for (PickleRef item : v->items) {
      uint64_t x = 0;
      // torch.Size is pickled as a tuple; a Size object (REDUCE of torch.Size) has a tuple arg.
      if (!as_uint(item, x)) fail("tensor " + name + ": " + what + " holds a non-integer");
      out.push_back(x);
    }
    return out;
  }

  PickleRef size_tuple(PickleRef v) {
    if (v != nullptr && v->is_call_of("torch", "Size") && v->args != nullptr &&
        v->args->kind == Kind::kTuple && v->args->items.size() == 1) {
      return v->args->items[0];
    }
    return v;
  }

  void add_tensor(PickleRef call, const std::string& path) {
    const std::string name = path.empty() ? "tensor" : path;
    PickleRef args = call->args;
    if (args == nullptr || args->kind != Kind::kTuple || args->items.size() < 4) {
      fail("tensor " + name + ": _rebuild_tensor needs (storage, offset, size, stride, ...)");
    }
    PickleRef pid = args->items[0];
    if (pid->kind != Kind::kPersistentId || pid->args == nullptr ||
        pid->args->kind != Kind::kTuple || pid->args->items.size() < 5) {
      fail("tensor " + name + ": its storage is not a persistent id ('storage', type, key, ...)");
    }
    const auto& p = pid->args->items;
    if (p[0]->kind != Kind::kStr || p[0]->text != "storage") {
      fail("tensor " + name + ": persistent id is not a storage");
    }
    TorchTensorRef t;
    t.name = name;
    const TorchDtype* dtype = nullptr;
    if (p[1]->kind == Kind::kGlobal && p[1]->module == "torch") {
      dtype = torch_dtype_of_storage(p[1]->text);
    }
    // _rebuild_tensor_v3 (an untyped storage) names the dtype as its 7th argument.
    if (call->is_call_of("torch._utils", "_rebuild_tensor_v3") && args->items.size() >= 7 &&
        args->items[6]->kind == Kind::kGlobal && args->items[6]->module == "torch") {
      dtype = torch_dtype_of_name(args->items[6]->text);
    }
    if (dtype == nullptr) {
      const std::string type = p[1]->kind == Kind::kGlobal ? p[1]->module + "." + p[1]->text : "?";
      throw unsupported(file_, "tensor " + name + ": storage type " + type + " is not converted");
    }
    t.dtype = *dtype;
    if (!key_text(p[2], t.storage_key) || t.storage_key.empty() ||
        t.storage_key.find('/') != std::string::npos ||
        t.storage_key.find("..") != std::string::npos) {
      fail("tensor " + name + ": bad storage key");
    }
    if (!as_uint(p[4], t.storage_numel)) fail("tensor " + name + ": bad storage size");
    if (!as_uint(args->items[1], t.storage_offset)) fail("tensor " + name + ": bad offset");
    t.shape = uint_tuple(size_tuple(args->items[2]), "size", name);
    t.stride = uint_tuple(args->items[3], "stride", name);
    if (t.shape.size() != t.stride.size())
      fail("tensor " + name + ": size and stride differ in rank");
    if (!names_.insert(t.name).second) {
      fail("two tensors would be named " + t.name);
    }
    tensors_.push_back(std::move(t));
  }

  std::string file_;
  std::unordered_set<PickleRef> on_path_;
  uint64_t visits_ = 0;
  std::set<std::string> names_;
  std::vector<TorchTensorRef> tensors_;
};

}  // namespace

const TorchDtype* torch_dtype_of_storage(std::string_view storage_class) {
  for (const Known& k : kKnown) {
    if (k.storage == storage_class) return &k.dtype;
  }
  return nullptr;
}

const TorchDtype* torch_dtype_of_name(std::string_view dtype_name) {
  for (const Known& k : kKnown) {
    if (k.dtype.torch_name == dtype_name) return &k.dtype;
  }
  if (dtype_name == "float") return torch_dtype_of_name("float32");
  if (dtype_name == "double") return torch_dtype_of_name("float64");
  if (dtype_name == "half") return torch_dtype_of_name("float16");
  if (dtype_name == "long") return torch_dtype_of_name("int64");
  if (dtype_name == "int") return torch_dtype_of_name("int32");
  if (dtype_name == "short") return torch_dtype_of_name("int16");
  return nullptr;
}

std::vector<TorchTensorRef> find_torch_tensors(PickleRef root, const std::string& file) {
  Walker w(file);
  w.walk(root, "", 0);
  return w.take();
}

}  // namespace torshpkg::convert
