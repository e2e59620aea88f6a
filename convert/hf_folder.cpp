#include "hf_folder.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "torshpkg/error.h"
#include "torshpkg/sha256.h"
#include "torshpkg/strict_json.h"

namespace torshpkg::convert {
namespace {

namespace fsys = std::filesystem;

constexpr uint64_t kMaxIndex = 64ull << 20;
constexpr size_t kMaxFiles = 100'000;

ResourceType type_of(const std::string& rel) {
  const std::string name = fsys::path(rel).filename().string();
  if (name.ends_with(".safetensors")) return ResourceType::kModelWeights;
  if (name == "config.json" || name == "generation_config.json" ||
      name == "preprocessor_config.json" || name.ends_with(".index.json")) {
    return ResourceType::kConfig;
  }
  if (name.starts_with("tokenizer") || name == "special_tokens_map.json" ||
      name == "added_tokens.json" || name.starts_with("vocab.") || name == "merges.txt" ||
      name.ends_with(".tiktoken") || name == "spiece.model" || name == "sentencepiece.bpe.model") {
    return ResourceType::kTokenizer;
  }
  return guess_resource_type(rel);
}

// Regular files under `folder` (symlinks followed), relative paths, sorted; hidden entries
// skipped.
std::vector<std::string> list_files(const std::string& folder) {
  std::vector<std::string> out;
  const fsys::path root(folder);
  auto it =
      fsys::recursive_directory_iterator(root, fsys::directory_options::follow_directory_symlink);
  for (; it != fsys::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (name.starts_with(".")) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it.depth() > 32) throw unsupported(folder, "folders nested deeper than 32");
    if (!it->is_regular_file()) continue;
    out.push_back(fsys::relative(it->path(), root).generic_string());
    if (out.size() > kMaxFiles) throw unsupported(folder, "more than 100000 files");
  }
  std::sort(out.begin(), out.end());
  return out;
}

void check_index(const std::string& folder, const std::string& index_rel,
                 const std::map<std::string, std::set<std::string>>& shard_tensors) {
  const std::string index_path = folder + "/" + index_rel;
  const auto source = open_file_source(index_path);
  if (source->size() > kMaxIndex) throw corrupt(index_path, "index over 64 MiB");
  std::string text(static_cast<size_t>(source->size()), '\0');
  source->read_at(0, std::span(reinterpret_cast<uint8_t*>(text.data()), text.size()));
  const Json::Value root =
      parse_strict_json(text, 64, [&](const std::string& why) { return corrupt(index_path, why); });
  if (!root.isObject() || !root["weight_map"].isObject()) {
    throw corrupt(index_path, "no weight_map object");
  }
  const Json::Value& map = root["weight_map"];
  const std::string dir = fsys::path(index_rel).parent_path().generic_string();
  const auto shard_path = [&](const std::string& shard) {
    return dir.empty() ? shard : dir + "/" + shard;
  };
  std::set<std::string> mapped_shards;
  size_t mapped = 0;
  for (const std::string& tensor : map.getMemberNames()) {
    if (!map[tensor].isString()) throw corrupt(index_path, "weight_map value is not a file name");
    const std::string shard = shard_path(map[tensor].asString());
    const auto it = shard_tensors.find(shard);
    if (it == shard_tensors.end()) {
      throw corrupt(index_path, "tensor " + tensor + " maps to " + shard + ", which is missing");
    }
    if (!it->second.contains(tensor)) {
      throw corrupt(index_path, "tensor " + tensor + " is not in " + shard);
    }
    mapped_shards.insert(shard);
    ++mapped;
  }
  size_t held = 0;
  for (const std::string& shard : mapped_shards) held += shard_tensors.at(shard).size();
  if (held != mapped) {
    throw corrupt(index_path, "its shards hold " + std::to_string(held) +
                                  " tensors, the weight_map names " + std::to_string(mapped));
  }
}

}  // namespace

Plan plan_safetensors_file(std::shared_ptr<const ByteSource> source, const std::string& file_name) {
  read_safetensors_header(*source);  // every rule checked
  Plan plan;
  plan.kind = SourceKind::kSafetensors;
  KeptFile k;
  k.path = file_name;
  k.type = ResourceType::kModelWeights;
  k.size = source->size();
  k.source = std::move(source);
  plan.kept.push_back(std::move(k));
  return plan;
}

Plan plan_hf_folder(const std::string& folder) {
  Plan plan;
  plan.kind = SourceKind::kHuggingFaceFolder;
  std::map<std::string, std::set<std::string>> shard_tensors;
  std::vector<std::string> indexes;
  for (const std::string& rel : list_files(folder)) {
    KeptFile k;
    k.path = rel;
    k.type = type_of(rel);
    k.source = open_file_source(folder + "/" + rel);
    k.size = k.source->size();
    struct stat st {};
    k.executable = ::stat((folder + "/" + rel).c_str(), &st) == 0 && (st.st_mode & 0111) != 0;
    if (rel.ends_with(".safetensors")) {
      std::set<std::string>& names = shard_tensors[rel];
      for (const TensorInfo& t : read_safetensors_header(*k.source).tensors) names.insert(t.name);
    }
    if (rel.ends_with(".safetensors.index.json")) indexes.push_back(rel);
    plan.kept.push_back(std::move(k));
  }
  if (plan.kept.empty()) throw not_found(folder, "no files to package");
  for (const std::string& index : indexes) check_index(folder, index, shard_tensors);
  return plan;
}

FolderDigest folder_digest(const std::string& folder) {
  FolderDigest d;
  Sha256 listing;
  for (const std::string& rel : list_files(folder)) {
    const auto source = open_file_source(folder + "/" + rel);
    listing.update(sha256_hex(*source) + "  " + rel + "\n");
    d.bytes += source->size();
    ++d.files;
  }
  d.sha256 = to_hex(listing.finish());
  return d;
}

}  // namespace torshpkg::convert
