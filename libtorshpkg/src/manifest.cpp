// The manifest model's own rules: entry names of a resource, resource types (names, and the
// type a file's name suggests), package names.
#include "torshpkg/manifest.h"

#include <algorithm>
#include <array>

namespace torshpkg {
namespace {

constexpr std::array<std::string_view, 10> kTypeNames = {
    "ModelWeights",  "Config",  "Tokenizer", "Source", "Data",
    "Documentation", "License", "Binary",    "Text",   "Metadata"};

}  // namespace

std::string ResourceEntry::index_entry_name() const {
  return ".torshpkg/index/" + std::to_string(id);
}

std::string ResourceEntry::blocks_entry_name() const {
  return ".torshpkg/blocks/" + std::to_string(id);
}

std::string_view to_string(ResourceType type) {
  return kTypeNames[static_cast<size_t>(type)];
}

std::optional<ResourceType> resource_type_from_name(std::string_view name) {
  for (size_t i = 0; i < kTypeNames.size(); ++i) {
    if (kTypeNames[i] == name) return static_cast<ResourceType>(i);
  }
  return std::nullopt;
}

ResourceType guess_resource_type(std::string_view path) {
  const size_t slash = path.rfind('/');
  std::string base(path.substr(slash == std::string_view::npos ? 0 : slash + 1));
  std::transform(base.begin(), base.end(), base.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const size_t dot = base.rfind('.');
  const std::string ext = dot == std::string::npos ? "" : base.substr(dot + 1);
  auto is = [&](std::initializer_list<std::string_view> list) {
    return std::find(list.begin(), list.end(), ext) != list.end();
  };
  if (base.starts_with("license") || base.starts_with("copying") || base == "notice") {
    return ResourceType::kLicense;
  }
  if (base.starts_with("tokenizer") || base == "vocab.json" || base == "vocab.txt" ||
      base == "merges.txt" || base == "special_tokens_map.json" || ext == "spm" ||
      base.ends_with(".model") || ext == "tiktoken") {
    return ResourceType::kTokenizer;
  }
  if (is({"safetensors", "bin", "pt", "pth", "ckpt", "onnx", "gguf", "h5", "npz", "npy", "tflite",
          "msgpack"})) {
    return ResourceType::kModelWeights;
  }
  if (is({"json", "yaml", "yml", "toml", "ini", "cfg", "conf"})) return ResourceType::kConfig;
  if (is({"py", "cpp", "cc", "c", "h", "hpp", "cu", "rs", "js", "ts", "sh", "go", "java"})) {
    return ResourceType::kSource;
  }
  if (is({"md", "rst", "html", "pdf"})) return ResourceType::kDocumentation;
  if (is({"txt", "log"})) return ResourceType::kText;
  if (is({"csv", "tsv", "parquet", "jsonl", "arrow"})) return ResourceType::kData;
  if (is({"so", "dll", "dylib", "exe", "wasm"})) return ResourceType::kBinary;
  return ResourceType::kData;
}

bool is_valid_package_name(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  const auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(name[0])) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
}

}  // namespace torshpkg
