#include "prefetcher.h"

namespace torshpkg::fs {

namespace {
// At most this many chunks wait in the queue; readahead beyond it is pointless.
constexpr size_t kMaxQueued = 64;
}  // namespace

Prefetcher::Prefetcher(size_t threads, std::function<void(uint32_t, uint64_t)> decode)
    : decode_(std::move(decode)) {
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

Prefetcher::~Prefetcher() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    queue_.clear();
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void Prefetcher::request(uint32_t resource, uint64_t chunk, bool urgent) {
  {
    std::lock_guard lock(mutex_);
    if ((queue_.size() >= kMaxQueued && !urgent) || !pending_.insert({resource, chunk}).second) {
      return;
    }
    if (urgent) {
      queue_.emplace_front(resource, chunk);
    } else {
      queue_.emplace_back(resource, chunk);
    }
  }
  wake_.notify_one();
}

void Prefetcher::run() {
  for (;;) {
    std::pair<uint32_t, uint64_t> item;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      item = queue_.front();
      queue_.pop_front();
    }
    try {
      decode_(item.first, item.second);
    } catch (...) {
    }
    std::lock_guard lock(mutex_);
    pending_.erase(item);
  }
}

}  // namespace torshpkg::fs
