#include "torch_sources.h"

#include <map>
#include <set>

#include "torch_pickle.h"
#include "torshpkg/error.h"

namespace torshpkg::convert {
namespace {

constexpr uint64_t kMaxPickle = 4ull << 30;

// The archive's top folder ("archive/" for "archive/data.pkl"); empty when members differ.
std::string top_folder(const SourceZip& zip) {
  std::string top;
  for (const SourceZipEntry& e : zip.entries()) {
    const size_t slash = e.name.find('/');
    if (slash == std::string::npos) return "";
    const std::string t = e.name.substr(0, slash + 1);
    if (top.empty()) top = t;
    if (t != top) return "";
  }
  return top;
}

ResourceType kept_type(const std::string& path) {
  if (path.ends_with(".py")) return ResourceType::kSource;
  if (path.ends_with(".pkl")) return ResourceType::kBinary;
  if (path.ends_with("extern_modules") || path.ends_with(".txt")) return ResourceType::kText;
  if (path.ends_with("/version") || path.ends_with("python_version") ||
      path.ends_with("byteorder") || path.ends_with("serialization_id")) {
    return ResourceType::kMetadata;
  }
  // Weights are in the safetensors files: a kept .bin or .pt is just bytes.
  const ResourceType guessed = guess_resource_type(path);
  return guessed == ResourceType::kModelWeights ? ResourceType::kBinary : guessed;
}

KeptFile keep(const std::shared_ptr<const SourceZip>& zip, const SourceZipEntry& e,
              const std::string& path) {
  KeptFile k;
  k.path = path;
  k.type = kept_type(path);
  if (e.method == 0) {
    k.source = zip->shared_source();
    k.offset = e.data_offset;
    k.size = e.size;
  } else {
    k.bytes = zip->read_all(e);
  }
  return k;
}

// What a pickle of tensors may reference and still be data: the globals torch.load with
// weights_only=True accepts for state dicts (tensor and parameter rebuilding, storage types,
// OrderedDict, sets, dtypes, devices and sizes). Anything else is code the next torch.load of
// a kept pickle imports and calls.
bool is_safe_global(std::string_view module, std::string_view name) {
  if (module == "torch._utils") {
    return name == "_rebuild_tensor_v2" || name == "_rebuild_tensor_v3" ||
           name == "_rebuild_parameter" || name == "_rebuild_parameter_with_state";
  }
  if (module == "torch") {
    return name.ends_with("Storage") || name == "Size" || name == "device" || name == "float32" ||
           name == "float16" || name == "bfloat16" || name == "float64" || name == "int64" ||
           name == "int32" || name == "int16" || name == "int8" || name == "uint8" ||
           name == "bool" || name == "complex64" || name == "complex128";
  }
  if (module == "collections") return name == "OrderedDict";
  if (module == "builtins" || module == "__builtin__") return name == "set" || name == "frozenset";
  if (module == "torch.serialization") return name == "_get_layout";
  if (module == "_codecs") return name == "encode";
  return false;
}

// The tensors of one pickle, their bytes read from the storages `storage_member` names; the
// callables it references beyond those go to `unsafe`.
std::vector<PlannedTensor> plan_tensors(
    const std::shared_ptr<const SourceZip>& zip, const SourceZipEntry& pickle_entry,
    const std::function<std::string(const std::string& key)>& storage_member,
    std::vector<std::string>& unsafe) {
  const std::vector<uint8_t> bytes = zip->read_all(pickle_entry, kMaxPickle);
  const std::string where = zip->name() + ":" + pickle_entry.name;
  const Pickle pickle = read_pickle(bytes, where);
  std::set<std::string> found;
  for (const auto& v : pickle.values) {
    if (v->kind == PickleValue::Kind::kGlobal && !is_safe_global(v->module, v->text)) {
      found.insert(pickle_entry.name + ": " + v->module + "." + v->text);
    }
  }
  unsafe.insert(unsafe.end(), found.begin(), found.end());
  std::vector<PlannedTensor> out;
  for (TorchTensorRef& t : find_torch_tensors(pickle.root, where)) {
    const std::string member = storage_member(t.storage_key);
    const SourceZipEntry* storage = zip->find(member);
    const std::string what = where + ": tensor " + t.name;
    if (storage == nullptr) throw corrupt(what, "its storage " + member + " is missing");
    StridedView view;
    view.element_size = t.dtype.element_size;
    view.storage_elements = t.storage_numel;
    view.offset = t.storage_offset;
    view.shape = t.shape;
    view.stride = t.stride;
    check_view(view, what);
    uint64_t storage_bytes = 0;
    if (__builtin_mul_overflow(t.storage_numel, uint64_t{t.dtype.element_size}, &storage_bytes) ||
        storage->size < storage_bytes) {
      throw corrupt(what, "its storage " + member + " is shorter than the " +
                              std::to_string(t.storage_numel) + " elements it claims");
    }
    PlannedTensor p;
    p.spec.name = t.name;
    p.spec.dtype = t.dtype.dtype;
    p.spec.shape = t.shape;
    if (t.dtype.split_complex) p.spec.shape.push_back(2);
    const SourceZipEntry entry = *storage;
    p.produce = [zip, entry, view, what](const ByteSink& sink) {
      stream_view(view, member_reader(zip, entry, is_row_major(view)), sink, what);
    };
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace

bool is_torch_checkpoint(const SourceZip& zip) {
  const std::string top = top_folder(zip);
  return !top.empty() && zip.find(top + "data.pkl") != nullptr;
}

Plan plan_torch_checkpoint(std::shared_ptr<const SourceZip> zip) {
  const std::string top = top_folder(*zip);
  Plan plan;
  plan.kind = SourceKind::kTorchCheckpoint;
  WeightsFile w;
  w.path = "model.safetensors";
  w.metadata = {{"format", "pt"}};
  w.tensors = plan_tensors(
      zip, *zip->find(top + "data.pkl"),
      [&](const std::string& key) { return top + "data/" + key; }, plan.unsafe_callables);
  plan.weights.push_back(std::move(w));
  for (const SourceZipEntry& e : zip->entries()) {
    if (e.directory() || e.name.starts_with(top + "data/")) continue;
    plan.kept.push_back(keep(zip, e, "source/" + e.name));
  }
  return plan;
}

bool is_torch_package(const SourceZip& zip) {
  const std::string top = top_folder(zip);
  return !top.empty() && zip.find(top + ".data/version") != nullptr;
}

Plan plan_torch_package(std::shared_ptr<const SourceZip> zip) {
  const std::string top = top_folder(*zip);
  Plan plan;
  plan.kind = SourceKind::kTorchPackage;
  const std::string storage_prefix = top + ".data/";
  for (const SourceZipEntry& e : zip->entries()) {
    if (e.directory()) continue;
    const std::string inner = e.name.substr(top.size());
    const bool storage = e.name.starts_with(storage_prefix) && e.name.ends_with(".storage");
    if (!storage) plan.kept.push_back(keep(zip, e, "torch_package/" + inner));
    if (!e.name.ends_with(".pkl")) continue;
    std::vector<PlannedTensor> tensors = plan_tensors(
        zip, e, [&](const std::string& key) { return storage_prefix + key + ".storage"; },
        plan.unsafe_callables);
    if (tensors.empty()) continue;
    WeightsFile w;
    w.path = inner.substr(0, inner.size() - 4) + ".safetensors";
    w.metadata = {{"format", "pt"}, {"torch_package.pickle", inner}};
    w.tensors = std::move(tensors);
    plan.weights.push_back(std::move(w));
  }
  return plan;
}

}  // namespace torshpkg::convert
