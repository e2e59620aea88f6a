#include "chunk_cache.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <new>

#include "torshpkg/byte_source.h"

namespace torshpkg::fs {

ChunkBuffer::~ChunkBuffer() {
  std::free(data_);
}

void ChunkBuffer::resize(size_t size) {
  if (size <= capacity_) {
    size_ = size;
    return;
  }
  // Page-aligned, with room for the size rounded up to a page: stored chunks are read into it
  // past the page cache (Package::read_chunk's `uncached`).
  const size_t room = uncached_room(size);
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(kUncachedAlignment, room));
  if (p == nullptr) throw std::bad_alloc();
#ifdef MADV_POPULATE_WRITE
  // Large buffers are fresh mappings: map their pages now, in one call. Best effort (older
  // kernels fault them in page by page as the decoder writes).
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + size) & ~(page - 1);
  if (size >= (64u << 10) && end > begin) {
    ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
  }
#endif
  std::free(data_);
  data_ = p;
  size_ = size;
  capacity_ = room;
}

ChunkCache::~ChunkCache() = default;

Chunk ChunkCache::get_or_fill(ChunkKey key, size_t size, const Fill& fill) {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (const auto it = entries_.find(key); it != entries_.end()) {
      const EntryPtr e = it->second;
      switch (e->state) {
        case State::kReady:
          ++hits_;
          lru_.splice(lru_.begin(), lru_, e->place);
          return e->buffer;
        case State::kFilling:
          ++hits_;
          return wait_for(lock, e);
        case State::kClaimed:  // queued readahead: this reader fills it now
          ++misses_;
          claims_.erase(e->place);
          e->state = State::kFilling;
          return run_fill(lock, key, e, size, fill);
        case State::kFailed:
          break;  // never in the map
      }
    }
    std::shared_ptr<ChunkBuffer> recycled;
    std::vector<std::shared_ptr<ChunkBuffer>> dropped;
    // A chunk larger than the whole budget is decoded without evicting anything (nor kept).
    if (size > capacity_ || make_room(size, true, recycled, dropped) || filling_ == 0) {
      ++misses_;
      const EntryPtr e = add_entry(key, State::kFilling, size, std::move(recycled));
      lock.unlock();
      dropped.clear();
      lock.lock();
      return run_fill(lock, key, e, size, fill);
    }
    // Every byte of the budget is being filled: wait for a fill to end, then look again.
    lock.unlock();
    dropped.clear();
    recycled.reset();
    lock.lock();
    const uint64_t ended = fills_ended_;
    fill_ended_.wait(lock, [&] { return fills_ended_ != ended; });
  }
}

Chunk ChunkCache::find(ChunkKey key) {
  std::unique_lock lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  const EntryPtr e = it->second;
  if (e->state == State::kReady) {
    lru_.splice(lru_.begin(), lru_, e->place);
    return e->buffer;
  }
  if (e->state != State::kFilling) return nullptr;
  try {
    return wait_for(lock, e);
  } catch (...) {
    return nullptr;
  }
}

bool ChunkCache::claim(ChunkKey key, size_t size) {
  std::shared_ptr<ChunkBuffer> recycled;
  std::vector<std::shared_ptr<ChunkBuffer>> dropped;
  std::lock_guard lock(mutex_);
  if (entries_.count(key) != 0 || !make_room(size, false, recycled, dropped)) return false;
  add_entry(key, State::kClaimed, size, std::move(recycled));
  return true;
}

void ChunkCache::fill_claimed(ChunkKey key, const Fill& fill) {
  std::unique_lock lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end() || it->second->state != State::kClaimed) return;
  const EntryPtr e = it->second;
  claims_.erase(e->place);
  e->state = State::kFilling;
  try {
    run_fill(lock, key, e, static_cast<size_t>(e->bytes), fill);
  } catch (...) {
  }
}

uint64_t ChunkCache::trim() {
  std::vector<std::shared_ptr<ChunkBuffer>> dropped;
  std::lock_guard lock(mutex_);
  uint64_t freed = 0;
  for (const ChunkKey& key : lru_) {
    const auto it = entries_.find(key);
    freed += it->second->bytes;
    dropped.push_back(std::move(it->second->buffer));
    entries_.erase(it);
  }
  lru_.clear();
  bytes_ -= freed;
  return freed;
}

bool ChunkCache::make_room(uint64_t size, bool take_claims,
                           std::shared_ptr<ChunkBuffer>& recycled,
                           std::vector<std::shared_ptr<ChunkBuffer>>& dropped) {
  while (bytes_ + size > capacity_) {
    std::list<ChunkKey>* from = !lru_.empty()                     ? &lru_
                                : take_claims && !claims_.empty() ? &claims_
                                                                  : nullptr;
    if (from == nullptr) return false;
    const auto it = entries_.find(from->back());
    from->pop_back();
    const EntryPtr e = it->second;
    entries_.erase(it);
    bytes_ -= e->bytes;
    if (e->state == State::kClaimed) in_flight_ -= e->bytes;
    // Only this entry holds the buffer (nobody can take a new hold without the lock): reuse it.
    if (!recycled && e->buffer && e->buffer.use_count() == 1) {
      recycled = std::move(e->buffer);
    } else if (e->buffer) {
      dropped.push_back(std::move(e->buffer));
    }
  }
  return true;
}

ChunkCache::EntryPtr ChunkCache::add_entry(ChunkKey key, State state, uint64_t size,
                                           std::shared_ptr<ChunkBuffer> recycled) {
  auto e = std::make_shared<Entry>();
  e->state = state;
  e->bytes = size;
  e->buffer = std::move(recycled);
  bytes_ += size;
  in_flight_ += size;
  if (state == State::kClaimed) {
    claims_.push_front(key);
    e->place = claims_.begin();
  }
  entries_.emplace(key, e);
  return e;
}

Chunk ChunkCache::run_fill(std::unique_lock<std::mutex>& lock, ChunkKey key, const EntryPtr& e,
                           size_t size, const Fill& fill) {
  ++filling_;
  std::shared_ptr<ChunkBuffer> buffer = std::move(e->buffer);
  lock.unlock();
  std::exception_ptr error;
  try {
    if (!buffer) buffer = std::make_shared<ChunkBuffer>();
    buffer->resize(size);
    fill(*buffer);
  } catch (...) {
    error = std::current_exception();
  }
  lock.lock();
  --filling_;
  ++fills_ended_;
  in_flight_ -= e->bytes;
  const bool keep = !error && e->bytes <= capacity_;
  if (keep) {
    lru_.push_front(key);
    e->place = lru_.begin();
  } else {
    entries_.erase(key);  // a failed chunk, or one larger than the whole budget
    bytes_ -= e->bytes;
  }
  e->state = error ? State::kFailed : State::kReady;
  e->error = error;
  if (!error) e->buffer = buffer;
  fill_ended_.notify_all();
  if (error) {
    lock.unlock();
    buffer.reset();
    std::rethrow_exception(error);
  }
  return buffer;
}

Chunk ChunkCache::wait_for(std::unique_lock<std::mutex>& lock, const EntryPtr& e) {
  fill_ended_.wait(lock, [&] { return e->state == State::kReady || e->state == State::kFailed; });
  if (e->state == State::kFailed) std::rethrow_exception(e->error);
  return e->buffer;
}

bool ChunkCache::contains(ChunkKey key) const {
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(key);
  return it != entries_.end() && it->second->state == State::kReady;
}

uint64_t ChunkCache::hits() const {
  std::lock_guard lock(mutex_);
  return hits_;
}

uint64_t ChunkCache::misses() const {
  std::lock_guard lock(mutex_);
  return misses_;
}

uint64_t ChunkCache::bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

uint64_t ChunkCache::in_flight_bytes() const {
  std::lock_guard lock(mutex_);
  return in_flight_;
}

}  // namespace torshpkg::fs
