#include "chunk_cache.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <new>

#include "torshpkg/byte_source.h"

namespace torshpkg::fs {

ChunkBuffer::~ChunkBuffer() {
  if (data_ != nullptr) ::munmap(data_, capacity_);
}

void ChunkBuffer::resize(size_t size) {
  if (size <= capacity_) {
    size_ = size;
    return;
  }
  // A mapping of its own: page-aligned, with room for the size rounded up to a page (stored
  // chunks are read into it past the page cache, Package::read_chunk's `uncached`), and given
  // back to the system when freed, so that a mount that drops its chunks shrinks (memory freed
  // to malloc stays in its arenas). Large ones are mapped in one call (MAP_POPULATE) rather
  // than page fault by page fault as the decoder first writes them.
  const size_t room = uncached_room(size);
  const int populate = size >= (64u << 10) ? MAP_POPULATE : 0;
  void* p =
      ::mmap(nullptr, room, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | populate, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  if (data_ != nullptr) ::munmap(data_, capacity_);
  data_ = static_cast<uint8_t*>(p);
  size_ = size;
  capacity_ = room;
}

void SharedBudget::reclaim(uint64_t more, const ChunkCache* except) {
  std::lock_guard lock(members_mutex_);
  const uint64_t used = used_.load();
  const uint64_t capacity = capacity_.load();
  if (used + more <= capacity) return;
  const uint64_t bytes = used + more - capacity;
  std::vector<ChunkCache*> order;
  for (ChunkCache* c : members_) {
    if (c != except) order.push_back(c);
  }
  std::sort(order.begin(), order.end(), [](const ChunkCache* a, const ChunkCache* b) {
    return a->last_use_.load(std::memory_order_relaxed) <
           b->last_use_.load(std::memory_order_relaxed);
  });
  uint64_t freed = 0;
  for (ChunkCache* c : order) {
    if (freed >= bytes) break;
    freed += c->shed(bytes - freed);
  }
}

namespace {
int64_t now_ticks() {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}

// A reader that finds the budget taken by evicted chunks that replies still hold (nobody is told
// when they let go) looks again this often, this many times, before it decodes past the budget.
constexpr std::chrono::milliseconds kPoll{1};
constexpr int kMaxPolls = 100;
}  // namespace

ChunkCache::ChunkCache(uint64_t capacity_bytes, std::shared_ptr<SharedBudget> shared)
    : capacity_(capacity_bytes), shared_(std::move(shared)) {
  if (shared_) {
    std::lock_guard lock(shared_->members_mutex_);
    shared_->members_.push_back(this);
  }
}

ChunkCache::~ChunkCache() {
  if (shared_) {
    std::lock_guard lock(shared_->members_mutex_);
    auto& m = shared_->members_;
    m.erase(std::remove(m.begin(), m.end(), this), m.end());
    shared_->used_ -= bytes_;
  }
}

void ChunkCache::count(int64_t bytes) {
  bytes_ += static_cast<uint64_t>(bytes);
  if (shared_) shared_->used_ += static_cast<uint64_t>(bytes);
}

Chunk ChunkCache::get_or_fill(ChunkKey key, size_t size, const Fill& fill,
                              bool caller_holds_chunks) {
  last_use_.store(now_ticks(), std::memory_order_relaxed);
  std::unique_lock lock(mutex_);
  bool reclaimed = false;  // asked the other caches of the shared budget for room once
  int polls = caller_holds_chunks ? kMaxPolls : 0;  // looks for held chunks let go of
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
    // A chunk larger than the whole budget evicts nothing (nor is it kept), and is decoded only
    // while nothing else here is: one at a time.
    const bool room = size <= capacity_ && make_room(size, true, reclaimed, recycled, dropped);
    if (!room && !reclaimed && size <= capacity_ && only_shared_lacks(size)) {
      lock.unlock();
      dropped.clear();
      shared_->reclaim(size, this);
      lock.lock();
      reclaimed = true;
      continue;
    }
    // With no room, a reader still decodes when nothing here is being filled or held, or when
    // only the other caches' fills hold the shared budget: it never waits for what may not end
    // soon.
    const bool wait_for_held = held_bytes_ > 0 && polls < kMaxPolls;
    if (room || (filling_ == 0 && !wait_for_held) ||
        (size <= capacity_ && only_shared_lacks(size))) {
      ++misses_;
      const EntryPtr e = add_entry(key, State::kFilling, size, std::move(recycled));
      return run_fill(lock, key, e, size, fill, std::move(dropped));
    }
    // The budget is taken by fills, or by held chunks: wait for a fill to end (counted from now,
    // so that one ending while the lock is let go of below is not missed) or, with none running,
    // a moment for readers to let go; then look again.
    const uint64_t ended = fills_ended_;
    lock.unlock();
    dropped.clear();
    recycled.reset();
    lock.lock();
    if (filling_ == 0 && fills_ended_ == ended) {
      ++polls;
      fill_ended_.wait_for(lock, kPoll);
      continue;
    }
    fill_ended_.wait(lock, [&] { return fills_ended_ != ended; });
  }
}

Chunk ChunkCache::find(ChunkKey key) {
  last_use_.store(now_ticks(), std::memory_order_relaxed);
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
  std::unique_lock lock(mutex_);
  if (entries_.count(key) != 0) return false;
  if (!make_room(size, false, false, recycled, dropped)) {
    if (!only_shared_lacks(size)) return false;
    lock.unlock();
    shared_->reclaim(size, this);
    lock.lock();
    if (entries_.count(key) != 0 || !make_room(size, false, true, recycled, dropped)) return false;
  }
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

bool ChunkCache::unclaim(ChunkKey key) {
  std::shared_ptr<ChunkBuffer> buffer;
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end() || it->second->state != State::kClaimed) return false;
  const EntryPtr e = it->second;
  claims_.erase(e->place);
  entries_.erase(it);
  count(-static_cast<int64_t>(e->bytes));
  in_flight_ -= e->bytes;
  buffer = std::move(e->buffer);  // freed once unlocked
  return true;
}

uint64_t ChunkCache::trim() {
  return shed(UINT64_MAX);
}

uint64_t ChunkCache::shed(uint64_t bytes) {
  std::shared_ptr<ChunkBuffer> recycled;
  std::vector<std::shared_ptr<ChunkBuffer>> dropped;
  std::lock_guard lock(mutex_);
  const uint64_t before = bytes_;
  sweep_held(recycled, dropped);
  // Ready chunks, least recently used first, then readahead nobody has started.
  while (before - bytes_ < bytes &&
         (drop_last(lru_, recycled, dropped) || drop_last(claims_, recycled, dropped))) {
  }
  return before - bytes_;
}

bool ChunkCache::drop_last(std::list<ChunkKey>& from, std::shared_ptr<ChunkBuffer>& recycled,
                           std::vector<std::shared_ptr<ChunkBuffer>>& dropped) {
  if (from.empty()) return false;
  const auto it = entries_.find(from.back());
  from.pop_back();
  const EntryPtr e = it->second;
  entries_.erase(it);
  if (e->state == State::kClaimed) in_flight_ -= e->bytes;
  // Readers still hold the chunk, or will when they wake (a waiter takes it from the entry): it
  // stays counted until they let go (sweep_held).
  if (e->buffer && (e->waiters > 0 || e->buffer.use_count() > 1)) {
    held_.push_back({e->waiters > 0 ? e->buffer : std::move(e->buffer), e->bytes});
    held_bytes_ += e->bytes;
    return true;
  }
  count(-static_cast<int64_t>(e->bytes));
  // Only this entry holds the buffer (nobody can take a new hold without the lock): reuse it.
  if (!e->buffer) return true;
  if (!recycled) {
    recycled = std::move(e->buffer);
  } else {
    dropped.push_back(std::move(e->buffer));
  }
  return true;
}

void ChunkCache::sweep_held(std::shared_ptr<ChunkBuffer>& recycled,
                            std::vector<std::shared_ptr<ChunkBuffer>>& dropped) {
  for (size_t i = 0; i < held_.size();) {
    if (held_[i].buffer.use_count() > 1) {
      ++i;
      continue;
    }
    count(-static_cast<int64_t>(held_[i].bytes));
    held_bytes_ -= held_[i].bytes;
    if (!recycled) {
      recycled = std::move(held_[i].buffer);
    } else {
      dropped.push_back(std::move(held_[i].buffer));
    }
    held_[i] = std::move(held_.back());
    held_.pop_back();
  }
}

bool ChunkCache::make_room(uint64_t size, bool take_claims, bool own_for_shared,
                           std::shared_ptr<ChunkBuffer>& recycled,
                           std::vector<std::shared_ptr<ChunkBuffer>>& dropped) {
  sweep_held(recycled, dropped);
  while (!fits(size)) {
    if (!own_for_shared && only_shared_lacks(size)) return false;
    if (!drop_last(lru_, recycled, dropped) &&
        !(take_claims && drop_last(claims_, recycled, dropped))) {
      return false;
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
  count(static_cast<int64_t>(size));
  in_flight_ += size;
  if (state == State::kClaimed) {
    claims_.push_front(key);
    e->place = claims_.begin();
  }
  entries_.emplace(key, e);
  return e;
}

Chunk ChunkCache::run_fill(std::unique_lock<std::mutex>& lock, ChunkKey key, const EntryPtr& e,
                           size_t size, const Fill& fill,
                           std::vector<std::shared_ptr<ChunkBuffer>> dropped) {
  ++filling_;
  std::shared_ptr<ChunkBuffer> buffer = std::move(e->buffer);
  lock.unlock();
  dropped.clear();  // evicted to make the room: freed unlocked
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
  } else if (error) {
    entries_.erase(key);
    count(-static_cast<int64_t>(e->bytes));
  } else {
    // Larger than the whole budget: not kept, but counted while its readers hold it.
    entries_.erase(key);
    held_.push_back({buffer, e->bytes});
    held_bytes_ += e->bytes;
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
  ++e->waiters;
  fill_ended_.wait(lock, [&] { return e->state == State::kReady || e->state == State::kFailed; });
  --e->waiters;
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
  // Held chunks their readers have let go of are no longer in memory but only freed (and
  // uncounted) by the next fill or shed: they are left out here already.
  uint64_t let_go = 0;
  for (const Held& h : held_) {
    if (h.buffer.use_count() == 1) let_go += h.bytes;
  }
  return bytes_ - let_go;
}

uint64_t ChunkCache::in_flight_bytes() const {
  std::lock_guard lock(mutex_);
  return in_flight_;
}

}  // namespace torshpkg::fs
