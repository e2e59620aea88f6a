// A package as a read-only filesystem: the policy-free core the FUSE callbacks call into
// (attributes, directory listing, cached reads, extended attributes), testable without a mount.
// Thread-safe: the package and tree are immutable, the cache has its own lock.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "chunk_cache.h"
#include "prefetcher.h"
#include "torshpkg/package.h"
#include "tree.h"

namespace torshpkg::fs {

// The kernel's readahead for a mount, in KiB. It also sets the size of a sequential reader's
// requests: the kernel's default of 128 KiB makes eight round trips per 1 MiB. It must exceed the
// largest request (1 MiB): a 1 MiB read at an offset that is not a multiple of 4 KiB covers 257
// pages, and a read larger than the readahead window starts a readahead stream, so with 1024 one
// random 1 MiB pread arrives as three 1 MiB requests (four chunks decoded instead of two).
inline constexpr uint32_t kDefaultKernelReadAheadKb = 2048;
inline constexpr uint32_t kMaxKernelReadAheadKb = 65536;  // what a mount accepts
// Bytes of verified, decoded chunks a mount keeps, counting those being decoded
// (FsOptions::cache_bytes): sized for a small host; sequential readahead decodes up to 16 MiB of
// it ahead of a reader.
inline constexpr uint64_t kDefaultCacheBytes = 64ull << 20;

struct FsOptions {
  uint64_t cache_bytes = kDefaultCacheBytes;
  uid_t uid = 0;
  gid_t gid = 0;
  // The read bits of every file (0444, 0440, 0400...): folders and executable resources get the
  // matching x bits as well. The kernel enforces them (default_permissions).
  mode_t mode = 0444;
  std::string signer;  // key id shown in user.torshpkg.signer; empty when unsigned
  // Plain bytes to decode ahead of a sequential reader, in parallel (0 turns readahead off).
  uint64_t readahead_bytes = 16ull << 20;
  // How many contiguous bytes a reader must have read before readahead starts: more than one
  // random read of the largest request size (1 MiB) can span.
  uint64_t sequential_after_bytes = 4ull << 20;
  // The kernel's readahead for the mount (/sys/class/bdi/<dev>/read_ahead_kb). Needs root; 0
  // leaves the kernel's value. See kDefaultKernelReadAheadKb.
  uint32_t kernel_read_ahead_kb = kDefaultKernelReadAheadKb;
  // Chunks stored plain that the page cache does not hold are read with direct I/O
  // (Package::read_chunk's `uncached`): the mount's own page cache keeps what it served, so
  // caching the package file's bytes as well would hold them twice, and going through that
  // cache took 40% of a stored read's CPU time. Many reads are kept in flight instead of the
  // kernel's readahead. Where the file system refuses direct I/O, reads are buffered.
  bool direct_reads = true;
  // The decoding pool's threads start when there is work and end after this long without
  // any, so a mount nobody reads holds none of them.
  std::chrono::milliseconds idle_thread_exit = Prefetcher::kDefaultIdleExit;
  // Shared with other mounts (torshpkgd): a byte budget their caches draw on as well as their
  // own cache_bytes, and a limit on their decoding threads. None by default.
  std::shared_ptr<SharedBudget> shared_budget;
  std::shared_ptr<ThreadLimit> thread_limit;
  // FUSE worker threads kept idle (libfuse's max_idle_threads): more end once their request is
  // answered. -1 keeps them all (up to the session's 16).
  int fuse_idle_threads = -1;
  // Called before the open is answered, on the first open of any file by each process; and when
  // a read fails (the reader gets EIO or EACCES). Either may run on many threads at once.
  std::function<void(pid_t pid, uid_t uid)> on_first_open;
  std::function<void(const std::string& path, const std::string& error)> on_read_error;
};

// What a mount has served, for status reports.
struct FsStats {
  uint64_t bytes_served = 0;
  uint64_t read_failures = 0;
  uint64_t cache_hits = 0;
  uint64_t cache_misses = 0;
  uint64_t cache_bytes = 0;            // decoded chunks held now, and those being decoded
  uint64_t cache_in_flight_bytes = 0;  // of those: being decoded or queued for it
  uint64_t cache_capacity = 0;         // FsOptions::cache_bytes
};

// The bytes of one read as pieces of cached chunks, which `chunks` keeps alive: what the FUSE
// layer hands to the kernel without copying them. Bytes that live in no chunk (manifest.json,
// dependency files) are copied into `own`.
struct ReadSlices {
  std::vector<Chunk> chunks;
  std::vector<std::span<const uint8_t>> parts;
  std::vector<uint8_t> own;
  size_t size = 0;
};

class PackageFs {
 public:
  PackageFs(std::unique_ptr<Package> package, FsOptions options);

  const Tree& tree() const { return tree_; }
  const Package& package() const { return *package_; }
  const ChunkCache& cache() const { return cache_; }
  const FsOptions& options() const { return options_; }

  struct stat attributes(const Node& node) const;
  // Reads up to out.size() bytes of a file at `offset` through the chunk cache. Throws
  // torshpkg::Error (kCorrupt for a chunk that fails its hash).
  size_t read(const Node& node, uint64_t offset, std::span<uint8_t> out);
  // The same read without copying: `out` is cleared and filled with up to `length` bytes.
  void read_slices(const Node& node, uint64_t offset, size_t length, ReadSlices& out);

  // user.torshpkg.{type,sha256,compression,encryption,signer}; nullopt when absent.
  std::optional<std::string> xattr(const Node& node, std::string_view name) const;
  std::vector<std::string> xattr_names(const Node& node) const;

  uint64_t total_bytes() const { return total_bytes_; }

  // Records an open by process `pid`; calls on_first_open the first time that process opens a
  // file of this mount.
  void opened(pid_t pid, uid_t uid);
  // Records bytes handed to the kernel, and a failed read (calling on_read_error).
  void served(size_t bytes) { bytes_served_ += bytes; }
  void read_failed(const std::string& path, const std::string& error);
  FsStats stats() const;
  // Threads of the decoding pool running now (they end when idle).
  size_t prefetch_threads() const;
  // Gives back the memory of the cached chunks (an idle mount); returns the bytes dropped.
  uint64_t release_memory();
  // How long since the last read (or since the mount was made).
  std::chrono::steady_clock::duration idle_for() const;

 private:
  static size_t plain_len(const ResourceEntry& resource, uint64_t index);
  // Decodes a chunk of a resource into a cache buffer.
  ChunkCache::Fill fill(const ResourceEntry& resource, uint64_t index) const;
  Chunk chunk(const ResourceEntry& resource, uint64_t index, bool holds_chunks);
  // Claims chunks [first, first + count) in the cache and queues those claimed for the pool.
  void prefetch(const ResourceEntry& resource, uint64_t first, uint64_t count, bool urgent);
  // Tracks the reader's run and keeps the readahead window ahead of a sequential one. True when
  // an earlier request of the run already announced and queued this request's chunks.
  bool read_ahead(const ResourceEntry& resource, uint64_t offset, uint64_t end);
  // Asks the disk for chunks [first, first + count)'s stored bytes, unless they are read with
  // direct I/O (the page cache must not get them ahead of time). A damaged chunk index is
  // ignored here: reading those chunks reports it.
  void announce(const ResourceEntry& resource, uint64_t first, uint64_t count);
  // Whether a resource's chunks are read with direct I/O, which the disk is then not asked
  // for ahead of time (Advice::kWillNeed would fill the page cache).
  bool reads_direct(const ResourceEntry& resource) const;

  std::unique_ptr<Package> package_;
  FsOptions options_;
  Tree tree_;
  ChunkCache cache_;
  uint64_t total_bytes_ = 0;
  time_t created_ = 0;  // the manifest's creation time: every node's mtime and ctime
  // Per resource: where the last read ended and where its run began, to recognise sequential
  // reading, and up to which chunk readahead has been requested.
  struct ReadState {
    std::atomic<uint64_t> last_end{0};
    std::atomic<uint64_t> run_start{0};
    std::atomic<uint64_t> requested_end{0};
    std::atomic<bool> sequential{false};  // the last request continued a sequential run
  };
  std::unique_ptr<ReadState[]> reads_;
  std::atomic<uint64_t> bytes_served_{0};
  std::atomic<int64_t> last_read_;  // steady clock ticks
  std::atomic<uint64_t> read_failures_{0};
  std::mutex openers_mutex_;
  std::set<pid_t> openers_;  // processes that opened a file; cleared when it grows large
  // Last: its threads use the members above. It decodes on every core, or keeps many direct
  // reads in flight when some resource is read with direct I/O.
  std::unique_ptr<Prefetcher> pool_;
};

}  // namespace torshpkg::fs
