#include "chunk_cache.h"

namespace torshpkg::fs {

Chunk ChunkCache::get(uint32_t resource, uint64_t chunk) {
  std::lock_guard lock(mutex_);
  const auto it = index_.find({resource, chunk});
  if (it == index_.end()) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

bool ChunkCache::contains(uint32_t resource, uint64_t chunk) const {
  std::lock_guard lock(mutex_);
  return index_.count({resource, chunk}) > 0;
}

void ChunkCache::put(uint32_t resource, uint64_t chunk, Chunk data) {
  std::lock_guard lock(mutex_);
  const Key key{resource, chunk};
  if (index_.count(key) || data->size() > capacity_) return;
  bytes_ += data->size();
  lru_.emplace_front(key, std::move(data));
  index_.emplace(key, lru_.begin());
  while (bytes_ > capacity_ && !lru_.empty()) {
    bytes_ -= lru_.back().second->size();
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
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

std::shared_ptr<BufferPool> BufferPool::create(uint64_t max_free_bytes) {
  return std::shared_ptr<BufferPool>(new BufferPool(max_free_bytes));
}

std::unique_ptr<std::vector<uint8_t>> BufferPool::take() {
  std::lock_guard lock(mutex_);
  if (free_.empty()) return std::make_unique<std::vector<uint8_t>>();
  auto buffer = std::move(free_.back());
  free_.pop_back();
  free_bytes_ -= buffer->capacity();
  return buffer;
}

Chunk BufferPool::adopt(std::unique_ptr<std::vector<uint8_t>> buffer) {
  std::weak_ptr<BufferPool> pool = weak_from_this();
  return Chunk(buffer.release(), [pool](const std::vector<uint8_t>* p) {
    std::unique_ptr<std::vector<uint8_t>> owned(const_cast<std::vector<uint8_t>*>(p));
    if (const auto live = pool.lock()) live->give_back(std::move(owned));
  });
}

void BufferPool::give_back(std::unique_ptr<std::vector<uint8_t>> buffer) {
  std::lock_guard lock(mutex_);
  if (free_bytes_ + buffer->capacity() > max_free_bytes_) return;  // freed on return
  free_bytes_ += buffer->capacity();
  free_.push_back(std::move(buffer));
}

uint64_t BufferPool::free_bytes() const {
  std::lock_guard lock(mutex_);
  return free_bytes_;
}

}  // namespace torshpkg::fs
