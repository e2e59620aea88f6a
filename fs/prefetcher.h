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

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <thread>
#include <utility>

namespace torshpkg::fs {

class Prefetcher {
 public:
  static constexpr std::chrono::milliseconds kDefaultIdleExit{10'000};

  // `decode(resource, chunk)` decodes one chunk into the cache; its errors are swallowed (the
  // reader meets them, and reports them, when it reads that chunk itself).
  Prefetcher(size_t max_threads, std::function<void(uint32_t, uint64_t)> decode,
             std::chrono::milliseconds idle_exit = kDefaultIdleExit);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Queues chunks [first, first + count) of a resource; an urgent range (a reader is about to
  // need it) goes before the readahead.
  void request(uint32_t resource, uint64_t first, uint64_t count, bool urgent);

  // Threads running now (busy or idle), for tests and status.
  size_t threads() const;

 private:
  void run(std::list<std::thread>::iterator self);

  const size_t max_threads_;
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
