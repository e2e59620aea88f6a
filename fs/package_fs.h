// A package as a read-only filesystem: the policy-free core the FUSE callbacks call into
// (attributes, directory listing, cached reads, extended attributes), testable without a mount.
// Thread-safe: the package and tree are immutable, the cache has its own lock.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "chunk_cache.h"
#include "prefetcher.h"
#include "torshpkg/package.h"
#include "tree.h"

namespace torshpkg::fs {

struct FsOptions {
  uint64_t cache_bytes = 256ull << 20;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string signer;  // key id shown in user.torshpkg.signer; empty when unsigned
  // Plain bytes to decode ahead of a sequential reader, in parallel (0 turns readahead off).
  uint64_t readahead_bytes = 16ull << 20;
};

class PackageFs {
 public:
  PackageFs(std::unique_ptr<Package> package, FsOptions options);

  const Tree& tree() const { return tree_; }
  const Package& package() const { return *package_; }
  const ChunkCache& cache() const { return cache_; }

  struct stat attributes(const Node& node) const;
  // Reads up to out.size() bytes of a file at `offset` through the chunk cache. Throws
  // torshpkg::Error (kCorrupt for a chunk that fails its hash).
  size_t read(const Node& node, uint64_t offset, std::span<uint8_t> out);

  // user.torshpkg.{type,sha256,compression,encryption,signer}; nullopt when absent.
  std::optional<std::string> xattr(const Node& node, std::string_view name) const;
  std::vector<std::string> xattr_names(const Node& node) const;

  uint64_t total_bytes() const { return total_bytes_; }

 private:
  Chunk chunk(const ResourceEntry& resource, uint64_t index);
  void read_ahead(const ResourceEntry& resource, uint64_t offset, uint64_t end);

  std::unique_ptr<Package> package_;
  FsOptions options_;
  Tree tree_;
  ChunkCache cache_;
  uint64_t total_bytes_ = 0;
  time_t created_ = 0;  // the manifest's creation time: every node's mtime and ctime
  // Chunks being decoded, so that a reader and the prefetcher never decode the same chunk twice:
  // whoever comes second waits for the first.
  std::mutex in_flight_mutex_;
  std::map<std::pair<uint32_t, uint64_t>, std::shared_future<Chunk>> in_flight_;
  // Per resource: where the last read ended, to recognise sequential reading.
  std::unique_ptr<std::atomic<uint64_t>[]> last_end_;
  std::unique_ptr<Prefetcher> prefetcher_;  // last: its threads use the members above
};

// Mounts `fs` on `mountpoint` (read-only, FUSE low-level, multi-threaded) and serves it until
// unmounted or signalled. `ready` is called once the mount is in place, or with an error message
// when mounting failed; returns the process exit status.
int serve(PackageFs& fs, const std::string& mountpoint,
          const std::vector<std::string>& fuse_options,
          const std::function<void(const std::string& error)>& ready);

}  // namespace torshpkg::fs
