#include "prefetcher.h"

#include <pthread.h>

#include <algorithm>
#include <system_error>

namespace torshpkg::fs {

Prefetcher::Prefetcher(size_t max_threads, std::function<void(uint32_t, uint64_t)> decode,
                       std::chrono::milliseconds idle_exit, std::shared_ptr<ThreadLimit> shared)
    : max_threads_(std::max<size_t>(max_threads, 1)),
      shared_(std::move(shared)),
      idle_exit_(idle_exit),
      decode_(std::move(decode)) {}

Prefetcher::~Prefetcher() {
  std::list<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    queue_.clear();
    queued_ = 0;
    threads.splice(threads.end(), running_);
    threads.splice(threads.end(), ended_);
  }
  wake_.notify_all();
  for (std::thread& t : threads) t.join();
}

bool Prefetcher::request(uint32_t resource, uint64_t first, uint64_t count, bool urgent) {
  if (count == 0) return true;
  std::list<std::thread> ended;
  bool refused = false;
  {
    std::lock_guard lock(mutex_);
    ended.swap(ended_);  // threads that ended since the last request: joined below, unlocked
    queued_ += count;    // counted first, so that enough threads start for it
    while (queued_ > idle_ && running_.size() < max_threads_) {
      // More work than idle threads to take it: one more thread.
      if (shared_ && !shared_->try_take()) break;
      running_.emplace_back();
      const auto self = std::prev(running_.end());
      try {
        *self = std::thread([this, self] {
          // Named, so that `top -H` and tests tell the mount's readers from libfuse's workers.
          ::pthread_setname_np(::pthread_self(), kThreadName);
          run(self);
          if (shared_) shared_->give_back();
        });
        ++idle_;  // idle until it takes work, so the loop starts no more than needed
      } catch (const std::system_error&) {
        running_.erase(self);  // none to be had: the threads there are take the work
        if (shared_) shared_->give_back();
        break;
      }
    }
    // Queued (the threads wait for the lock), or, with no thread to take it nor one to be had,
    // refused rather than queued for nobody.
    const Range range{resource, first, first + count};
    if (running_.empty()) {
      queued_ -= count;
      refused = true;
    } else if (urgent) {
      queue_.push_front(range);
    } else {
      queue_.push_back(range);
    }
  }
  if (count == 1) {
    wake_.notify_one();
  } else {
    wake_.notify_all();
  }
  for (std::thread& t : ended) t.join();
  return !refused;
}

size_t Prefetcher::threads() const {
  std::lock_guard lock(mutex_);
  return running_.size();
}

void Prefetcher::run(std::list<std::thread>::iterator self) {
  std::unique_lock lock(mutex_);
  for (;;) {  // counted in idle_ here

    const bool woken =
        wake_.wait_for(lock, idle_exit_, [this] { return stopping_ || !queue_.empty(); });
    --idle_;
    if (stopping_) return;
    if (!woken) {
      // Idle for idle_exit: end; the next request() (or the destructor) joins this thread.
      ended_.splice(ended_.end(), running_, self);
      return;
    }
    Range& front = queue_.front();
    const uint32_t resource = front.resource;
    const uint64_t chunk = front.next++;
    if (front.next == front.end) queue_.pop_front();
    --queued_;
    lock.unlock();
    try {
      decode_(resource, chunk);
    } catch (...) {
    }
    lock.lock();
    ++idle_;
  }
}

}  // namespace torshpkg::fs
