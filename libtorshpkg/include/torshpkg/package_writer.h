// Writing a package.
//
// Collect resources, dependencies and lineage, then write() produces the package atomically: it
// writes a temporary file beside the destination and renames it into place only when complete,
// so a failure or cancellation never leaves a partial package behind. Chunks are encoded and
// hashed on all cores. Not thread-safe; one writer per thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "torshpkg/byte_source.h"
#include "torshpkg/codec.h"
#include "torshpkg/encryption.h"
#include "torshpkg/keys.h"
#include "torshpkg/manifest.h"
#include "torshpkg/package.h"

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

// Chunk sizes unless WriteOptions::chunk_size says otherwise. A read at a random offset decodes
// every chunk it touches whole, so compressed resources get small chunks (a 1 MiB read decodes
// 1.25 MiB rather than 2 MiB); stored chunks are only hashed, and larger ones stream faster.
inline constexpr uint32_t kDefaultChunkSize = 1u << 20;              // stored resources
inline constexpr uint32_t kDefaultCompressedChunkSize = 256u << 10;  // compressed resources

// The chunk size of a resource: `chosen` unless it is 0, else the default for its codec.
inline uint32_t chunk_size_for(uint32_t chosen, Codec codec) {
  if (chosen != 0) return chosen;
  return codec == Codec::kNone ? kDefaultChunkSize : kDefaultCompressedChunkSize;
}

// Stored resources are verified in blocks of this size by default: a read of a page hashes that
// page, not its whole chunk (docs/FORMAT.md, "Blocks").
inline constexpr uint32_t kDefaultBlockSize = 4096;

struct WriteOptions {
  CodecSpec compression = kDefaultCodec;  // for resources that name none
  uint32_t chunk_size = 0;                // for every resource; 0: by codec (chunk_size_for)
  // Block size of resources stored plain (a power of two from 4096 to the chunk size); 0 hashes
  // their chunks whole, which readers of format versions 1 and 2 need.
  uint32_t block_size = kDefaultBlockSize;
  // When set and it becomes true, write() stops at the next chunk batch, removes the temporary
  // file and throws Error(kInterrupted).
  const std::atomic<bool>* cancel = nullptr;
  ProgressFn progress;  // plain bytes encoded so far, of the total
  // When set, the package is signed with this key as it is written.
  const PrivateKey* sign_key = nullptr;
  // Cipher for resources that name none. Encrypting anything needs at least one secret; each
  // secret gets a key slot.
  Cipher encryption = Cipher::kNone;
  std::vector<Secret> secrets;
  Argon2Params argon2;
};

struct ResourceInput {
  std::string path;                      // relative path under resources/
  std::optional<ResourceType> type;      // guessed from the path when absent
  std::optional<CodecSpec> compression;  // WriteOptions::compression when absent
  std::optional<Cipher> encryption;      // WriteOptions::encryption when absent
  // The bytes: a file opened when the package is written, or [offset, offset+size) of a source.
  std::string file;
  std::shared_ptr<const ByteSource> source;
  uint64_t offset = 0;
  uint64_t size = 0;
  // Shown with x bits in mounts. A file added by path is executable when any of its x bits is
  // set, whatever this says.
  bool executable = false;
};

class PackageWriter {
 public:
  // `header` gives name, version, description, author, license, metadata and lineage; its
  // package_id and created are filled in when empty, and its resources and dependencies are
  // replaced by what is added here.
  explicit PackageWriter(Manifest header);
  ~PackageWriter();

  // Each add checks its arguments at once and throws Error(kInvalidArgument / kNotFound).
  void add_resource(ResourceInput input);
  void add_file(const std::string& path, const std::string& file,
                std::optional<ResourceType> type = std::nullopt,
                std::optional<CodecSpec> compression = std::nullopt);
  void add_bytes(const std::string& path, std::vector<uint8_t> bytes,
                 std::optional<ResourceType> type = std::nullopt,
                 std::optional<CodecSpec> compression = std::nullopt);
  void add_dependency(Dependency dependency);

  // Chooses the codec of resources added without one, by path; nullopt falls back to
  // WriteOptions::compression.
  using CompressionRule = std::function<std::optional<CodecSpec>(const std::string& path)>;
  void set_compression_rule(CompressionRule rule) { rule_ = std::move(rule); }
  // Likewise for the cipher of resources added without one.
  using EncryptionRule = std::function<std::optional<Cipher>(const std::string& path)>;
  void set_encryption_rule(EncryptionRule rule) { encryption_rule_ = std::move(rule); }

  size_t resource_count() const { return inputs_.size(); }

  // Writes the package to `out_path` (replacing an existing file only on success) and returns
  // its manifest.
  Manifest write(const std::string& out_path, const WriteOptions& options = {});

 private:
  Manifest header_;
  std::vector<ResourceInput> inputs_;
  std::vector<Dependency> dependencies_;
  CompressionRule rule_;
  EncryptionRule encryption_rule_;
};

}  // namespace torshpkg

#pragma GCC visibility pop
