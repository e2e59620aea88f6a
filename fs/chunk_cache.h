// A bounded LRU cache of verified, decoded chunks, shared by all readers of a mount.
// Thread-safe: one mutex guards the map and the recency list; chunks are immutable and handed
// out as shared pointers, so an evicted chunk stays valid for whoever still holds it.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace torshpkg::fs {

// The memory of one decoded chunk. Unlike a std::vector its bytes are not zeroed when it grows
// (the decoder overwrites them all), and new memory is mapped in one call (MADV_POPULATE_WRITE)
// rather than page fault by page fault as the decoder first writes it.
class ChunkBuffer {
 public:
  ChunkBuffer() = default;
  ChunkBuffer(const ChunkBuffer&) = delete;
  ChunkBuffer& operator=(const ChunkBuffer&) = delete;
  ~ChunkBuffer();

  // Makes the size `size`, keeping the memory when it is large enough; contents unspecified.
  // Throws std::bad_alloc when the memory cannot be mapped.
  void resize(size_t size);
  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

using Chunk = std::shared_ptr<const ChunkBuffer>;

// Recycles the buffers of chunks nobody holds any more (evicted and not being replied from), so
// that decoding a chunk fills memory that is already mapped instead of mapping and zeroing
// fresh pages for every chunk. Keeps at most `max_free_bytes` of idle buffers. Thread-safe;
// chunks may outlive the pool (their buffers are then freed).
class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  static std::shared_ptr<BufferPool> create(uint64_t max_free_bytes);

  // A buffer to fill: recycled (old contents, any size) or new and empty.
  std::unique_ptr<ChunkBuffer> take();
  // Turns a filled buffer into a chunk whose buffer comes back here when its last holder lets go.
  Chunk adopt(std::unique_ptr<ChunkBuffer> buffer);

  uint64_t free_bytes() const;

 private:
  explicit BufferPool(uint64_t max_free_bytes) : max_free_bytes_(max_free_bytes) {}
  void give_back(std::unique_ptr<ChunkBuffer> buffer);

  mutable std::mutex mutex_;
  uint64_t max_free_bytes_;
  uint64_t free_bytes_ = 0;
  std::vector<std::unique_ptr<ChunkBuffer>> free_;
};

class ChunkCache {
 public:
  explicit ChunkCache(uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

  Chunk get(uint32_t resource, uint64_t chunk);
  // Like get, without counting a hit or miss or changing recency.
  bool contains(uint32_t resource, uint64_t chunk) const;
  void put(uint32_t resource, uint64_t chunk, Chunk data);

  uint64_t hits() const;
  uint64_t misses() const;
  uint64_t bytes() const;
  uint64_t capacity() const { return capacity_; }

 private:
  struct Key {
    uint32_t resource;
    uint64_t chunk;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<uint64_t>()(k.chunk * 1000003u ^ k.resource);
    }
  };
  using Lru = std::list<std::pair<Key, Chunk>>;

  mutable std::mutex mutex_;
  const uint64_t capacity_;
  uint64_t bytes_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  Lru lru_;  // front: most recent
  std::unordered_map<Key, Lru::iterator, KeyHash> index_;
};

}  // namespace torshpkg::fs
