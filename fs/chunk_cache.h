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

using Chunk = std::shared_ptr<const std::vector<uint8_t>>;

// Recycles the buffers of chunks nobody holds any more (evicted and not being replied from), so
// that decoding a chunk fills memory that is already mapped instead of faulting in and zeroing
// fresh pages for every chunk. Keeps at most `max_free_bytes` of idle buffers. Thread-safe;
// chunks may outlive the pool (their buffers are then freed).
class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  static std::shared_ptr<BufferPool> create(uint64_t max_free_bytes);

  // A buffer to fill: recycled (old contents, any size) or new and empty.
  std::unique_ptr<std::vector<uint8_t>> take();
  // Turns a filled buffer into a chunk whose buffer comes back here when its last holder lets go.
  Chunk adopt(std::unique_ptr<std::vector<uint8_t>> buffer);

  uint64_t free_bytes() const;

 private:
  explicit BufferPool(uint64_t max_free_bytes) : max_free_bytes_(max_free_bytes) {}
  void give_back(std::unique_ptr<std::vector<uint8_t>> buffer);

  mutable std::mutex mutex_;
  uint64_t max_free_bytes_;
  uint64_t free_bytes_ = 0;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> free_;
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
  uint64_t capacity_;
  uint64_t bytes_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  Lru lru_;  // front: most recent
  std::unordered_map<Key, Lru::iterator, KeyHash> index_;
};

}  // namespace torshpkg::fs
