// Reading manifest.json: a strict walk over simdjson's document (every key known, duplicate
// keys refused, every value checked), and validate_manifest, which reads back what a writer
// would write. Over 500 lines: the manifest's schema, one function per object it holds.
#include <simdjson.h>

#include <algorithm>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <system_error>
#include <thread>

#include "names.h"
#include "torshpkg/error.h"
#include "torshpkg/manifest.h"
#include "torshpkg/semver.h"
#include "torshpkg/sha256.h"
#include "zip_names.h"

namespace torshpkg {
namespace {

// A schema violation; the callers turn it into kCorrupt (parsing) or kInvalidArgument (building).
struct SchemaError {
  std::string reason;
};

[[noreturn]] void fail(const std::string& reason) {
  throw SchemaError{reason};
}

// JSON nesting a manifest may have; it needs 4.
constexpr size_t kMaxDepth = 64;

using simdjson::dom::element;

// An object's members, each found by the position of its key in `allowed`. Duplicate keys fail
// here (strict JSON); unknown keys fail in reject_unknown(), so that callers can check a format
// version before complaining about keys a newer version may add.
class Members {
 public:
  static constexpr size_t kMaxKeys = 16;
  static constexpr size_t kNoIndex = SIZE_MAX;

  // `name` and `index` say where the object is in errors: "resources[3]", or just "manifest".
  Members(const element& value, std::initializer_list<std::string_view> allowed,
          std::string_view name, size_t index = kNoIndex)
      : name_(name), index_(index) {
    std::copy(allowed.begin(), allowed.end(), allowed_.begin());
    count_ = allowed.size();
    simdjson::dom::object object;
    if (value.get(object) != simdjson::SUCCESS) fail(where() + " must be an object");
    for (const simdjson::dom::key_value_pair field : object) {
      const size_t i = position(field.key);
      if (i == count_) {
        if (!unknown_) unknown_ = std::string(field.key.substr(0, 100));
        continue;
      }
      if (present_ & (1u << i))
        fail(where() + ": duplicate key \"" + std::string(field.key) + "\"");
      present_ |= 1u << i;
      values_[i] = field.value;
    }
  }

  void reject_unknown() const {
    if (unknown_) fail(where() + ": unknown key \"" + *unknown_ + "\"");
  }
  std::string where() const {
    return index_ == kNoIndex ? std::string(name_)
                              : std::string(name_) + "[" + std::to_string(index_) + "]";
  }
  bool has(std::string_view key) const { return (present_ & (1u << position(key))) != 0; }

  const element& at(std::string_view key) const {
    const size_t i = position(key);
    if (i == count_ || (present_ & (1u << i)) == 0) {
      fail(where() + ": missing \"" + std::string(key) + "\"");
    }
    return values_[i];
  }

  // A string member, valid while the parsed document lives.
  std::string_view view(std::string_view key, size_t max_len = ManifestLimits::kMaxString) const {
    std::string_view s;
    if (at(key).get(s) != simdjson::SUCCESS) fail(field(key) + " must be a string");
    if (s.size() > max_len) fail(field(key) + " is too long");
    if (s.find('\0') != std::string_view::npos) fail(field(key) + " contains NUL");
    return s;
  }

  std::string string(std::string_view key, size_t max_len = ManifestLimits::kMaxString) const {
    return std::string(view(key, max_len));
  }

  uint64_t u64(std::string_view key, uint64_t max_value) const {
    uint64_t n = 0;
    if (at(key).get(n) != simdjson::SUCCESS) fail(field(key) + " must be a non-negative integer");
    if (n > max_value) fail(field(key) + " is out of range");
    return n;
  }

  bool boolean(std::string_view key) const {
    bool b = false;
    if (at(key).get(b) != simdjson::SUCCESS) fail(field(key) + " must be true or false");
    return b;
  }

  std::string hex_digest(std::string_view key) const {
    std::string s = string(key, 64);
    if (!digest_from_hex(s)) fail(field(key) + " must be 64 lowercase hex digits");
    return s;
  }

  simdjson::dom::array array(std::string_view key, size_t max_items) const {
    simdjson::dom::array a;
    if (at(key).get(a) != simdjson::SUCCESS) fail(field(key) + " must be an array");
    if (a.size() > max_items) fail(field(key) + " has too many items");
    return a;
  }

  std::map<std::string, std::string> string_map(std::string_view key) const {
    simdjson::dom::object object;
    if (at(key).get(object) != simdjson::SUCCESS) fail(field(key) + " must be an object");
    if (object.size() > ManifestLimits::kMaxMetadata) fail(field(key) + " has too many keys");
    const std::string where = this->where() + "." + std::string(key);
    std::map<std::string, std::string> out;
    for (const simdjson::dom::key_value_pair kv : object) {
      if (kv.key.empty() || kv.key.size() > 256) fail(where + " has a bad key");
      std::string_view value;
      if (kv.value.get(value) != simdjson::SUCCESS) fail(where + " values must be strings");
      if (value.size() > ManifestLimits::kMaxString) fail(where + " has a value that is too long");
      if (value.find('\0') != std::string_view::npos) fail(where + " has a value with NUL");
      if (!out.emplace(kv.key, value).second) {
        fail(where + ": duplicate key \"" + std::string(kv.key.substr(0, 100)) + "\"");
      }
    }
    return out;
  }

 private:
  // Searches from the key after the last one found: objects whose keys come in the order of
  // `allowed` (the serializer's sorted order) cost one comparison per key.
  size_t position(std::string_view key) const {
    for (size_t n = 0, i = next_; n < count_; ++n, i = i + 1 == count_ ? 0 : i + 1) {
      if (allowed_[i] == key) {
        next_ = i + 1 == count_ ? 0 : i + 1;
        return i;
      }
    }
    return count_;
  }
  std::string field(std::string_view key) const {
    return where() + ": \"" + std::string(key) + "\"";
  }

  std::array<std::string_view, kMaxKeys> allowed_{};
  size_t count_ = 0;
  mutable size_t next_ = 0;
  std::array<element, kMaxKeys> values_{};
  uint32_t present_ = 0;
  std::optional<std::string> unknown_;
  std::string_view name_;
  size_t index_ = kNoIndex;
};

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

// Path order with '/' before every other byte: everything under "a/" then sorts right after
// "a" (in plain byte order "a.txt" would come between them).
bool folder_first_less(std::string_view a, std::string_view b) {
  const auto [ia, ib] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  if (ib == b.end()) return false;  // b is a prefix of a, or equal
  if (ia == a.end()) return true;   // a is a proper prefix of b
  const auto rank = [](char c) { return c == '/' ? 0 : static_cast<unsigned char>(c) + 1; };
  return rank(*ia) < rank(*ib);
}

// Resource paths are unique, and none is both a file and a folder ("a" and "a/b"). In folder-first
// order both faults show up between neighbours, so one pass over the sorted paths finds them;
// writers list resources in path order, which is usually that order already.
void check_resource_paths(const std::vector<ResourceEntry>& resources) {
  std::vector<std::string_view> sorted;
  sorted.reserve(resources.size());
  for (const ResourceEntry& r : resources) sorted.push_back(r.path);
  if (!std::is_sorted(sorted.begin(), sorted.end(), folder_first_less)) {
    std::sort(sorted.begin(), sorted.end(), folder_first_less);
  }
  for (size_t i = 1; i < sorted.size(); ++i) {
    const std::string_view before = sorted[i - 1];
    const std::string_view path = sorted[i];
    if (path == before) fail("duplicate resource path \"" + std::string(path) + "\"");
    if (path.size() > before.size() && path.starts_with(before) && path[before.size()] == '/') {
      fail("resource path \"" + std::string(path) + "\" lies under another resource");
    }
  }
  // Names one could take for another: not NFC, invisible or direction-changing characters,
  // and names (or folders) that differ only by case or normalization.
  for (const std::string_view path : sorted) {
    if (const std::string problem = name_problem(path); !problem.empty()) {
      fail("resource path \"" + std::string(path) + "\" " + problem);
    }
  }
  if (const auto pair = find_case_collision(sorted)) {
    fail("resource paths \"" + pair->first + "\" and \"" + pair->second +
         "\" differ only by case or Unicode normalization");
  }
}

ResourceEntry resource_from_json(const element& v, uint32_t position, int format_version) {
  const Members o(
      v,
      {"chunk_count", "chunk_size", "compression", "compression_level", "encryption", "id",
       "index_sha256", "path", "sha256", "size", "stored_size", "type", "executable", "block_size"},
      "resources", position);
  o.reject_unknown();
  if (o.has("executable")) {
    if (format_version < 2) fail(o.where() + ": unknown key \"executable\"");
  }
  if (o.has("block_size")) {
    if (format_version < 3) fail(o.where() + ": unknown key \"block_size\"");
  }
  ResourceEntry r;
  r.id = static_cast<uint32_t>(o.u64("id", UINT32_MAX));
  if (r.id != position) fail(o.where() + ": \"id\" must equal its position in the list");
  r.path = o.string("path", 4096);
  if (!is_normalized_path(r.path)) fail(o.where() + ": bad path \"" + r.path.substr(0, 200) + "\"");
  const auto type = resource_type_from_name(o.view("type", 64));
  if (!type) fail(o.where() + ": unknown type");
  r.type = *type;
  r.size = o.u64("size", ManifestLimits::kMaxResourceSize);
  r.stored_size = o.u64("stored_size", ManifestLimits::kMaxResourceSize * 2);
  const std::string_view codec_text = o.view("compression", 16);
  const auto codec = codec_from_name(codec_text);
  if (!codec || codec_text != codec_name(*codec)) fail(o.where() + ": unknown compression");
  r.compression.codec = *codec;
  r.compression.level = static_cast<int>(o.u64("compression_level", 22));
  if (!valid_level(*codec, r.compression.level)) fail(o.where() + ": bad compression level");
  r.chunk_size = static_cast<uint32_t>(o.u64("chunk_size", ManifestLimits::kMaxChunkSize));
  if (r.chunk_size < ManifestLimits::kMinChunkSize || (r.chunk_size & (r.chunk_size - 1)) != 0) {
    fail(o.where() + ": chunk_size must be a power of two from 4096 to 64 MiB");
  }
  r.chunk_count = o.u64("chunk_count", UINT64_MAX);
  if (r.chunk_count != (r.size + r.chunk_size - 1) / r.chunk_size) {
    fail(o.where() + ": chunk_count does not match size and chunk_size");
  }
  if (r.size == 0 && r.compression.codec != Codec::kNone) {
    fail(o.where() + ": an empty resource must be stored uncompressed");
  }
  const auto cipher = cipher_from_name(o.view("encryption", 32));
  if (!cipher) fail(o.where() + ": unknown encryption");
  r.encryption = *cipher;
  if (r.size == 0 && r.encryption != Cipher::kNone)
    fail(o.where() + ": an empty resource is not encrypted");
  if (r.compression.codec == Codec::kNone && r.encryption == Cipher::kNone &&
      r.stored_size != r.size) {
    fail(o.where() + ": stored_size must equal size for uncompressed resources");
  }
  if (r.encryption == Cipher::kNone) {
    r.sha256 = o.hex_digest("sha256");
  } else if (!o.view("sha256", 0).empty()) {
    fail(o.where() + ": an encrypted resource's sha256 must be empty");
  }
  r.index_sha256 = o.hex_digest("index_sha256");
  r.executable = o.has("executable") && o.boolean("executable");
  if (o.has("block_size")) {
    r.block_size = static_cast<uint32_t>(o.u64("block_size", ManifestLimits::kMaxChunkSize));
    if (r.block_size < ManifestLimits::kMinBlockSize || (r.block_size & (r.block_size - 1)) != 0 ||
        r.block_size > r.chunk_size) {
      fail(o.where() + ": block_size must be a power of two from 4096 to chunk_size");
    }
    if (r.compression.codec != Codec::kNone || r.encryption != Cipher::kNone || r.size == 0) {
      fail(o.where() + ": only a non-empty resource stored plain has blocks");
    }
  }
  return r;
}

// The resource list. Resources are checked independently of each other, so a long list is
// split over up to four threads; the error reported is the first one in list order, as if the
// list were checked front to back.
std::vector<ResourceEntry> resources_from_json(const simdjson::dom::array& list,
                                               int format_version) {
  constexpr size_t kPerThread = 2048;
  // Memory grows with the items that pass their checks, not with the count a list declares:
  // a list of a million empty objects fails at its first item having allocated for none.
  std::vector<element> items;
  for (const element item : list) items.push_back(item);
  const size_t cores = std::max(1u, std::thread::hardware_concurrency());
  const size_t parts = std::clamp<size_t>(items.size() / kPerThread, 1, std::min<size_t>(cores, 4));
  std::vector<std::exception_ptr> errors(parts);
  std::vector<std::vector<ResourceEntry>> checked(parts);
  const auto check = [&](size_t part) {
    const size_t begin = items.size() * part / parts;
    const size_t end = items.size() * (part + 1) / parts;
    try {
      for (size_t i = begin; i < end; ++i) {
        checked[part].push_back(
            resource_from_json(items[i], static_cast<uint32_t>(i), format_version));
      }
    } catch (...) {
      errors[part] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  for (size_t part = 1; part < parts; ++part) {
    try {
      threads.emplace_back(check, part);
    } catch (const std::system_error&) {
      check(part);  // no thread to be had: check this part here
    }
  }
  check(0);
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  if (parts == 1) return std::move(checked[0]);
  std::vector<ResourceEntry> out;
  out.reserve(items.size());  // every item passed
  for (auto& part : checked) {
    std::move(part.begin(), part.end(), std::back_inserter(out));
    std::vector<ResourceEntry>().swap(part);
  }
  return out;
}

Dependency dependency_from_json(const element& v, size_t position) {
  const Members o(v, {"name", "version_req", "optional", "features", "file_size", "file_sha256"},
                  "dependencies", position);
  o.reject_unknown();
  Dependency d;
  d.name = o.string("name", 128);
  if (!is_valid_package_name(d.name)) fail(o.where() + ": bad dependency name");
  d.version_req = o.string("version_req", 256);
  if (!is_valid_version_req(d.version_req)) fail(o.where() + ": bad version_req");
  d.optional = o.boolean("optional");
  for (const element f : o.array("features", 1000)) {
    std::string_view name;
    if (f.get(name) != simdjson::SUCCESS || !is_feature_name(name)) {
      fail(o.where() + ": bad feature name");
    }
    d.features.emplace_back(name);
  }
  d.file_size = o.u64("file_size", 1u << 20);
  d.file_sha256 = o.hex_digest("file_sha256");
  return d;
}

LineageRecord lineage_from_json(const element& v, size_t position) {
  const Members o(v, {"relation", "parent", "description", "provenance"}, "lineage", position);
  o.reject_unknown();
  LineageRecord l;
  l.relation = o.string("relation", 64);
  if (std::find(kLineageRelations.begin(), kLineageRelations.end(), l.relation) ==
      kLineageRelations.end()) {
    fail(o.where() + ": unknown relation \"" + l.relation + "\"");
  }
  l.parent = o.string("parent", 4096);
  if (l.parent.empty()) fail(o.where() + ": empty parent");
  l.description = o.string("description");
  l.provenance = o.string_map("provenance");
  return l;
}

KeySlot key_slot_from_json(const element& v, size_t position) {
  const Members o(
      v, {"type", "kdf", "salt", "time_cost", "memory_kib", "parallelism", "nonce", "wrapped_key"},
      "encryption.key_slots", position);
  o.reject_unknown();
  KeySlot k;
  k.type = o.string("type", 16);
  const auto hex_of = [&](std::string_view key, size_t bytes) {
    std::string h = o.string(key, bytes * 2);
    std::vector<uint8_t> tmp(bytes);
    if (h.size() != bytes * 2 || !from_hex(h, tmp)) {
      fail(o.where() + ": \"" + std::string(key) + "\" must be " + std::to_string(bytes * 2) +
           " hex digits");
    }
    return h;
  };
  if (k.type == "password") {
    if (o.string("kdf", 16) != "argon2id") fail(o.where() + ": password slots use argon2id");
    k.time_cost = static_cast<uint32_t>(o.u64("time_cost", Argon2Params::kMaxTimeCost));
    k.memory_kib = static_cast<uint32_t>(o.u64("memory_kib", Argon2Params::kMaxMemoryKib));
    k.parallelism = static_cast<uint32_t>(o.u64("parallelism", Argon2Params::kMaxParallelism));
    if (k.time_cost < 1 || k.parallelism < 1 || k.memory_kib < 8 * k.parallelism) {
      fail(o.where() + ": Argon2id parameters out of bounds");
    }
  } else if (k.type == "key-file") {
    for (const char* key : {"time_cost", "memory_kib", "parallelism"}) {
      if (o.has(key)) fail(o.where() + ": unknown key \"" + key + "\"");
    }
    if (o.string("kdf", 16) != "hkdf-sha256") fail(o.where() + ": key-file slots use hkdf-sha256");
  } else {
    fail(o.where() + ": unknown slot type");
  }
  k.salt = hex_of("salt", 16);
  k.nonce = hex_of("nonce", 12);
  k.wrapped_key = hex_of("wrapped_key", 48);
  return k;
}

Manifest manifest_from_json(const element& root) {
  const Members o(
      root,
      {"format", "format_version", "package_id", "name", "version", "description", "author",
       "license", "created", "metadata", "resources", "dependencies", "lineage", "encryption"},
      "manifest");
  if (o.string("format", 64) != "torshpkg") fail("\"format\" is not \"torshpkg\"");
  Manifest m;
  m.format_version = static_cast<int>(o.u64("format_version", 1'000'000));
  if (m.format_version < kFormatVersion || m.format_version > kNewestFormatVersion) {
    throw Error(ErrorKind::kUnsupported, "format version " + std::to_string(m.format_version) +
                                             " (this reader knows 1 to 3)");
  }
  o.reject_unknown();
  m.package_id = o.string("package_id", 32);
  uint8_t id[16];
  if (!from_hex(m.package_id, id)) fail("\"package_id\" must be 32 lowercase hex digits");
  m.name = o.string("name", 128);
  if (!is_valid_package_name(m.name)) fail("bad package name \"" + m.name + "\"");
  m.version = o.string("version", 256);
  if (!is_valid_semver(m.version)) fail("\"version\" is not a semantic version");
  m.description = o.string("description");
  m.author = o.string("author");
  m.license = o.string("license");
  m.created = o.string("created", 64);
  if (!is_rfc3339_utc(m.created)) fail("\"created\" must look like 2026-01-31T12:00:00Z");
  m.metadata = o.string_map("metadata");

  m.resources =
      resources_from_json(o.array("resources", ManifestLimits::kMaxResources), m.format_version);
  check_resource_paths(m.resources);
  std::set<std::string> dep_names;
  for (const element d : o.array("dependencies", ManifestLimits::kMaxDependencies)) {
    m.dependencies.push_back(dependency_from_json(d, m.dependencies.size()));
    if (!dep_names.insert(m.dependencies.back().name).second) {
      fail("duplicate dependency \"" + m.dependencies.back().name + "\"");
    }
  }
  for (const element l : o.array("lineage", ManifestLimits::kMaxLineage)) {
    m.lineage.push_back(lineage_from_json(l, m.lineage.size()));
  }
  const bool any_encrypted =
      std::any_of(m.resources.begin(), m.resources.end(),
                  [](const ResourceEntry& r) { return r.encryption != Cipher::kNone; });
  if (o.has("encryption")) {
    const Members enc(o.at("encryption"), {"key_slots"}, "encryption");
    enc.reject_unknown();
    for (const element slot : enc.array("key_slots", ManifestLimits::kMaxKeySlots)) {
      m.key_slots.push_back(key_slot_from_json(slot, m.key_slots.size()));
    }
    uint64_t work = 0;
    for (const KeySlot& k : m.key_slots) {
      if (k.type == "password") work += uint64_t{k.time_cost} * k.memory_kib;
    }
    if (work > Argon2Params::kMaxTotalWork) {
      fail("encryption.key_slots: the password slots together ask for more Argon2id work (" +
           std::to_string(work) + " KiB passes) than the limit of " +
           std::to_string(Argon2Params::kMaxTotalWork));
    }
  }
  if (any_encrypted != !m.key_slots.empty()) {
    fail(any_encrypted ? "encrypted resources but no key slots"
                       : "key slots but no encrypted resource");
  }
  return m;
}

static_assert(kManifestParsePadding >= simdjson::SIMDJSON_PADDING);

// Manifests up to this size are parsed by a parser kept per thread, whose buffers (several times
// the text) stay mapped between parses: a process that opens package after package, as
// torshpkgd does, does not page-fault them in each time (for a 4.6 MB manifest, 2,000 faults
// and about half the parse). Larger ones get a parser of their own, freed after use.
constexpr size_t kKeptParserBytes = 8u << 20;

// Parses and checks manifest text; schema violations throw SchemaError. `padded`: the text is
// followed by kManifestParsePadding readable bytes, so the parser need not copy it.
Manifest manifest_from_text(std::string_view json, bool padded = false) {
  thread_local simdjson::dom::parser kept;
  simdjson::dom::parser one_off;  // allocates nothing unless used
  simdjson::dom::parser& parser = json.size() <= kKeptParserBytes ? kept : one_off;
  if (parser.capacity() < json.size() &&
      parser.allocate(json.size(), kMaxDepth) != simdjson::SUCCESS) {
    fail("out of memory");
  }
  element root;
  const simdjson::error_code error = parser.parse(json.data(), json.size(), !padded).get(root);
  if (error == simdjson::UTF8_ERROR) fail("not UTF-8");
  if (error != simdjson::SUCCESS)
    fail(std::string("not valid JSON: ") + simdjson::error_message(error));
  return manifest_from_json(root);
}

}  // namespace

namespace {

Manifest parse_manifest_text(std::string_view json, std::string_view file, bool padded) {
  if (json.size() > ManifestLimits::kMaxBytes) throw corrupt(file, "manifest.json is too large");
  try {
    return manifest_from_text(json, padded);
  } catch (const SchemaError& e) {
    throw corrupt(file, "manifest.json: " + e.reason);
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::kUnsupported) throw unsupported(file, e.what());
    throw;
  }
}

}  // namespace

Manifest parse_manifest(std::string_view json, std::string_view file) {
  return parse_manifest_text(json, file, false);
}

Manifest parse_padded_manifest(std::string_view json, std::string_view file) {
  return parse_manifest_text(json, file, true);
}

void validate_manifest(const Manifest& manifest) {
  try {
    manifest_from_text(serialize_manifest(manifest));
  } catch (const SchemaError& e) {
    throw invalid_argument("invalid manifest: " + e.reason);
  }
}

}  // namespace torshpkg
