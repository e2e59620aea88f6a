#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>

namespace torshpkg {

ThreadPool::ThreadPool(size_t workers) {
  threads_.reserve(workers);
  for (size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { run_worker(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::run_worker() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

namespace {

struct Job {
  explicit Job(size_t count) : n(count) {}
  const size_t n;
  std::atomic<size_t> next{0};
  std::mutex mutex;
  std::condition_variable finished;
  size_t done = 0;
  std::exception_ptr error;
};

// Claims indices until none is left. `fn` is only touched for a claimed index, and the caller of
// parallel_for outlives every claimed index, so late helpers never see a dangling `fn`.
void drain(Job& job, const std::function<void(size_t)>& fn) {
  for (;;) {
    const size_t i = job.next.fetch_add(1);
    if (i >= job.n) return;
    std::exception_ptr error;
    try {
      fn(i);
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard lock(job.mutex);
    if (error && !job.error) job.error = error;
    if (++job.done == job.n) job.finished.notify_all();
  }
}

}  // namespace

void ThreadPool::parallel_for(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  auto job = std::make_shared<Job>(n);
  const size_t helpers = std::min(n - 1, threads_.size());
  if (helpers > 0) {
    {
      std::lock_guard lock(mutex_);
      for (size_t i = 0; i < helpers; ++i) queue_.emplace_back([job, &fn] { drain(*job, fn); });
    }
    wake_.notify_all();
  }
  drain(*job, fn);
  std::unique_lock lock(job->mutex);
  job->finished.wait(lock, [&] { return job->done == job->n; });
  if (job->error) std::rethrow_exception(job->error);
}

ThreadPool& shared_thread_pool() {
  static ThreadPool pool([] {
    const unsigned cores = std::thread::hardware_concurrency();
    return cores > 1 ? cores - 1 : 1;
  }());
  return pool;
}

size_t chunks_per_batch(uint64_t chunk_size, uint64_t min_bytes) {
  const uint64_t by_cores = 2 * (shared_thread_pool().workers() + 1);
  const uint64_t by_bytes = min_bytes / chunk_size;
  const uint64_t cap = std::max<uint64_t>(1, (1ull << 30) / chunk_size);
  return static_cast<size_t>(std::max<uint64_t>(1, std::min(cap, std::max(by_cores, by_bytes))));
}

}  // namespace torshpkg
