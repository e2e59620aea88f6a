// Reading a package: open, list, stat, and random-access reads of any file it shows.
//
// A Package is immutable once opened and may be used from many threads at once without external
// locking. Opening reads the ZIP directory, the manifest and the dependency files: the cost does
// not depend on resource sizes. A resource's chunk index is read and checked against the manifest
// on its first use. Every chunk is checked against its leaf hash before any of its bytes are
// returned; a mismatch throws Error(kCorrupt) and returns nothing of that chunk.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "torshpkg/byte_source.h"
#include "torshpkg/encryption.h"
#include "torshpkg/manifest.h"
#include "torshpkg/signature.h"

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

class ChunkStore;

// A file in the tree a package shows (and `ls`, the mount and extraction produce).
struct FileNode {
  enum class Kind { kManifest, kResource, kDependency };
  std::string path;  // "manifest.json", "resources/<path>", "dependencies/<name>.json"
  Kind kind = Kind::kManifest;
  uint64_t size = 0;
  // Index into manifest().resources or manifest().dependencies.
  size_t item = 0;
};

// Called with bytes done and bytes total; may be called from worker threads, one at a time.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

class Package {
 public:
  // Opens and validates a package. Throws Error(kCorrupt) for anything malformed,
  // Error(kNotFound/kIo) when the file cannot be read, Error(kUnsupported) for newer formats.
  //
  // With a secret, an encrypted package is unlocked at open (Argon2id or HKDF on the matching
  // key slots): a secret that opens no slot throws Error(kWrongKey). Without one, everything but
  // reading encrypted resources works (listing, structure, leaf hashes).
  static std::unique_ptr<Package> open(const std::string& path, const Secret* secret = nullptr);
  static std::unique_ptr<Package> open(std::shared_ptr<const ByteSource> source,
                                       const Secret* secret = nullptr);

  ~Package();
  Package(const Package&) = delete;
  Package& operator=(const Package&) = delete;

  const std::string& file_name() const;
  const Manifest& manifest() const;
  // The exact bytes of manifest.json (what a signature covers).
  const std::string& manifest_bytes() const;
  // The package's digest: hex SHA-256 of manifest.json, which binds every resource's bytes
  // through the chunk index digests it lists. What the lineage journal records.
  const std::string& manifest_digest() const;

  // The detached signatures stored in the package, parsed but not verified (see
  // verify_trusted_signature in signature.h).
  const std::vector<Signature>& signatures() const;

  // Every file, sorted by path: manifest.json, dependencies/..., resources/...
  const std::vector<FileNode>& files() const;
  // Finds a file by its tree path; nullptr when absent.
  const FileNode* find(std::string_view path) const;

  // Reads up to out.size() bytes at `offset`; returns the count, short only at the end of the
  // file. Large reads decode their chunks in parallel.
  size_t read(const FileNode& file, uint64_t offset, std::span<uint8_t> out) const;

  // Decodes one verified chunk of a resource into `out`, which must be exactly the chunk's plain
  // length, min(chunk_size, size - chunk * chunk_size); throws invalid_argument otherwise.
  // With `uncached`, a chunk that is stored plain is read past the page cache when the source
  // allows it (ReadOptions::uncached): `out` must then start at a multiple of
  // kUncachedAlignment with room for its size rounded up to one.
  void read_chunk(const ResourceEntry& resource, uint64_t chunk, std::span<uint8_t> out,
                  bool uncached = false) const;

  // Whether a resource's chunks are its plain bytes as stored (no codec, no cipher): they are
  // read in place, and may be read past the page cache (read_chunk's `uncached`).
  bool stored_plain(const ResourceEntry& resource) const;

  // A hint that chunks [first, first + count) of a resource will be read soon: their stored
  // bytes start coming from disk in the background, so that reading and verifying them later
  // does not wait for the disk. Loads the resource's chunk index; never reads chunk data.
  void will_need(const ResourceEntry& resource, uint64_t first, uint64_t count) const;
  // Tells the package file that this reader plans its reads (chunk by chunk, runs announced
  // with will_need): the kernel stops reading ahead in it on its own (Advice::kPlanned).
  void reads_are_planned() const;

  // Keeps the stored chunks of resources with blocks (stored, format 3) in `store` as they are
  // verified, and looks there first (torshpkg/chunk_store.h): what it gives is checked like a
  // read from the package's source. Not to be called while other threads read the package.
  void set_chunk_store(std::shared_ptr<const ChunkStore> store);

  // Unlocks an encrypted package opened without its secret (nothing to do for a plain or an
  // unlocked one): throws Error(kWrongKey) when the secret opens no slot. Open first, check the
  // signature, then unlock: key derivation then runs only for a package that is trusted. Not to
  // be called while other threads read the package.
  void unlock(const Secret& secret);

  // Whether some resource is encrypted, and whether the package was opened with its secret.
  bool encrypted() const;
  bool unlocked() const;

  // Checks every chunk index against the manifest. With `full`, also reads every chunk (leaf
  // hashes, decoding), the plain SHA-256 and the ZIP CRC-32 of every resource; encrypted
  // resources of a locked package get their leaf hashes and CRC-32 checked only. Throws
  // Error(kCorrupt) naming the first failure.
  void verify(bool full, const ProgressFn& progress = {}) const;

 private:
  struct __attribute__((visibility("hidden"))) Rep;  // private: not exported with Package
  explicit Package(std::unique_ptr<Rep> rep);
  std::unique_ptr<Rep> rep_;
};

// One file of a package as a ByteSource: reads decode and verify its chunks (Package::read), so
// a damaged chunk throws Error(kCorrupt). Its preferred read size is the resource's chunk size.
// Keeps `package` alive.
std::shared_ptr<ByteSource> package_file_source(std::shared_ptr<const Package> package,
                                                const FileNode& file);

}  // namespace torshpkg

#pragma GCC visibility pop
