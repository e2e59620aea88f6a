// The mount's one queue of chunks to decode ahead of its readers, and the one pool of threads
// that decodes them: readahead windows of sequential readers, and the later chunks of a read
// that spans several (decoded beside the reader, which takes the first). Each request is a range
// of chunks of one resource, already claimed in the chunk cache (ChunkCache::claim), so nothing
// is queued twice; a reader that needs a queued chunk takes its claim over.
//
// Threads are started when there is work and no idle thread to take it, up to `max_threads`,
// and end after `idle_exit` without work: a mount nobody reads holds none (torshpkgd may hold
// thousands of mounts).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

namespace torshpkg::fs {

// Threads that the pools of many mounts share (torshpkgd's decode_threads). Thread-safe.
class ThreadLimit {
 public:
  explicit ThreadLimit(size_t limit) : limit_(limit) {}
  // Takes one thread of the limit; false when all are taken.
  bool try_take() {
    size_t used = used_.load();
    while (used < limit_.load()) {
      if (used_.compare_exchange_weak(used, used + 1)) return true;
    }
    return false;
  }
  void give_back() { --used_; }
  size_t used() const { return used_.load(); }
  size_t limit() const { return limit_.load(); }
  void set_limit(size_t limit) { limit_.store(limit); }

 private:
  std::atomic<size_t> limit_;
  std::atomic<size_t> used_{0};
};

class Prefetcher {
 public:
  static constexpr std::chrono::milliseconds kDefaultIdleExit{10'000};
  // The name of its threads (/proc/PID/task/TID/comm).
  static constexpr const char* kThreadName = "torshpkg-read";

  // `decode(resource, chunk)` decodes one chunk into the cache; its errors are swallowed (the
  // reader meets them, and reports them, when it reads that chunk itself). With `shared`, each
  // thread also takes one of that limit's, and none starts while they are all taken (requests
  // are then refused while the pool has no thread; queued ones wait for the pool's threads).
  Prefetcher(size_t max_threads, std::function<void(uint32_t, uint64_t)> decode,
             std::chrono::milliseconds idle_exit = kDefaultIdleExit,
             std::shared_ptr<ThreadLimit> shared = nullptr);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Queues chunks [first, first + count) of a resource; an urgent range (a reader is about to
  // need it) goes before the readahead. False, and nothing queued, when the pool has no thread
  // and can start none (the shared limit is taken).
  bool request(uint32_t resource, uint64_t first, uint64_t count, bool urgent);

  // Threads running now (busy or idle), for tests and status.
  size_t threads() const;

 private:
  void run(std::list<std::thread>::iterator self);

  const size_t max_threads_;
  const std::shared_ptr<ThreadLimit> shared_;
  const std::chrono::milliseconds idle_exit_;
  std::function<void(uint32_t, uint64_t)> decode_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  struct Range {
    uint32_t resource;
    uint64_t next;  // the next chunk to hand out
    uint64_t end;
  };
  std::deque<Range> queue_;
  uint64_t queued_ = 0;  // chunks in queue_
  bool stopping_ = false;
  size_t idle_ = 0;                 // threads waiting for work
  std::list<std::thread> running_;  // threads in run()
  std::list<std::thread> ended_;    // threads that left run() idle, to be joined
};

}  // namespace torshpkg::fs
