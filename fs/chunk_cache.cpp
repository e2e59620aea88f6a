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

std::unique_ptr<ChunkBuffer> BufferPool::take() {
  std::lock_guard lock(mutex_);
  if (free_.empty()) return std::make_unique<ChunkBuffer>();
  auto buffer = std::move(free_.back());
  free_.pop_back();
  free_bytes_ -= buffer->capacity();
  return buffer;
}

Chunk BufferPool::adopt(std::unique_ptr<ChunkBuffer> buffer) {
  std::weak_ptr<BufferPool> pool = weak_from_this();
  return Chunk(buffer.release(), [pool](const ChunkBuffer* p) {
    std::unique_ptr<ChunkBuffer> owned(const_cast<ChunkBuffer*>(p));
    if (const auto live = pool.lock()) live->give_back(std::move(owned));
  });
}

void BufferPool::give_back(std::unique_ptr<ChunkBuffer> buffer) {
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
