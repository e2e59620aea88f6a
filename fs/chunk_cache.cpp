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

}  // namespace torshpkg::fs
