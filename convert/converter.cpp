#include "converter.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "hf_folder.h"
#include "numpy_sources.h"
#include "onnx_source.h"
#include "torch_sources.h"
#include "torshpkg/error.h"
#include "torshpkg/package.h"
#include "torshpkg/sha256.h"
#include "torshpkg/tensor_loader.h"

namespace torshpkg::convert {
namespace {

namespace fsys = std::filesystem;

std::string stem_of(const std::string& path) {
  return fsys::path(path).stem().string();
}

Plan plan_file(const std::string& path) {
  const std::shared_ptr<const ByteSource> source = open_file_source(path);
  uint8_t magic[9] = {};
  const size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof magic, source->size()));
  source->read_at(0, std::span(magic, n));
  const std::string_view m(reinterpret_cast<const char*>(magic), n);
  if (m.starts_with("PK\x03\x04") || m.starts_with("PK\x05\x06")) {
    auto zip = std::make_shared<const SourceZip>(source);
    if (is_torch_package(*zip)) return plan_torch_package(zip);
    if (is_torch_checkpoint(*zip)) return plan_torch_checkpoint(zip);
    if (is_npz(*zip)) return plan_npz(zip);
    throw unsupported(path,
                      "a ZIP archive that is neither a torch.save checkpoint, a "
                      "torch.package archive nor a NumPy .npz");
  }
  if (m.starts_with("\x93NUMPY")) return plan_npy(source, stem_of(path));
  if (n >= 9 && magic[8] == '{') {
    uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = header << 8 | magic[i];
    if (header < source->size()) return plan_safetensors_file(source, fsys::path(path).filename());
  }
  if (n >= 2 && magic[0] == 0x80 && magic[1] <= 5) {
    throw unsupported(path,
                      "a raw pickle: torch.save's legacy format (before PyTorch 1.6) is "
                      "not converted; re-save it with torch.save (zip format)");
  }
  if (path.ends_with(".onnx") || looks_like_onnx(*source)) {
    const std::string dir = fsys::path(fsys::absolute(path)).parent_path().string();
    return plan_onnx(source, fsys::path(path).filename(), dir);
  }
  throw unsupported(path,
                    "not a model format torshpkg converts (torch.save, torch.package, "
                    ".npy, .npz, ONNX, safetensors, or a Hugging Face folder)");
}

// Writes one weights file through the streaming writer, checking each tensor's byte count.
void write_weights(const WeightsFile& w, const std::string& path) {
  std::vector<TensorSpec> specs;
  for (const PlannedTensor& t : w.tensors) specs.push_back(t.spec);
  SafetensorsWriter writer(path, specs, w.metadata);
  for (size_t i = 0; i < w.tensors.size(); ++i) {
    const PlannedTensor& t = w.tensors[i];
    uint64_t written = 0;
    t.produce([&](std::span<const uint8_t> bytes) {
      writer.write(bytes);
      written += bytes.size();
    });
    if (written != *tensor_bytes(t.spec.dtype, t.spec.shape)) {
      throw corrupt(t.spec.name, "produced " + std::to_string(written) + " bytes");
    }
  }
  writer.commit();
}

// A folder removed with its contents when it goes out of scope.
class TempDir {
 public:
  explicit TempDir(const std::string& near) {
    const fsys::path parent = fsys::absolute(near).parent_path();
    std::string tmpl = (parent / ("." + fsys::path(near).filename().string() + ".convert-XXXXXX"));
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw io_error(parent.string(), "cannot create a temporary folder", errno);
    }
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fsys::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void add_digests(TensorDigests& out, std::map<std::string, std::string>& owner,
                 const std::string& file, const std::string& name, TensorDigest d) {
  const auto it = owner.find(name);
  if (it == owner.end()) {
    owner[name] = file;
    out[name] = std::move(d);
    return;
  }
  if (it->second != "") {  // first clash: re-key the earlier one
    auto earlier = out.extract(name);
    earlier.key() = it->second + ":" + name;
    out.insert(std::move(earlier));
    it->second = "";
  }
  out[file + ":" + name] = std::move(d);
}

void add_safetensors_digests(TensorDigests& out, std::map<std::string, std::string>& owner,
                             const std::string& file, const ByteSource& source) {
  const SafetensorsHeader h = read_safetensors_header(source);
  for (const TensorInfo& t : h.tensors) {
    add_digests(out, owner, file, t.name, {t.dtype, t.shape, tensor_sha256(source, h, t)});
  }
}

}  // namespace

std::string_view to_string(SourceKind kind) {
  switch (kind) {
    case SourceKind::kTorchCheckpoint:
      return "torch.save checkpoint";
    case SourceKind::kTorchPackage:
      return "torch.package archive";
    case SourceKind::kNumpyArray:
      return "NumPy .npy";
    case SourceKind::kNumpyArchive:
      return "NumPy .npz";
    case SourceKind::kOnnx:
      return "ONNX model";
    case SourceKind::kSafetensors:
      return "safetensors file";
    case SourceKind::kHuggingFaceFolder:
      return "Hugging Face model folder";
  }
  return "?";
}

size_t tensor_count(const Plan& plan) {
  size_t n = 0;
  for (const WeightsFile& w : plan.weights) n += w.tensors.size();
  for (const KeptFile& k : plan.kept) {
    if (k.type == ResourceType::kModelWeights && k.path.ends_with(".safetensors") && k.source) {
      n += read_safetensors_header(*k.source).tensors.size();
    }
  }
  return n;
}

Plan plan_conversion(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) throw not_found(path, "no such file or folder");
    throw io_error(path, "cannot stat", errno);
  }
  if (S_ISDIR(st.st_mode)) return plan_hf_folder(path);
  return plan_file(path);
}

static LineageRecord converted_from(const std::string& source, const Plan& plan, size_t tensors) {
  LineageRecord record;
  record.relation = "ConvertedFrom";
  const fsys::path abs = fsys::absolute(source).lexically_normal();
  record.parent =
      abs.has_filename() ? abs.filename().string() : abs.parent_path().filename().string();
  record.description = "converted from a " + std::string(to_string(plan.kind)) +
                       " by torshpkg convert " + TORSHPKG_VERSION;
  record.provenance["source_kind"] = std::string(to_string(plan.kind));
  record.provenance["converter"] = std::string("torshpkg convert ") + TORSHPKG_VERSION;
  record.provenance["tensors"] = std::to_string(tensors);
  if (plan.kind == SourceKind::kHuggingFaceFolder) {
    const FolderDigest d = folder_digest(source);
    record.provenance["source_sha256"] = d.sha256;
    record.provenance["source_size"] = std::to_string(d.bytes);
    record.provenance["source_files"] = std::to_string(d.files);
  } else {
    const auto src = open_file_source(source);
    record.provenance["source_sha256"] = sha256_hex(*src);
    record.provenance["source_size"] = std::to_string(src->size());
  }
  return record;
}

ConvertResult convert_to_package(const std::string& source, const std::string& out, Manifest header,
                                 const WriteOptions& options, bool keep_unsafe_pickles) {
  const Plan plan = plan_conversion(source);
  if (!plan.unsafe_callables.empty()) {
    std::string list;
    for (const std::string& c : plan.unsafe_callables) list += (list.empty() ? "" : "\n") + c;
    if (!keep_unsafe_pickles) {
      std::string shown;
      for (size_t i = 0; i < plan.unsafe_callables.size() && i < 5; ++i) {
        shown += (i ? ", " : "") + plan.unsafe_callables[i];
      }
      if (plan.unsafe_callables.size() > 5) {
        shown += " and " + std::to_string(plan.unsafe_callables.size() - 5) + " more";
      }
      throw unsupported(source, "its pickles reference callables that torch.load would run (" +
                                    shown +
                                    "); give --keep-unsafe-pickles to keep them, listed in "
                                    "the package's metadata");
    }
    header.metadata["torshpkg.unsafe_pickle_callables"] = list;
  }
  // Counting reads the headers of kept safetensors files: once.
  const size_t tensors = tensor_count(plan);
  header.lineage.push_back(converted_from(source, plan, tensors));
  const TempDir tmp(out);
  PackageWriter writer(header);
  std::set<std::string> paths;
  for (size_t i = 0; i < plan.weights.size(); ++i) {
    const WeightsFile& w = plan.weights[i];
    const std::string file = tmp.path() + "/" + std::to_string(i) + ".safetensors";
    write_weights(w, file);
    writer.add_file(w.path, file, ResourceType::kModelWeights);
    paths.insert(w.path);
  }
  for (const KeptFile& k : plan.kept) {
    if (!paths.insert(k.path).second) {
      throw invalid_argument(source + ": two files would be resources/" + k.path);
    }
    ResourceInput in;
    in.path = k.path;
    in.type = k.type;
    in.executable = k.executable;
    if (k.bytes) {
      in.size = k.bytes->size();
      in.source = memory_source(*k.bytes, k.path);
    } else {
      in.source = k.source;
      in.offset = k.offset;
      in.size = k.size;
    }
    writer.add_resource(std::move(in));
  }
  ConvertResult result;
  result.kind = plan.kind;
  result.tensors = tensors;
  result.manifest = writer.write(out, options);
  return result;
}

TensorDigests digests_of_plan(const Plan& plan) {
  TensorDigests out;
  std::map<std::string, std::string> owner;
  for (const WeightsFile& w : plan.weights) {
    for (const PlannedTensor& t : w.tensors) {
      Sha256 h;
      t.produce([&](std::span<const uint8_t> bytes) { h.update(bytes); });
      add_digests(out, owner, w.path, t.spec.name,
                  {t.spec.dtype, t.spec.shape, to_hex(h.finish())});
    }
  }
  for (const KeptFile& k : plan.kept) {
    if (k.type == ResourceType::kModelWeights && k.path.ends_with(".safetensors") && k.source) {
      add_safetensors_digests(out, owner, k.path, *k.source);
    }
  }
  return out;
}

TensorDigests digests_of_package(const Package& package) {
  TensorDigests out;
  std::map<std::string, std::string> owner;
  std::shared_ptr<const Package> alias(&package, [](const Package*) {});
  for (const FileNode& f : package.files()) {
    if (f.kind != FileNode::Kind::kResource || !f.path.ends_with(".safetensors")) continue;
    const std::string path = f.path.substr(std::string_view("resources/").size());
    add_safetensors_digests(out, owner, path, *package_file_source(alias, f));
  }
  return out;
}

}  // namespace torshpkg::convert
