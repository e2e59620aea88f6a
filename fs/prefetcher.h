// Sequential readahead: when a file is read front to back, the chunks ahead of the reader are
// decoded in parallel on background threads and put in the chunk cache, so the next reads find
// them ready. Thread-safe; requests for chunks already cached or in flight are dropped.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

namespace torshpkg::fs {

class Prefetcher {
 public:
  // `decode(resource, chunk)` decodes one chunk into the cache; its errors are swallowed (the
  // reader will meet them, and report them, when it reads that chunk itself).
  Prefetcher(size_t threads, std::function<void(uint32_t, uint64_t)> decode);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Queues a chunk; an urgent one (a reader is about to need it) goes before the readahead.
  void request(uint32_t resource, uint64_t chunk, bool urgent = false);

 private:
  void run();

  std::function<void(uint32_t, uint64_t)> decode_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::pair<uint32_t, uint64_t>> queue_;
  std::set<std::pair<uint32_t, uint64_t>> pending_;  // queued or being decoded
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace torshpkg::fs
