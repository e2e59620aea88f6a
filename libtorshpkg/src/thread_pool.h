// A fixed pool of worker threads for chunk encoding and decoding.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace torshpkg {

// Thread-safe: any number of threads may call parallel_for at once. The calling thread works on
// its own loop too, so nested or concurrent calls cannot deadlock waiting for workers.
class ThreadPool {
 public:
  explicit ThreadPool(size_t workers);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Calls fn(i) for every i in [0, n), spread over the workers and the caller; returns when all
  // calls have returned. If any call throws, the first exception is rethrown here after the rest
  // have finished.
  void parallel_for(size_t n, const std::function<void(size_t)>& fn);

  size_t workers() const { return threads_.size(); }

 private:
  void run_worker();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// One pool for the process, with one thread per core beside the caller's.
ThreadPool& shared_thread_pool();

// How many chunks of `chunk_size` bytes to process per parallel batch: enough to keep every core
// busy twice over and at least `min_bytes`, but never more than 1 GiB of plain data.
size_t chunks_per_batch(uint64_t chunk_size, uint64_t min_bytes);

}  // namespace torshpkg
