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
  std::list<Worker> workers;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    queue_.clear();
    workers.swap(workers_);
  }
  wake_.notify_all();
  for (Worker& w : workers) w.thread.join();
}

void Prefetcher::request(uint32_t resource, uint64_t chunk, bool urgent) {
  std::list<Worker> ended;
  {
    std::lock_guard lock(mutex_);
    // Threads that ended since the last request are joined here, outside the lock.
    for (auto it = workers_.begin(); it != workers_.end();) {
      const auto next = std::next(it);
      if (it->ended) ended.splice(ended.end(), workers_, it);
      it = next;
    }
    if ((queue_.size() >= kMaxQueued && !urgent) || !pending_.insert({resource, chunk}).second) {
      // Nothing queued: only the joins below are left to do.
    } else {
      if (urgent) {
        queue_.emplace_front(resource, chunk);
      } else {
        queue_.emplace_back(resource, chunk);
      }
      if (queue_.size() > idle_ && running_ < max_threads_) {
        // More work than idle threads to take it: one more thread.
        workers_.emplace_back();
        const auto self = std::prev(workers_.end());
        try {
          self->thread = std::thread([this, self] { run(self); });
          ++running_;
        } catch (const std::system_error&) {
          workers_.erase(self);  // none to be had: the threads there are take the work
        }
      }
    }
  }
  wake_.notify_one();
  for (Worker& w : ended) w.thread.join();
}

size_t Prefetcher::threads() const {
  std::lock_guard lock(mutex_);
  return running_;
}

void Prefetcher::run(std::list<Worker>::iterator self) {
  std::unique_lock lock(mutex_);
  for (;;) {
    ++idle_;
    const bool woken =
        wake_.wait_for(lock, idle_exit_, [this] { return stopping_ || !queue_.empty(); });
    --idle_;
    if (stopping_) return;
    if (!woken) {
      // Idle for idle_exit: end; the next request() (or the destructor) joins this thread.
      self->ended = true;
      --running_;
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
