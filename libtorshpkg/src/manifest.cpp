#include "torshpkg/manifest.h"

#include <json/json.h>

#include <algorithm>
#include <memory>
#include <set>
#include <sstream>

#include "torshpkg/error.h"
#include "torshpkg/sha256.h"
#include "torshpkg/strict_json.h"
#include "zip_archive.h"

namespace torshpkg {
namespace {

constexpr std::array<std::string_view, 10> kTypeNames = {
    "ModelWeights",  "Config",  "Tokenizer", "Source", "Data",
    "Documentation", "License", "Binary",    "Text",   "Metadata"};

// A schema violation; the callers turn it into kCorrupt (parsing) or kInvalidArgument (building).
struct SchemaError {
  std::string reason;
};

[[noreturn]] void fail(const std::string& reason) {
  throw SchemaError{reason};
}

void only_keys(const Json::Value& obj, std::initializer_list<std::string_view> allowed,
               const std::string& where) {
  for (const std::string& key : obj.getMemberNames()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      fail(where + ": unknown key \"" + key.substr(0, 100) + "\"");
    }
  }
}

const Json::Value& member(const Json::Value& obj, const char* key, const std::string& where) {
  const Json::Value* v = obj.find(key, key + std::strlen(key));
  if (v == nullptr) fail(where + ": missing \"" + key + "\"");
  return *v;
}

std::string get_string(const Json::Value& obj, const char* key, const std::string& where,
                       size_t max_len = ManifestLimits::kMaxString) {
  const Json::Value& v = member(obj, key, where);
  if (!v.isString()) fail(where + ": \"" + key + "\" must be a string");
  std::string s = v.asString();
  if (s.size() > max_len) fail(where + ": \"" + key + "\" is too long");
  if (s.find('\0') != std::string::npos) fail(where + ": \"" + key + "\" contains NUL");
  return s;
}

uint64_t get_u64(const Json::Value& obj, const char* key, const std::string& where,
                 uint64_t max_value) {
  const Json::Value& v = member(obj, key, where);
  if ((v.type() != Json::uintValue && v.type() != Json::intValue) || !v.isUInt64()) {
    fail(where + ": \"" + key + "\" must be a non-negative integer");
  }
  const uint64_t n = v.asUInt64();
  if (n > max_value) fail(where + ": \"" + key + "\" is out of range");
  return n;
}

bool get_bool(const Json::Value& obj, const char* key, const std::string& where) {
  const Json::Value& v = member(obj, key, where);
  if (!v.isBool()) fail(where + ": \"" + key + "\" must be true or false");
  return v.asBool();
}

std::string get_hex_digest(const Json::Value& obj, const char* key, const std::string& where) {
  std::string s = get_string(obj, key, where, 64);
  if (!digest_from_hex(s)) fail(where + ": \"" + key + "\" must be 64 lowercase hex digits");
  return s;
}

std::map<std::string, std::string> get_string_map(const Json::Value& obj, const char* key,
                                                  const std::string& where) {
  const Json::Value& v = member(obj, key, where);
  if (!v.isObject()) fail(where + ": \"" + key + "\" must be an object");
  if (v.size() > ManifestLimits::kMaxMetadata) fail(where + ": \"" + key + "\" has too many keys");
  std::map<std::string, std::string> out;
  for (const std::string& k : v.getMemberNames()) {
    if (k.empty() || k.size() > 256 || !is_valid_utf8(k)) {
      fail(where + ": \"" + key + "\" has a bad key");
    }
    out[k] = get_string(v, k.c_str(), where + "." + key);
  }
  return out;
}

const Json::Value& get_array(const Json::Value& obj, const char* key, const std::string& where,
                             size_t max_items) {
  const Json::Value& v = member(obj, key, where);
  if (!v.isArray()) fail(where + ": \"" + key + "\" must be an array");
  if (v.size() > max_items) fail(where + ": \"" + key + "\" has too many items");
  return v;
}

bool is_rfc3339_utc(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SSZ
  if (s.size() != 20) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool digit = c >= '0' && c <= '9';
    switch (i) {
      case 4:
      case 7:
        if (c != '-') return false;
        break;
      case 10:
        if (c != 'T') return false;
        break;
      case 13:
      case 16:
        if (c != ':') return false;
        break;
      case 19:
        if (c != 'Z') return false;
        break;
      default:
        if (!digit) return false;
    }
  }
  return true;
}

bool is_feature_name(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

ResourceEntry resource_from_json(const Json::Value& v, uint32_t position) {
  const std::string where = "resources[" + std::to_string(position) + "]";
  if (!v.isObject()) fail(where + " must be an object");
  only_keys(v,
            {"id", "path", "type", "size", "stored_size", "compression", "compression_level",
             "chunk_size", "chunk_count", "encryption", "sha256", "index_sha256"},
            where);
  ResourceEntry r;
  r.id = static_cast<uint32_t>(get_u64(v, "id", where, UINT32_MAX));
  if (r.id != position) fail(where + ": \"id\" must equal its position in the list");
  r.path = get_string(v, "path", where, 4096);
  if (!is_normalized_path(r.path)) fail(where + ": bad path \"" + r.path.substr(0, 200) + "\"");
  const auto type = resource_type_from_name(get_string(v, "type", where, 64));
  if (!type) fail(where + ": unknown type");
  r.type = *type;
  r.size = get_u64(v, "size", where, ManifestLimits::kMaxResourceSize);
  r.stored_size = get_u64(v, "stored_size", where, ManifestLimits::kMaxResourceSize * 2);
  const std::string codec_text = get_string(v, "compression", where, 16);
  const auto codec = codec_from_name(codec_text);
  if (!codec || codec_text != codec_name(*codec)) fail(where + ": unknown compression");
  r.compression.codec = *codec;
  r.compression.level = static_cast<int>(get_u64(v, "compression_level", where, 22));
  if (!valid_level(*codec, r.compression.level)) fail(where + ": bad compression level");
  r.chunk_size =
      static_cast<uint32_t>(get_u64(v, "chunk_size", where, ManifestLimits::kMaxChunkSize));
  if (r.chunk_size < ManifestLimits::kMinChunkSize || (r.chunk_size & (r.chunk_size - 1)) != 0) {
    fail(where + ": chunk_size must be a power of two from 4096 to 64 MiB");
  }
  r.chunk_count = get_u64(v, "chunk_count", where, UINT64_MAX);
  if (r.chunk_count != (r.size + r.chunk_size - 1) / r.chunk_size) {
    fail(where + ": chunk_count does not match size and chunk_size");
  }
  if (r.size == 0 && r.compression.codec != Codec::kNone) {
    fail(where + ": an empty resource must be stored uncompressed");
  }
  const auto cipher = cipher_from_name(get_string(v, "encryption", where, 32));
  if (!cipher) fail(where + ": unknown encryption");
  r.encryption = *cipher;
  if (r.size == 0 && r.encryption != Cipher::kNone)
    fail(where + ": an empty resource is not encrypted");
  if (r.compression.codec == Codec::kNone && r.encryption == Cipher::kNone &&
      r.stored_size != r.size) {
    fail(where + ": stored_size must equal size for uncompressed resources");
  }
  if (r.encryption == Cipher::kNone) {
    r.sha256 = get_hex_digest(v, "sha256", where);
  } else if (!get_string(v, "sha256", where, 0).empty()) {
    fail(where + ": an encrypted resource's sha256 must be empty");
  }
  r.index_sha256 = get_hex_digest(v, "index_sha256", where);
  return r;
}

Dependency dependency_from_json(const Json::Value& v, size_t position) {
  const std::string where = "dependencies[" + std::to_string(position) + "]";
  if (!v.isObject()) fail(where + " must be an object");
  only_keys(v, {"name", "version_req", "optional", "features", "file_size", "file_sha256"}, where);
  Dependency d;
  d.name = get_string(v, "name", where, 128);
  if (!is_valid_package_name(d.name)) fail(where + ": bad dependency name");
  d.version_req = get_string(v, "version_req", where, 256);
  if (!is_valid_version_req(d.version_req)) fail(where + ": bad version_req");
  d.optional = get_bool(v, "optional", where);
  const Json::Value& features = get_array(v, "features", where, 1000);
  for (const Json::Value& f : features) {
    if (!f.isString() || !is_feature_name(f.asString())) fail(where + ": bad feature name");
    d.features.push_back(f.asString());
  }
  d.file_size = get_u64(v, "file_size", where, 1u << 20);
  d.file_sha256 = get_hex_digest(v, "file_sha256", where);
  return d;
}

LineageRecord lineage_from_json(const Json::Value& v, size_t position) {
  const std::string where = "lineage[" + std::to_string(position) + "]";
  if (!v.isObject()) fail(where + " must be an object");
  only_keys(v, {"relation", "parent", "description", "provenance"}, where);
  LineageRecord l;
  l.relation = get_string(v, "relation", where, 64);
  if (std::find(kLineageRelations.begin(), kLineageRelations.end(), l.relation) ==
      kLineageRelations.end()) {
    fail(where + ": unknown relation \"" + l.relation + "\"");
  }
  l.parent = get_string(v, "parent", where, 4096);
  if (l.parent.empty()) fail(where + ": empty parent");
  l.description = get_string(v, "description", where);
  l.provenance = get_string_map(v, "provenance", where);
  return l;
}

KeySlot key_slot_from_json(const Json::Value& v, size_t position) {
  const std::string where = "encryption.key_slots[" + std::to_string(position) + "]";
  if (!v.isObject()) fail(where + " must be an object");
  KeySlot k;
  k.type = get_string(v, "type", where, 16);
  const auto hex_of = [&](const char* key, size_t bytes) {
    std::string h = get_string(v, key, where, bytes * 2);
    std::vector<uint8_t> tmp(bytes);
    if (h.size() != bytes * 2 || !from_hex(h, tmp)) {
      fail(where + ": \"" + key + "\" must be " + std::to_string(bytes * 2) + " hex digits");
    }
    return h;
  };
  if (k.type == "password") {
    only_keys(
        v,
        {"type", "kdf", "salt", "time_cost", "memory_kib", "parallelism", "nonce", "wrapped_key"},
        where);
    if (get_string(v, "kdf", where, 16) != "argon2id")
      fail(where + ": password slots use argon2id");
    k.time_cost = static_cast<uint32_t>(get_u64(v, "time_cost", where, Argon2Params::kMaxTimeCost));
    k.memory_kib =
        static_cast<uint32_t>(get_u64(v, "memory_kib", where, Argon2Params::kMaxMemoryKib));
    k.parallelism =
        static_cast<uint32_t>(get_u64(v, "parallelism", where, Argon2Params::kMaxParallelism));
    if (k.time_cost < 1 || k.parallelism < 1 || k.memory_kib < 8 * k.parallelism) {
      fail(where + ": Argon2id parameters out of bounds");
    }
  } else if (k.type == "key-file") {
    only_keys(v, {"type", "kdf", "salt", "nonce", "wrapped_key"}, where);
    if (get_string(v, "kdf", where, 16) != "hkdf-sha256")
      fail(where + ": key-file slots use hkdf-sha256");
  } else {
    fail(where + ": unknown slot type");
  }
  k.salt = hex_of("salt", 16);
  k.nonce = hex_of("nonce", 12);
  k.wrapped_key = hex_of("wrapped_key", 48);
  return k;
}

Manifest manifest_from_json(const Json::Value& root) {
  if (!root.isObject()) fail("manifest must be a JSON object");
  const std::string where = "manifest";
  if (get_string(root, "format", where, 64) != "torshpkg") fail("\"format\" is not \"torshpkg\"");
  Manifest m;
  m.format_version = static_cast<int>(get_u64(root, "format_version", where, 1'000'000));
  if (m.format_version != kFormatVersion) {
    throw Error(ErrorKind::kUnsupported,
                "format version " + std::to_string(m.format_version) + " (this reader knows 1)");
  }
  only_keys(
      root,
      {"format", "format_version", "package_id", "name", "version", "description", "author",
       "license", "created", "metadata", "resources", "dependencies", "lineage", "encryption"},
      where);
  m.package_id = get_string(root, "package_id", where, 32);
  uint8_t id[16];
  if (!from_hex(m.package_id, id)) fail("\"package_id\" must be 32 lowercase hex digits");
  m.name = get_string(root, "name", where, 128);
  if (!is_valid_package_name(m.name)) fail("bad package name \"" + m.name + "\"");
  m.version = get_string(root, "version", where, 256);
  if (!is_valid_semver(m.version)) fail("\"version\" is not a semantic version");
  m.description = get_string(root, "description", where);
  m.author = get_string(root, "author", where);
  m.license = get_string(root, "license", where);
  for (const std::string* s : {&m.description, &m.author, &m.license}) {
    if (!is_valid_utf8(*s)) fail("text fields must be UTF-8");
  }
  m.created = get_string(root, "created", where, 64);
  if (!is_rfc3339_utc(m.created)) fail("\"created\" must look like 2026-01-31T12:00:00Z");
  m.metadata = get_string_map(root, "metadata", where);

  const Json::Value& resources = get_array(root, "resources", where, ManifestLimits::kMaxResources);
  m.resources.reserve(resources.size());
  std::set<std::string_view> files;
  for (Json::ArrayIndex i = 0; i < resources.size(); ++i) {
    m.resources.push_back(resource_from_json(resources[i], i));
  }
  for (const ResourceEntry& r : m.resources) {
    if (!files.insert(r.path).second) fail("duplicate resource path \"" + r.path + "\"");
  }
  // A path may not be both a file and a folder ("a" and "a/b").
  for (const ResourceEntry& r : m.resources) {
    for (size_t slash = r.path.find('/'); slash != std::string::npos;
         slash = r.path.find('/', slash + 1)) {
      if (files.count(std::string_view(r.path).substr(0, slash))) {
        fail("resource path \"" + r.path + "\" lies under another resource");
      }
    }
  }
  const Json::Value& deps =
      get_array(root, "dependencies", where, ManifestLimits::kMaxDependencies);
  std::set<std::string> dep_names;
  for (Json::ArrayIndex i = 0; i < deps.size(); ++i) {
    m.dependencies.push_back(dependency_from_json(deps[i], i));
    if (!dep_names.insert(m.dependencies.back().name).second) {
      fail("duplicate dependency \"" + m.dependencies.back().name + "\"");
    }
  }
  const Json::Value& lineage = get_array(root, "lineage", where, ManifestLimits::kMaxLineage);
  for (Json::ArrayIndex i = 0; i < lineage.size(); ++i) {
    m.lineage.push_back(lineage_from_json(lineage[i], i));
  }
  const bool any_encrypted =
      std::any_of(m.resources.begin(), m.resources.end(),
                  [](const ResourceEntry& r) { return r.encryption != Cipher::kNone; });
  if (root.isMember("encryption")) {
    const Json::Value& enc = root["encryption"];
    if (!enc.isObject()) fail("\"encryption\" must be an object");
    only_keys(enc, {"key_slots"}, "encryption");
    const Json::Value& slots =
        get_array(enc, "key_slots", "encryption", ManifestLimits::kMaxKeySlots);
    for (Json::ArrayIndex i = 0; i < slots.size(); ++i)
      m.key_slots.push_back(key_slot_from_json(slots[i], i));
  }
  if (any_encrypted != !m.key_slots.empty()) {
    fail(any_encrypted ? "encrypted resources but no key slots"
                       : "key slots but no encrypted resource");
  }
  return m;
}

Json::Value string_map_json(const std::map<std::string, std::string>& map) {
  Json::Value v(Json::objectValue);
  for (const auto& [k, val] : map) v[k] = val;
  return v;
}

// The fields a dependency is declared with (its file holds exactly these).
Json::Value dependency_json(const Dependency& d) {
  Json::Value v(Json::objectValue);
  v["name"] = d.name;
  v["version_req"] = d.version_req;
  v["optional"] = d.optional;
  Json::Value features(Json::arrayValue);
  for (const std::string& f : d.features) features.append(f);
  v["features"] = features;
  return v;
}

Json::Value manifest_to_json(const Manifest& m) {
  Json::Value root(Json::objectValue);
  root["format"] = "torshpkg";
  root["format_version"] = m.format_version;
  root["package_id"] = m.package_id;
  root["name"] = m.name;
  root["version"] = m.version;
  root["description"] = m.description;
  root["author"] = m.author;
  root["license"] = m.license;
  root["created"] = m.created;
  root["metadata"] = string_map_json(m.metadata);
  Json::Value resources(Json::arrayValue);
  for (const ResourceEntry& r : m.resources) {
    Json::Value v(Json::objectValue);
    v["id"] = r.id;
    v["path"] = r.path;
    v["type"] = std::string(to_string(r.type));
    v["size"] = Json::UInt64(r.size);
    v["stored_size"] = Json::UInt64(r.stored_size);
    v["compression"] = std::string(codec_name(r.compression.codec));
    v["compression_level"] = r.compression.level;
    v["chunk_size"] = r.chunk_size;
    v["chunk_count"] = Json::UInt64(r.chunk_count);
    v["encryption"] = std::string(cipher_name(r.encryption));
    v["sha256"] = r.sha256;
    v["index_sha256"] = r.index_sha256;
    resources.append(v);
  }
  root["resources"] = resources;
  Json::Value deps(Json::arrayValue);
  for (const Dependency& d : m.dependencies) {
    Json::Value v = dependency_json(d);
    v["file_size"] = Json::UInt64(d.file_size);
    v["file_sha256"] = d.file_sha256;
    deps.append(v);
  }
  root["dependencies"] = deps;
  Json::Value lineage(Json::arrayValue);
  for (const LineageRecord& l : m.lineage) {
    Json::Value v(Json::objectValue);
    v["relation"] = l.relation;
    v["parent"] = l.parent;
    v["description"] = l.description;
    v["provenance"] = string_map_json(l.provenance);
    lineage.append(v);
  }
  root["lineage"] = lineage;
  if (!m.key_slots.empty()) {
    Json::Value slots(Json::arrayValue);
    for (const KeySlot& k : m.key_slots) {
      Json::Value v(Json::objectValue);
      v["type"] = k.type;
      if (k.type == "password") {
        v["kdf"] = "argon2id";
        v["time_cost"] = k.time_cost;
        v["memory_kib"] = k.memory_kib;
        v["parallelism"] = k.parallelism;
      } else {
        v["kdf"] = "hkdf-sha256";
      }
      v["salt"] = k.salt;
      v["nonce"] = k.nonce;
      v["wrapped_key"] = k.wrapped_key;
      slots.append(v);
    }
    root["encryption"]["key_slots"] = slots;
  }
  return root;
}

std::string write_json(const Json::Value& v) {
  Json::StreamWriterBuilder builder;
  builder["indentation"] = "  ";
  builder["emitUTF8"] = true;
  builder["commentStyle"] = "None";
  return Json::writeString(builder, v) + "\n";
}

Json::Value parse_json(std::string_view text) {
  Json::Value root;
  std::string error;
  if (!parse_strict_json(text, 64, root, error)) fail("not valid JSON: " + error);
  return root;
}

}  // namespace

std::string ResourceEntry::index_entry_name() const {
  return ".torshpkg/index/" + std::to_string(id);
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

bool is_valid_semver(std::string_view v) {
  if (v.empty() || v.size() > 256) return false;
  auto numeric = [](std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
           !(s.size() > 1 && s[0] == '0');
  };
  auto identifiers = [&](std::string_view s, bool prerelease) {
    if (s.empty()) return false;
    size_t start = 0;
    for (;;) {
      const size_t dot = s.find('.', start);
      const std::string_view id =
          s.substr(start, dot == std::string_view::npos ? dot : dot - start);
      if (id.empty()) return false;
      const bool all_digits =
          std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!std::all_of(id.begin(), id.end(), [](char c) {
            return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   c == '-';
          })) {
        return false;
      }
      if (prerelease && all_digits && !numeric(id)) return false;
      if (dot == std::string_view::npos) return true;
      start = dot + 1;
    }
  };
  const size_t plus = v.find('+');
  std::string_view core = v.substr(0, plus);
  if (plus != std::string_view::npos && !identifiers(v.substr(plus + 1), false)) return false;
  const size_t dash = core.find('-');
  if (dash != std::string_view::npos) {
    if (!identifiers(core.substr(dash + 1), true)) return false;
    core = core.substr(0, dash);
  }
  const size_t d1 = core.find('.');
  if (d1 == std::string_view::npos) return false;
  const size_t d2 = core.find('.', d1 + 1);
  if (d2 == std::string_view::npos) return false;
  return numeric(core.substr(0, d1)) && numeric(core.substr(d1 + 1, d2 - d1 - 1)) &&
         numeric(core.substr(d2 + 1));
}

bool is_valid_version_req(std::string_view req) {
  if (req.empty() || req.size() > 256) return false;
  return std::all_of(req.begin(), req.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           std::string_view(".^~<>=*, +-|").find(c) != std::string_view::npos;
  });
}

Manifest parse_manifest(std::string_view json, std::string_view file) {
  if (json.size() > ManifestLimits::kMaxBytes) throw corrupt(file, "manifest.json is too large");
  try {
    if (!is_valid_utf8(json)) fail("not UTF-8");
    return manifest_from_json(parse_json(json));
  } catch (const SchemaError& e) {
    throw corrupt(file, "manifest.json: " + e.reason);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::kUnsupported) throw unsupported(file, e.what());
    throw;
  } catch (const Json::Exception& e) {
    throw corrupt(file, std::string("manifest.json: ") + e.what());
  }
}

void validate_manifest(const Manifest& manifest) {
  try {
    manifest_from_json(manifest_to_json(manifest));
  } catch (const SchemaError& e) {
    throw invalid_argument("invalid manifest: " + e.reason);
  }
}

std::string serialize_manifest(const Manifest& manifest) {
  return write_json(manifest_to_json(manifest));
}

std::string dependency_file_json(const Dependency& d) {
  return write_json(dependency_json(d));
}

}  // namespace torshpkg
