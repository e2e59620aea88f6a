#include "prefetcher.h"

#include <algorithm>
#include <system_error>

namespace torshpkg::fs {

namespace {
// At most this many chunks wait in the queue; readahead beyond it is pointless.
constexpr size_t kMaxQueued = 64;
}  // namespace

Prefetcher::Prefetcher(size_t max_threads, std::function<void(uint32_t, uint64_t)> decode,
                       std::chrono::milliseconds idle_exit)
    : max_threads_(std::max<size_t>(max_threads, 1)),
      idle_exit_(idle_exit),
      decode_(std::move(decode)) {}

Prefetcher::~Prefetcher() {
  std::list<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    queue_.clear();
    threads.splice(threads.end(), running_);
    threads.splice(threads.end(), ended_);
  }
  wake_.notify_all();
  for (std::thread& t : threads) t.join();
}

void Prefetcher::request(uint32_t resource, uint64_t chunk, bool urgent) {
  std::list<std::thread> ended;
  {
    std::lock_guard lock(mutex_);
    ended.swap(ended_);  // threads that ended since the last request: joined below, unlocked
    const bool queued =
        (queue_.size() < kMaxQueued || urgent) && pending_.insert({resource, chunk}).second;
    if (queued) {
      if (urgent) {
        queue_.emplace_front(resource, chunk);
      } else {
        queue_.emplace_back(resource, chunk);
      }
      if (queue_.size() > idle_ && running_.size() < max_threads_) {
        // More work than idle threads to take it: one more thread.
        running_.emplace_back();
        const auto self = std::prev(running_.end());
        try {
          *self = std::thread([this, self] { run(self); });
        } catch (const std::system_error&) {
          running_.erase(self);  // none to be had: the threads there are take the work
        }
      }
    }
  }
  wake_.notify_one();
  for (std::thread& t : ended) t.join();
}

size_t Prefetcher::threads() const {
  std::lock_guard lock(mutex_);
  return running_.size();
}

void Prefetcher::run(std::list<std::thread>::iterator self) {
  std::unique_lock lock(mutex_);
  for (;;) {
    ++idle_;
    const bool woken =
        wake_.wait_for(lock, idle_exit_, [this] { return stopping_ || !queue_.empty(); });
    --idle_;
    if (stopping_) return;
    if (!woken) {
      // Idle for idle_exit: end; the next request() (or the destructor) joins this thread.
      ended_.splice(ended_.end(), running_, self);
      return;
    }
    const std::pair<uint32_t, uint64_t> item = queue_.front();
    queue_.pop_front();
    lock.unlock();
    try {
      decode_(item.first, item.second);
    } catch (...) {
    }
    lock.lock();
    pending_.erase(item);
  }
}

}  // namespace torshpkg::fs
