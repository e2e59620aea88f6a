// The package manifest: `manifest.json` at the root of every package. It names the package,
// lists every resource with the digests that tie its bytes to the manifest, and records
// dependencies and lineage. Its exact bytes are what a signature covers (docs/FORMAT.md).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "torshpkg/codec.h"
#include "torshpkg/encryption.h"

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

// Writers write the oldest version that holds what a package needs: 1, 2 for resources marked
// executable, 3 for resources verified in blocks (block_size); readers read all three.
inline constexpr int kFormatVersion = 1;
inline constexpr int kNewestFormatVersion = 3;

enum class ResourceType {
  kModelWeights,
  kConfig,
  kTokenizer,
  kSource,
  kData,
  kDocumentation,
  kLicense,
  kBinary,
  kText,
  kMetadata,
};

std::string_view to_string(ResourceType type);
std::optional<ResourceType> resource_type_from_name(std::string_view name);
// The type a file gets when none is named, from its name and extension.
ResourceType guess_resource_type(std::string_view path);

struct ResourceEntry {
  uint32_t id = 0;   // position in the manifest's resource list
  std::string path;  // relative; the ZIP entry is "resources/" + path
  ResourceType type = ResourceType::kData;
  uint64_t size = 0;         // plain bytes
  uint64_t stored_size = 0;  // bytes of the ZIP entry's data
  CodecSpec compression{Codec::kNone, 0};
  uint32_t chunk_size = 0;
  uint64_t chunk_count = 0;
  Cipher encryption = Cipher::kNone;
  std::string sha256;        // hex SHA-256 of the plain bytes; empty when encrypted
  std::string index_sha256;  // hex SHA-256 of the chunk index entry
  bool executable = false;   // shown with x bits in mounts (format version 2)
  // Format version 3, stored unencrypted resources only: each chunk's leaf hash covers the
  // SHA-256 of every block of this many bytes, kept in blocks_entry_name(), so a read checks
  // only the blocks it touches. 0: the chunk is hashed whole (docs/FORMAT.md, "Blocks").
  uint32_t block_size = 0;

  std::string entry_name() const { return "resources/" + path; }
  std::string index_entry_name() const;
  std::string blocks_entry_name() const;
  // Blocks of the resource, and bytes of its blocks entry (32 per block); 0 without blocks.
  uint64_t block_count() const {
    return block_size == 0 ? 0 : (size + block_size - 1) / block_size;
  }
};

struct Dependency {
  std::string name;
  std::string version_req;
  bool optional = false;
  std::vector<std::string> features;
  // The dependencies/<name>.json file written for it, and that file's digest.
  uint64_t file_size = 0;
  std::string file_sha256;

  std::string entry_name() const { return "dependencies/" + name + ".json"; }
};

// Relation kinds of lineage records.
inline constexpr std::array<std::string_view, 10> kLineageRelations = {
    "DerivedFrom",   "TrainedFrom",   "FineTunedFrom", "QuantizedFrom", "PrunedFrom",
    "DistilledFrom", "ConvertedFrom", "MergedFrom",    "CheckpointOf",  "DependsOn"};

struct LineageRecord {
  std::string relation;
  std::string parent;
  std::string description;
  std::map<std::string, std::string> provenance;
};

// A key slot: the package's data key wrapped under a key derived from a password (Argon2id) or
// a key file (HKDF-SHA256). Hex fields as in docs/FORMAT.md, "Encryption".
struct KeySlot {
  std::string type;          // "password" or "key-file"
  std::string salt;          // 16 bytes
  uint32_t time_cost = 0;    // password slots only
  uint32_t memory_kib = 0;   // password slots only
  uint32_t parallelism = 0;  // password slots only
  std::string nonce;         // 12 bytes
  std::string wrapped_key;   // 48 bytes: AES-256-GCM of the 32-byte data key and its tag
};

struct Manifest {
  int format_version = kFormatVersion;
  std::string package_id;  // 32 lowercase hex digits (128 random bits)
  std::string name;
  std::string version;  // semantic version 2.0.0
  std::string description;
  std::string author;
  std::string license;
  std::string created;  // RFC 3339 UTC, "2026-01-31T12:00:00Z"
  std::map<std::string, std::string> metadata;
  std::vector<ResourceEntry> resources;
  std::vector<Dependency> dependencies;
  std::vector<LineageRecord> lineage;
  std::vector<KeySlot> key_slots;  // non-empty exactly when some resource is encrypted
};

// Limits every reader enforces (docs/FORMAT.md, "Limits").
struct ManifestLimits {
  static constexpr uint64_t kMaxBytes = 64ull << 20;
  static constexpr size_t kMaxResources = 1'000'000;
  static constexpr size_t kMaxDependencies = 10'000;
  static constexpr size_t kMaxLineage = 10'000;
  static constexpr size_t kMaxMetadata = 10'000;
  static constexpr size_t kMaxString = 64 * 1024;
  static constexpr uint32_t kMinChunkSize = 4096;
  static constexpr uint32_t kMaxChunkSize = 64u << 20;
  static constexpr uint64_t kMaxResourceSize = 1ull << 56;
  static constexpr size_t kMaxKeySlots = 16;
  static constexpr uint32_t kMinBlockSize = 4096;
};

// Strictly parses and validates manifest bytes. `file` names the package in errors. Throws
// Error(kCorrupt) for anything that is not a valid v1 manifest and Error(kUnsupported) for a
// newer format version.
Manifest parse_manifest(std::string_view json, std::string_view file);

// The same, for text followed in memory by at least kManifestParsePadding readable bytes (a
// std::string with that much spare capacity, say): the parser reads the text where it is
// instead of copying it first. The padding is read, never written; its contents do not matter.
inline constexpr size_t kManifestParsePadding = 64;
Manifest parse_padded_manifest(std::string_view json, std::string_view file);

// Checks the same rules parse_manifest does; throws Error(kInvalidArgument) naming the problem.
void validate_manifest(const Manifest& manifest);

// Canonical bytes: UTF-8 JSON, keys sorted, two-space indentation, trailing newline.
std::string serialize_manifest(const Manifest& manifest);

// The content of dependencies/<name>.json for a dependency.
std::string dependency_file_json(const Dependency& dependency);

bool is_valid_package_name(std::string_view name);

}  // namespace torshpkg

#pragma GCC visibility pop
