// Sequential readahead: when a file is read front to back, the chunks ahead of the reader are
// decoded in parallel on background threads and put in the chunk cache, so the next reads find
// them ready. Thread-safe; requests for chunks already cached or in flight are dropped.
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
#include <set>
#include <thread>
#include <utility>

namespace torshpkg::fs {

class Prefetcher {
 public:
  static constexpr std::chrono::milliseconds kDefaultIdleExit{10'000};

  // `decode(resource, chunk)` decodes one chunk into the cache; its errors are swallowed (the
  // reader will meet them, and report them, when it reads that chunk itself).
  Prefetcher(size_t max_threads, std::function<void(uint32_t, uint64_t)> decode,
             std::chrono::milliseconds idle_exit = kDefaultIdleExit);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Queues a chunk; an urgent one (a reader is about to need it) goes before the readahead.
  void request(uint32_t resource, uint64_t chunk, bool urgent = false);

  // Threads running now (busy or idle), for tests and status.
  size_t threads() const;

 private:
  void run(std::list<std::thread>::iterator self);

  const size_t max_threads_;
  const std::chrono::milliseconds idle_exit_;
  std::function<void(uint32_t, uint64_t)> decode_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::pair<uint32_t, uint64_t>> queue_;
  std::set<std::pair<uint32_t, uint64_t>> pending_;  // queued or being decoded
  bool stopping_ = false;
  size_t idle_ = 0;                 // threads waiting for work
  std::list<std::thread> running_;  // threads in run()
  std::list<std::thread> ended_;    // threads that left run() idle, to be joined
};

}  // namespace torshpkg::fs
