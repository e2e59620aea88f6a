// The chunk cache of a mount: verified, decoded chunks and the chunks being decoded, within one
// byte budget, shared by all readers of the mount.
//
// An entry is the in-flight marker as well (as squashfuse's cache_mt does it): a chunk is
// claimed (its bytes counted from then on), filled by one thread, then ready. Whoever asks for
// a chunk being filled waits for that fill instead of decoding it again; a failed fill fails
// every waiter and leaves no entry, so a later read tries again. A claim nobody has started
// (readahead still queued) is taken over by the first reader that needs the chunk.
//
// Thread-safe: one mutex guards the entries and the recency lists; chunks are
// immutable and handed out as shared pointers, so an evicted chunk stays valid for whoever still
// holds it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace torshpkg::fs {

// The memory of one decoded chunk, a mapping of its own. Unlike a std::vector its bytes are not
// zeroed when it grows (the decoder overwrites them all), new memory is mapped in one call
// (MAP_POPULATE) rather than page fault by page fault as the decoder first writes it, and freed
// memory goes back to the system.
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

class ChunkCache;

// Bytes of chunks that the caches of many mounts share (torshpkgd's memory_budget), besides each
// cache's own capacity. When it is taken, a cache that needs room drops its own least recently
// used chunks first, then those of the caches used least recently. Thread-safe.
class SharedBudget {
 public:
  explicit SharedBudget(uint64_t capacity) : capacity_(capacity) {}
  uint64_t capacity() const { return capacity_.load(); }
  void set_capacity(uint64_t capacity) { capacity_.store(capacity); }
  uint64_t used() const { return used_.load(); }

 private:
  friend class ChunkCache;
  bool over(uint64_t more) const { return used_.load() + more > capacity_.load(); }
  // Drops ready chunks of the member caches other than `except`, least recently used cache
  // first, until `more` bytes fit or there is nothing left to drop.
  void reclaim(uint64_t more, const ChunkCache* except);

  std::atomic<uint64_t> capacity_;
  std::atomic<uint64_t> used_{0};
  std::mutex members_mutex_;  // taken before any member's own lock, never after
  std::vector<ChunkCache*> members_;
};

struct ChunkKey {
  uint32_t resource = 0;
  uint64_t chunk = 0;
  bool operator==(const ChunkKey&) const = default;
};

class ChunkCache {
 public:
  // Decodes a chunk into a buffer resized to the chunk's plain size (its old contents, if any,
  // are to be overwritten). Throws to fail the fill.
  using Fill = std::function<void(ChunkBuffer&)>;

  // A cache of `capacity_bytes`, drawing on `shared` too when given.
  explicit ChunkCache(uint64_t capacity_bytes, std::shared_ptr<SharedBudget> shared = nullptr);
  ~ChunkCache();
  ChunkCache(const ChunkCache&) = delete;
  ChunkCache& operator=(const ChunkCache&) = delete;

  // The chunk of `size` bytes at `key`: cached (a hit), being filled (waits for it: a hit too),
  // or filled here by `fill` (a miss). The fill's error is thrown here and to every waiter.
  // When the budget is taken by other fills, waits for one of them to end before starting; a
  // chunk larger than the whole budget is filled while no other is, and not kept. When it is
  // taken by evicted chunks that readers still hold (replies being sent), waits up to 100 ms
  // for them to let go, unless `caller_holds_chunks` (a read spanning chunks holds the ones
  // before: it may be the reader waited for).
  Chunk get_or_fill(ChunkKey key, size_t size, const Fill& fill, bool caller_holds_chunks = false);
  // The chunk when it is cached or being filled (then waits for it); nullptr when it is neither,
  // or its fill fails. Counts no hit or miss.
  Chunk find(ChunkKey key);
  // Claims `key` for a later fill_claimed (readahead), counting `size` bytes; false when the
  // chunk is cached, claimed or being filled already, or when the budget has no room left
  // without dropping what is being filled or queued.
  bool claim(ChunkKey key, size_t size);
  // Fills a claimed chunk, unless a reader took the claim over or it was dropped (then does
  // nothing). Errors are dropped: whoever reads the chunk meets them again.
  void fill_claimed(ChunkKey key, const Fill& fill);
  // Drops a claim nobody fills (its readahead could not be queued); false when `key` is not
  // claimed.
  bool unclaim(ChunkKey key);
  // Drops every ready chunk and queued claim (an idle mount gives its memory back; readers
  // still holding a chunk keep it until they let go). Returns the bytes dropped.
  uint64_t trim();

  // Drops least recently used ready chunks, then queued claims, until `bytes` are dropped or
  // none is left (another cache of the same shared budget needs the room). Returns the bytes
  // dropped.
  uint64_t shed(uint64_t bytes);

  // Whether the chunk is cached (ready). Counts no hit or miss and changes no recency.
  bool contains(ChunkKey key) const;

  uint64_t hits() const;
  uint64_t misses() const;
  // Bytes counted against the budget: chunks ready, claimed and being filled, and evicted chunks
  // readers still hold.
  uint64_t bytes() const;
  uint64_t in_flight_bytes() const;  // of those: claimed and being filled
  uint64_t capacity() const { return capacity_; }

 private:
  friend class SharedBudget;  // reclaim() orders caches by last_use_
  struct KeyHash {
    size_t operator()(const ChunkKey& k) const {
      return std::hash<uint64_t>()(k.chunk * 1000003u ^ k.resource);
    }
  };
  enum class State { kClaimed, kFilling, kReady, kFailed };
  struct Entry {
    State state = State::kClaimed;
    uint64_t bytes = 0;  // counted against the budget
    std::shared_ptr<ChunkBuffer> buffer;
    std::exception_ptr error;  // kFailed
    int waiters = 0;           // threads in wait_for: the buffer stays with the entry for them
    std::list<ChunkKey>::iterator place;  // in lru_ (ready) or claims_ (claimed)
  };
  using EntryPtr = std::shared_ptr<Entry>;

  // Whether `size` more bytes fit this cache and its shared budget.
  bool fits(uint64_t size) const {
    return bytes_ + size <= capacity_ && (!shared_ || !shared_->over(size));
  }
  // Whether only the shared budget lacks the room (the other caches may give it).
  bool only_shared_lacks(uint64_t size) const {
    return bytes_ + size <= capacity_ && shared_ && shared_->over(size);
  }
  void count(int64_t bytes);  // bytes_ and the shared budget's use
  // Removes the entry at the back of `from` (lru_ or claims_); false when it is empty. Its
  // buffer goes to `recycled` when that is empty and nobody else holds it, else to `dropped`.
  bool drop_last(std::list<ChunkKey>& from, std::shared_ptr<ChunkBuffer>& recycled,
                 std::vector<std::shared_ptr<ChunkBuffer>>& dropped);
  // Makes room for `size` more bytes by dropping the least recently used ready chunks, then
  // (when `take_claims`) the oldest queued claims. The first dropped buffer nobody else holds
  // goes to `recycled` for the new entry; the others to `dropped`, to be freed once unlocked.
  // When only the shared budget lacks room, drops nothing unless `own_for_shared` (the other
  // caches are asked first). False when there is still no room.
  bool make_room(uint64_t size, bool take_claims, bool own_for_shared,
                 std::shared_ptr<ChunkBuffer>& recycled,
                 std::vector<std::shared_ptr<ChunkBuffer>>& dropped);
  EntryPtr add_entry(ChunkKey key, State state, uint64_t size,
                     std::shared_ptr<ChunkBuffer> recycled);
  // Runs `fill` for an entry this thread has just set to kFilling (without unlocking since) and
  // publishes the result; unlocks while filling, and frees `dropped` then. Rethrows the fill's
  // error.
  Chunk run_fill(std::unique_lock<std::mutex>& lock, ChunkKey key, const EntryPtr& e, size_t size,
                 const Fill& fill, std::vector<std::shared_ptr<ChunkBuffer>> dropped = {});
  // Frees the evicted chunks whose readers have all let go, and stops counting them; the first
  // goes to `recycled` when that is empty.
  void sweep_held(std::shared_ptr<ChunkBuffer>& recycled,
                  std::vector<std::shared_ptr<ChunkBuffer>>& dropped);
  // Waits until an entry's fill ends; its chunk, or its error rethrown.
  Chunk wait_for(std::unique_lock<std::mutex>& lock, const EntryPtr& e);

  mutable std::mutex mutex_;
  std::condition_variable fill_ended_;
  const uint64_t capacity_;
  const std::shared_ptr<SharedBudget> shared_;
  std::atomic<int64_t> last_use_{0};  // steady clock ticks of the last lookup
  uint64_t bytes_ = 0;                // entries of every state
  uint64_t in_flight_ = 0;            // of those: claimed and being filled
  uint64_t filling_ = 0;              // fills running
  uint64_t fills_ended_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  std::unordered_map<ChunkKey, EntryPtr, KeyHash> entries_;
  // Ready entries (front: most recent) and claims nobody fills yet (front: newest). Evicting a
  // ready chunk hands its buffer to the fill that needed the room, so that decoding writes memory
  // that is already mapped instead of mapping and zeroing fresh pages.
  std::list<ChunkKey> lru_;
  std::list<ChunkKey> claims_;
  // Chunks evicted (or too large to keep) while readers still held them: counted until the
  // last reader lets go, so the budget covers every chunk in memory.
  struct Held {
    std::shared_ptr<ChunkBuffer> buffer;
    uint64_t bytes;
  };
  std::vector<Held> held_;
  uint64_t held_bytes_ = 0;
};

}  // namespace torshpkg::fs
