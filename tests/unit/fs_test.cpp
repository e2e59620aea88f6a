// The filesystem core without a mount: tree, chunk cache and cached reads.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <new>
#include <random>
#include <thread>
#include <tuple>

#include "chunk_cache.h"
#include "fuse_ops.h"
#include "mount_access.h"
#include "mount_point.h"
#include "package_fs.h"
#include "prefetcher.h"
#include "test_util.h"
#include "torshpkg/byte_source.h"
#include "torshpkg/error.h"
#include "torshpkg/package_writer.h"
#include "tree.h"
#include "zip_reader.h"

namespace torshpkg::fs {
namespace {

using torshpkg::testing::HintRecordingSource;
using torshpkg::testing::TempDir;
using torshpkg::testing::text_bytes;

std::unique_ptr<Package> sample(const TempDir& dir) {
  PackageWriter w(torshpkg::testing::header());
  w.add_bytes("a/b/c.bin", text_bytes(100'000, 1));
  w.add_bytes("a/d.txt", text_bytes(10, 2));
  w.add_bytes("z.json", text_bytes(5, 3));
  w.add_dependency({"base", "^1", false, {}, 0, ""});
  WriteOptions o;
  o.chunk_size = 4096;
  w.write(dir / "p.torshpkg", o);
  return Package::open(dir / "p.torshpkg");
}

TEST(Tree, ChildrenInNameOrderWherePathOrderDiffers) {
  // In path order the file "x.txt" and the folder "x-1" come before the folder "x" ('.' and '-'
  // sort before '/'); in the folder they are listed by name, and each is found.
  TempDir dir;
  PackageWriter w(torshpkg::testing::header());
  for (const char* path : {"x.txt", "x/in", "x-1/in", "x/deeper/in", "y"}) {
    w.add_bytes(path, text_bytes(10, 1));
  }
  w.write(dir / "p.torshpkg", {});
  const auto pkg = Package::open(dir / "p.torshpkg");
  const Tree tree(*pkg);
  const Node* resources = tree.find("resources");
  ASSERT_NE(resources, nullptr);
  std::vector<std::string> names;
  for (const uint64_t ino : resources->children) names.push_back(tree.get(ino)->name);
  EXPECT_EQ(names, (std::vector<std::string>{"x", "x-1", "x.txt", "y"}));
  EXPECT_EQ(resources->folders, 2u);
  EXPECT_EQ(tree.find("resources/x")->folders, 1u);
  for (const char* path : {"x.txt", "x/in", "x-1/in", "x/deeper/in", "y"}) {
    const Node* node = tree.find(std::string("resources/") + path);
    ASSERT_NE(node, nullptr) << path;
    EXPECT_EQ(node->file->path, std::string("resources/") + path);
  }
  // The root, manifest.json, resources, its folders x, x-1 and x/deeper, and the five files.
  EXPECT_EQ(tree.size(), 1u + 1 + 1 + 3 + 5);
}

FsOptions options(uint64_t readahead_bytes, uid_t uid = 0, gid_t gid = 0) {
  FsOptions o;
  o.cache_bytes = 1 << 20;
  o.uid = uid;
  o.gid = gid;
  o.readahead_bytes = readahead_bytes;
  o.sequential_after_bytes = 2 * 4096;
  return o;
}

TEST(Tree, FoldersFromPathsAndStableInodes) {
  TempDir dir;
  const auto pkg = sample(dir);
  const Tree tree(*pkg);
  const Node* resources = tree.lookup(Tree::kRootIno, "resources");
  ASSERT_NE(resources, nullptr);
  EXPECT_TRUE(resources->is_dir);
  const Node* a = tree.lookup(resources->ino, "a");
  const Node* c = tree.lookup(tree.lookup(a->ino, "b")->ino, "c.bin");
  ASSERT_NE(c, nullptr);
  EXPECT_FALSE(c->is_dir);
  EXPECT_EQ(c->file->path, "resources/a/b/c.bin");
  EXPECT_EQ(tree.lookup(a->ino, "missing"), nullptr);
  EXPECT_EQ(tree.lookup(c->ino, "x"), nullptr);  // a file has no children
  EXPECT_EQ(tree.get(0), nullptr);
  EXPECT_EQ(tree.get(tree.size() + 1), nullptr);
  const Tree again(*Package::open(dir / "p.torshpkg"));
  EXPECT_EQ(again.find("resources/a/b/c.bin")->ino, c->ino);
  EXPECT_EQ(tree.find("resources/a/b/c.bin"), c);
  EXPECT_EQ(tree.find("resources/nope"), nullptr);
  EXPECT_EQ(tree.find("resources/a/b/c.bin/x"), nullptr);
}

// A fill that sets every byte to `value` and counts its calls.
ChunkCache::Fill filling(uint8_t value, std::atomic<int>* calls = nullptr) {
  return [value, calls](ChunkBuffer& b) {
    if (calls != nullptr) ++*calls;
    std::memset(b.data(), value, b.size());
  };
}

TEST(ChunkBuffer, GrowsWithoutZeroingAndKeepsItsMemoryWhenShrunk) {
  ChunkBuffer b;
  EXPECT_EQ(b.size(), 0u);
  b.resize(3u << 20);  // large: mapped up front
  ASSERT_NE(b.data(), nullptr);
  for (size_t i = 0; i < b.size(); ++i) b.data()[i] = static_cast<uint8_t>(i * 7);
  const uint8_t* memory = b.data();
  b.resize(100);
  EXPECT_EQ(b.data(), memory);
  EXPECT_EQ(b.size(), 100u);
  EXPECT_EQ(b.capacity(), 3u << 20);
  b.resize(3u << 20);  // within its capacity: same memory, contents kept
  EXPECT_EQ(b.data(), memory);
  for (size_t i = 0; i < b.size(); i += 4099) EXPECT_EQ(b.data()[i], static_cast<uint8_t>(i * 7));
  b.resize(5000);
  b.resize((3u << 20) + 1);  // beyond it: new memory
  EXPECT_EQ(b.size(), (3u << 20) + 1);
  std::memset(b.data(), 1, b.size());
  // Stored chunks are read into it past the page cache: aligned, with room for a whole page.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % kUncachedAlignment, 0u);
  EXPECT_EQ(b.capacity(), (3u << 20) + kUncachedAlignment);
  ChunkBuffer small;
  small.resize(10);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(small.data()) % kUncachedAlignment, 0u);
  EXPECT_EQ(small.capacity(), kUncachedAlignment);
}

// Waits (10 s at most) until `done` holds, checking every millisecond.
bool eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TEST(FuseOps, EveryExceptionBecomesAnErrno) {
  const struct {
    std::exception_ptr error;
    int errno_value;
  } cases[] = {
      {std::make_exception_ptr(Error(ErrorKind::kCorrupt, "chunk 3 hash mismatch")), EIO},
      {std::make_exception_ptr(Error(ErrorKind::kIo, "read")), EIO},
      {std::make_exception_ptr(Error(ErrorKind::kWrongKey, "locked")), EACCES},
      {std::make_exception_ptr(Error(ErrorKind::kNotFound, "gone")), ENOENT},
      {std::make_exception_ptr(std::bad_alloc()), ENOMEM},
      {std::make_exception_ptr(std::runtime_error("other")), EIO},
      {std::make_exception_ptr(42), EIO},
  };
  for (const auto& c : cases) EXPECT_EQ(fs::errno_for(c.error), c.errno_value);
}

TEST(ChunkCache, EvictsLeastRecentlyUsedWithinItsBudget) {
  ChunkCache cache(3000);
  cache.get_or_fill({0, 0}, 1000, filling(1));
  cache.get_or_fill({0, 1}, 1000, filling(1));
  cache.get_or_fill({0, 2}, 1000, filling(1));
  // A hit, not filled again: 0 is now the most recent.
  EXPECT_EQ(cache.get_or_fill({0, 0}, 1000, filling(9))->data()[0], 1);
  cache.get_or_fill({0, 3}, 1000, filling(1));  // evicts 1
  EXPECT_FALSE(cache.contains({0, 1}));
  EXPECT_TRUE(cache.contains({0, 0}));
  EXPECT_LE(cache.bytes(), 3000u);
  Chunk big = cache.get_or_fill({1, 0}, 5000, filling(2));        // larger than the budget:
  EXPECT_EQ(big->size(), 5000u);                                  // decoded, not kept,
  EXPECT_FALSE(cache.contains({1, 0}));
  EXPECT_TRUE(cache.contains({0, 0}));  // and nothing evicted for it,
  EXPECT_EQ(cache.bytes(), 8000u);      // but counted while a reader holds it
  EXPECT_GT(cache.hits(), 0u);
  EXPECT_GT(cache.misses(), 0u);
  EXPECT_EQ(cache.trim(), 3000u);  // the reader still holds it
  EXPECT_EQ(cache.bytes(), 5000u);
  big.reset();
  cache.get_or_fill({0, 0}, 1000, filling(3));
  EXPECT_EQ(cache.bytes(), 1000u);  // let go of: no longer counted
  EXPECT_EQ(cache.trim(), 1000u);   // an idle mount gives it all back
  EXPECT_EQ(cache.bytes(), 0u);
  EXPECT_FALSE(cache.contains({0, 0}));
}

TEST(ChunkCache, AnEvictedBufferNobodyHoldsIsReusedByTheNextFill) {
  ChunkCache cache(2 * 4096);
  const uint8_t* first = cache.get_or_fill({0, 0}, 4096, filling(1))->data();
  Chunk held = cache.get_or_fill({0, 1}, 4096, filling(2));
  // Chunk 0 is evicted for chunk 2, and nobody holds it: chunk 2 is decoded into its memory.
  Chunk third = cache.get_or_fill({0, 2}, 4096, filling(3));
  EXPECT_EQ(third->data(), first);
  EXPECT_EQ(third->data()[0], 3);
  // Chunk 1 is evicted for chunk 3, but a reader still holds it: its bytes stay as they are.
  third.reset();
  Chunk fourth = cache.get_or_fill({0, 3}, 4096, filling(4));
  EXPECT_NE(fourth->data(), held->data());
  EXPECT_EQ(held->data()[4095], 2);
  EXPECT_FALSE(cache.contains({0, 1}));
  EXPECT_LE(cache.bytes(), 2u * 4096);
}

// Fills that wait until released (or 10 s), counting calls and how many wait at once.
struct HeldFills {
  std::mutex mutex;
  std::condition_variable changed;
  int waiting = 0;
  int calls = 0;
  bool released = false;
  bool fail = false;

  ChunkCache::Fill fn(uint8_t value) {
    return [this, value](ChunkBuffer& b) {
      std::unique_lock lock(mutex);
      ++calls;
      ++waiting;
      changed.notify_all();
      changed.wait_for(lock, std::chrono::seconds(10), [&] { return released; });
      --waiting;
      if (fail) throw Error(ErrorKind::kCorrupt, "chunk 7 hash mismatch");
      std::memset(b.data(), value, b.size());
    };
  }
  bool wait_until_waiting(int n) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, std::chrono::seconds(10), [&] { return waiting >= n; });
  }
  void release() {
    std::lock_guard lock(mutex);
    released = true;
    changed.notify_all();
  }
  int count_calls() {
    std::lock_guard lock(mutex);
    return calls;
  }
};

TEST(ChunkCache, ConcurrentReadersOfOneChunkShareOneFill) {
  ChunkCache cache(1 << 20);
  HeldFills held;
  std::vector<Chunk> got(8);
  std::vector<std::thread> readers;
  for (int t = 0; t < 8; ++t) {
    readers.emplace_back([&, t] { got[t] = cache.get_or_fill({0, 7}, 4096, held.fn(9)); });
  }
  ASSERT_TRUE(held.wait_until_waiting(1));
  EXPECT_EQ(cache.in_flight_bytes(), 4096u);  // counted while it is being filled
  EXPECT_EQ(cache.bytes(), 4096u);
  held.release();
  for (auto& t : readers) t.join();
  EXPECT_EQ(held.count_calls(), 1);  // decoded once; the others waited for it
  for (const Chunk& c : got) {
    ASSERT_EQ(c, got[0]);
    EXPECT_EQ(c->data()[100], 9);
  }
  EXPECT_EQ(cache.in_flight_bytes(), 0u);
  EXPECT_EQ(cache.hits() + cache.misses(), 8u);
  EXPECT_EQ(cache.misses(), 1u);
}

TEST(ChunkCache, AFailedFillFailsEveryWaiterAndALaterReadTriesAgain) {
  ChunkCache cache(1 << 20);
  HeldFills held;
  held.fail = true;
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 6; ++t) {
    readers.emplace_back([&] {
      try {
        cache.get_or_fill({0, 7}, 4096, held.fn(9));
      } catch (const Error& e) {
        if (std::string(e.what()).find("chunk 7 hash mismatch") != std::string::npos) ++failures;
      }
    });
  }
  ASSERT_TRUE(held.wait_until_waiting(1));
  // The other five wait for that fill (each counted a hit first).
  ASSERT_TRUE(eventually([&] { return cache.hits() == 5; }));
  // A reader of part of the chunk that finds it being decoded waits too, and gets nothing.
  std::thread finder([&] { EXPECT_EQ(cache.find({0, 7}), nullptr); });
  held.release();
  for (auto& t : readers) t.join();
  finder.join();
  EXPECT_EQ(failures.load(), 6);
  EXPECT_EQ(held.count_calls(), 1);
  EXPECT_FALSE(cache.contains({0, 7}));  // no entry left behind,
  EXPECT_EQ(cache.bytes(), 0u);          // nor bytes counted
  std::atomic<int> calls{0};
  const Chunk again = cache.get_or_fill({0, 7}, 4096, filling(5, &calls));  // tried again
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(again->data()[0], 5);
}

TEST(ChunkCache, FillsThatTakeTheWholeBudgetMakeTheNextWait) {
  ChunkCache cache(3 * 4096);
  HeldFills held;
  std::vector<std::thread> readers;
  for (uint64_t c = 0; c < 3; ++c) {
    readers.emplace_back([&, c] { cache.get_or_fill({0, c}, 4096, held.fn(1)); });
  }
  ASSERT_TRUE(held.wait_until_waiting(3));
  std::atomic<bool> done{false};
  std::atomic<int> calls{0};
  readers.emplace_back([&] {
    cache.get_or_fill({0, 3}, 4096, filling(2, &calls));
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(done.load());  // no room: it waits instead of decoding past the budget
  EXPECT_EQ(calls.load(), 0);
  EXPECT_EQ(cache.bytes(), 3u * 4096);
  // Readahead is refused rather than waiting.
  EXPECT_FALSE(cache.claim({0, 9}, 4096));
  held.release();
  for (auto& t : readers) t.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_LE(cache.bytes(), 3u * 4096);
}

TEST(ChunkCache, ChunksLargerThanTheBudgetAreFilledOneAtATime) {
  ChunkCache cache(4096);  // a package of 64 MiB chunks on a mount with a small cache
  HeldFills held;
  std::vector<std::thread> readers;
  for (uint64_t c = 0; c < 4; ++c) {
    readers.emplace_back([&, c] { cache.get_or_fill({0, c}, 3 * 4096, held.fn(1)); });
  }
  ASSERT_TRUE(held.wait_until_waiting(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(held.count_calls(), 1);  // the others wait: never two such chunks in memory
  EXPECT_EQ(cache.in_flight_bytes(), 3u * 4096);
  held.release();
  for (auto& t : readers) t.join();
  EXPECT_EQ(held.count_calls(), 4);
  EXPECT_EQ(cache.bytes(), 0u);  // none kept
}

TEST(ChunkCache, EvictedChunksReadersHoldCountUntilTheyLetGo) {
  ChunkCache cache(4096);
  Chunk reply = cache.get_or_fill({0, 0}, 4096, filling(1));  // a reply being sent from it
  std::atomic<bool> done{false};
  std::atomic<int> calls{0};
  std::thread next([&] {
    cache.get_or_fill({0, 1}, 4096, filling(2, &calls));
    done = true;
  });
  // Chunk 0 is evicted for chunk 1, but still in memory: chunk 1 waits for the reply.
  ASSERT_TRUE(eventually([&] { return !cache.contains({0, 0}); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(done.load());
  EXPECT_EQ(calls.load(), 0);
  EXPECT_EQ(cache.bytes(), 4096u);
  reply.reset();
  next.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(cache.bytes(), 4096u);
  // A read spanning chunks holds the one before: it does not wait for itself.
  Chunk before = cache.get_or_fill({0, 1}, 4096, filling(2));
  EXPECT_EQ(cache.get_or_fill({0, 2}, 4096, filling(3), true)->data()[0], 3);
  EXPECT_EQ(cache.bytes(), 2u * 4096);  // both in memory, both counted
  before.reset();
  EXPECT_EQ(cache.bytes(), 4096u);
}

TEST(ChunkCache, AWaiterGetsItsChunkEvenWhenItIsEvictedBeforeTheWaiterWakes) {
  // Room for one chunk: every fill evicts the last, often before the threads that waited for
  // it have woken up. Each must still get its chunk, with its bytes.
  ChunkCache cache(4096);
  std::atomic<int> wrong{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 8; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 300; ++i) {
        const uint64_t c = rng() % 4;
        const Chunk got = cache.get_or_fill({0, c}, 4096, [c](ChunkBuffer& b) {
          std::this_thread::sleep_for(std::chrono::microseconds(50));
          std::memset(b.data(), static_cast<int>(c), b.size());
        });
        if (got == nullptr || got->data()[4095] != c) ++wrong;
      }
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_LE(cache.bytes(), 4096u);
}

TEST(ChunkCache, AReaderTakesOverAQueuedClaimAndClaimsGiveWayToReaders) {
  ChunkCache cache(2 * 4096);
  EXPECT_TRUE(cache.claim({0, 0}, 4096));
  EXPECT_FALSE(cache.claim({0, 0}, 4096));  // claimed already
  EXPECT_EQ(cache.in_flight_bytes(), 4096u);
  EXPECT_FALSE(cache.contains({0, 0}));
  EXPECT_EQ(cache.find({0, 0}), nullptr);  // nobody fills it yet: a block reader reads itself
  std::atomic<int> calls{0};
  // A reader needs it before the pool got to it: the reader fills it, the pool then does nothing.
  EXPECT_EQ(cache.get_or_fill({0, 0}, 4096, filling(3, &calls))->data()[0], 3);
  cache.fill_claimed({0, 0}, filling(4, &calls));
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(cache.find({0, 0})->data()[0], 3);
  // Readahead evicts what was read before (chunk 0), never what is being filled or queued.
  EXPECT_TRUE(cache.claim({0, 1}, 4096));
  EXPECT_TRUE(cache.claim({0, 2}, 4096));
  EXPECT_FALSE(cache.contains({0, 0}));
  EXPECT_FALSE(cache.claim({0, 3}, 4096));  // only claims left: no room
  // A reader gets room by dropping the oldest claim, whose later fill does nothing.
  cache.get_or_fill({0, 4}, 4096, filling(5, &calls));
  cache.fill_claimed({0, 1}, filling(6, &calls));
  EXPECT_EQ(calls.load(), 2);
  EXPECT_FALSE(cache.contains({0, 1}));
  cache.fill_claimed({0, 2}, filling(7, &calls));  // the newer claim is still there
  EXPECT_EQ(calls.load(), 3);
  EXPECT_EQ(cache.find({0, 2})->data()[0], 7);
  EXPECT_EQ(cache.in_flight_bytes(), 0u);
  EXPECT_EQ(cache.bytes(), 2u * 4096);
  // A claim whose readahead could not be queued is dropped; an idle mount drops its claims too.
  EXPECT_TRUE(cache.claim({0, 5}, 4096));
  EXPECT_TRUE(cache.unclaim({0, 5}));
  EXPECT_FALSE(cache.unclaim({0, 5}));
  EXPECT_FALSE(cache.unclaim({0, 2}));  // ready, not claimed
  EXPECT_TRUE(cache.claim({0, 6}, 4096));
  EXPECT_EQ(cache.trim(), 2u * 4096);
  EXPECT_EQ(cache.bytes(), 0u);
  EXPECT_EQ(cache.in_flight_bytes(), 0u);
  cache.fill_claimed({0, 6}, filling(8, &calls));
  EXPECT_EQ(calls.load(), 3);
}

// A decode function whose calls wait until released, counting how many wait at once.
struct HeldDecodes {
  std::mutex mutex;
  std::condition_variable changed;
  int waiting = 0;
  int most = 0;
  int done = 0;
  bool released = false;

  std::function<void(uint32_t, uint64_t)> fn() {
    return [this](uint32_t, uint64_t) {
      std::unique_lock lock(mutex);
      most = std::max(most, ++waiting);
      changed.notify_all();
      changed.wait_for(lock, std::chrono::seconds(10), [&] { return released; });
      --waiting;
      ++done;
    };
  }
  void release() {
    std::lock_guard lock(mutex);
    released = true;
    changed.notify_all();
  }
  int count(const int HeldDecodes::*field) {
    std::lock_guard lock(mutex);
    return this->*field;
  }
};

TEST(ChunkCache, CachesOfOneSharedBudgetGiveWayLeastRecentlyUsedFirst) {
  const auto shared = std::make_shared<SharedBudget>(4 * 4096);
  ChunkCache a(4 * 4096, shared), b(4 * 4096, shared), c(4 * 4096, shared);
  for (uint64_t i = 0; i < 2; ++i) a.get_or_fill({0, i}, 4096, filling(1));
  for (uint64_t i = 0; i < 2; ++i) b.get_or_fill({0, i}, 4096, filling(2));
  EXPECT_EQ(shared->used(), 4u * 4096);
  // c needs room: a, used least recently, gives it; then b.
  c.get_or_fill({0, 0}, 4096, filling(3));
  EXPECT_EQ(a.bytes(), 4096u);
  c.get_or_fill({0, 1}, 4096, filling(3));
  EXPECT_EQ(a.bytes(), 0u);
  EXPECT_EQ(b.bytes(), 2u * 4096);
  c.get_or_fill({0, 2}, 4096, filling(3));
  c.get_or_fill({0, 3}, 4096, filling(3));
  EXPECT_EQ(b.bytes(), 0u);
  EXPECT_EQ(c.bytes(), 4u * 4096);
  // Nobody else has anything to give: c evicts its own.
  c.get_or_fill({0, 4}, 4096, filling(3));
  EXPECT_FALSE(c.contains({0, 0}));
  EXPECT_EQ(shared->used(), 4u * 4096);
  // Readahead makes room the same way.
  EXPECT_TRUE(a.claim({0, 9}, 4096));
  EXPECT_EQ(c.bytes(), 3u * 4096);
  EXPECT_LE(shared->used(), 4u * 4096);
  // What a cache drops or holds when it goes is given back.
  EXPECT_EQ(c.trim(), 3u * 4096);
  {
    ChunkCache d(4 * 4096, shared);
    d.get_or_fill({0, 0}, 4096, filling(4));
    EXPECT_EQ(shared->used(), 2u * 4096);
  }
  EXPECT_EQ(shared->used(), 4096u);  // a's claim
}

TEST(Prefetcher, StartsThreadsForWorkUpToItsLimitAndEndsThemWhenIdle) {
  HeldDecodes held;
  Prefetcher p(4, held.fn(), std::chrono::milliseconds(20));
  EXPECT_EQ(p.threads(), 0u);  // nothing to do, no threads
  for (uint64_t c = 0; c < 10; ++c) p.request(0, c, 1, true);
  ASSERT_TRUE(eventually([&] { return held.count(&HeldDecodes::waiting) == 4; }));
  EXPECT_EQ(p.threads(), 4u);
  held.release();
  ASSERT_TRUE(eventually([&] { return held.count(&HeldDecodes::done) == 10; }));
  EXPECT_EQ(held.count(&HeldDecodes::most), 4);
  // Idle for longer than 20 ms, every thread ends; new work starts one again.
  ASSERT_TRUE(eventually([&] { return p.threads() == 0; }));
  p.request(0, 10, 1, false);
  ASSERT_TRUE(eventually([&] { return held.count(&HeldDecodes::done) == 11; }));
  EXPECT_EQ(p.threads(), 1u);
}

TEST(Prefetcher, IdleThreadsTakeNewWorkBeforeMoreStart) {
  HeldDecodes held;
  held.release();
  Prefetcher p(8, held.fn());  // the default idle time: they stay
  for (uint64_t c = 0; c < 3; ++c) {
    p.request(0, c, 1, false);
    ASSERT_TRUE(eventually([&] { return held.count(&HeldDecodes::done) == int(c) + 1; }));
  }
  // One at a time: the thread that finished the first chunk decoded the others.
  EXPECT_EQ(p.threads(), 1u);
}

TEST(Prefetcher, EndsWithWorkQueuedAndThreadsBusy) {
  HeldDecodes held;
  {
    Prefetcher p(2, held.fn());
    p.request(0, 0, 6, false);
    ASSERT_TRUE(eventually([&] { return held.count(&HeldDecodes::waiting) == 2; }));
    std::thread release([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      held.release();
    });
    release.detach();
  }  // the destructor drops the queued chunks and joins the two busy threads
  EXPECT_EQ(held.count(&HeldDecodes::done), 2);
}

TEST(Prefetcher, PoolsOfOneThreadLimitShareIt) {
  HeldDecodes held;
  const auto limit = std::make_shared<ThreadLimit>(3);
  Prefetcher p1(4, held.fn(), std::chrono::milliseconds(20), limit);
  Prefetcher p2(4, held.fn(), std::chrono::milliseconds(20), limit);
  p1.request(0, 0, 10, false);
  ASSERT_TRUE(eventually([&] { return held.count(&HeldDecodes::waiting) == 3; }));
  // All three are taken: p2 has no thread and can start none, so it refuses the work (its
  // caller drops the claims, and readers decode those chunks themselves).
  EXPECT_FALSE(p2.request(0, 0, 5, false));
  EXPECT_EQ(p1.threads(), 3u);
  EXPECT_EQ(p2.threads(), 0u);
  EXPECT_EQ(limit->used(), 3u);
  held.release();
  ASSERT_TRUE(eventually([&] { return held.count(&HeldDecodes::done) == 10; }));
  // p1's threads end when idle and give the limit back; p2's next request gets threads.
  ASSERT_TRUE(eventually([&] { return limit->used() == 0; }));
  EXPECT_TRUE(p2.request(0, 5, 1, false));
  ASSERT_TRUE(eventually([&] { return held.count(&HeldDecodes::done) == 11; }));
  EXPECT_LE(held.count(&HeldDecodes::most), 3);
}

TEST(PackageFs, ReadsThroughTheCacheAndReportsAttributes) {
  TempDir dir;
  PackageFs fs(sample(dir), options(0, 7, 8));
  const Tree& tree = fs.tree();
  const Node* c = tree.find("resources/a/b/c.bin");
  const auto expect = text_bytes(100'000, 1);
  std::vector<uint8_t> buf(10'000);
  EXPECT_EQ(fs.read(*c, 95'000, buf), 5'000u);
  EXPECT_TRUE(std::equal(buf.begin(), buf.begin() + 5000, expect.begin() + 95'000));
  EXPECT_EQ(fs.read(*c, 4000, buf), 10'000u);  // crosses chunk boundaries
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), expect.begin() + 4000));
  EXPECT_GT(fs.cache().hits() + fs.cache().misses(), 0u);
  const struct stat st = fs.attributes(*c);
  EXPECT_EQ(st.st_size, 100'000);
  EXPECT_EQ(st.st_mode, S_IFREG | 0444);
  EXPECT_EQ(st.st_uid, 7u);
  EXPECT_EQ(fs.attributes(*tree.get(Tree::kRootIno)).st_mode, S_IFDIR | 0555);
  EXPECT_EQ(fs.xattr(*c, "user.torshpkg.compression"), "zstd:3");
  EXPECT_EQ(fs.xattr(*c, "user.torshpkg.signer"), std::nullopt);
  EXPECT_EQ(fs.xattr(*c, "user.other"), std::nullopt);
  EXPECT_EQ(fs.xattr_names(*c).size(), 4u);
}

TEST(PackageFs, TheModeGivesReadBitsAndFoldersAndExecutablesTheirXBits) {
  TempDir dir;
  PackageWriter w(torshpkg::testing::header());
  w.add_bytes("data.bin", text_bytes(10, 1));
  ResourceInput script;
  script.path = "bin/run.sh";
  script.source = memory_source(text_bytes(10, 2), "run.sh");
  script.size = 10;
  script.executable = true;
  w.add_resource(std::move(script));
  w.write(dir / "p.torshpkg", WriteOptions{});
  for (const auto& [mode, file, exec, folder] :
       std::vector<std::tuple<mode_t, mode_t, mode_t, mode_t>>{{0444, 0444, 0555, 0555},
                                                               {0440, 0440, 0550, 0550},
                                                               {0400, 0400, 0500, 0500},
                                                               {0004, 0004, 0005, 0005}}) {
    FsOptions o = options(0);
    o.mode = mode;
    PackageFs fs(Package::open(dir / "p.torshpkg"), o);
    const Tree& tree = fs.tree();
    EXPECT_EQ(fs.attributes(*tree.find("resources/data.bin")).st_mode, S_IFREG | file);
    EXPECT_EQ(fs.attributes(*tree.find("resources/bin/run.sh")).st_mode, S_IFREG | exec);
    EXPECT_EQ(fs.attributes(*tree.find("manifest.json")).st_mode, S_IFREG | file);
    EXPECT_EQ(fs.attributes(*tree.find("resources/bin")).st_mode, S_IFDIR | folder);
    EXPECT_EQ(fs.attributes(*tree.get(Tree::kRootIno)).st_mode, S_IFDIR | folder);
  }
}

TEST(MountAccess, DefaultsOptionsAndRefusals) {
  const MountAccess plain = resolve_access({}, 1000, 100, false);
  EXPECT_EQ(std::tuple(plain.uid, plain.gid, plain.mode), std::tuple(1000u, 100u, 0444u));
  const MountAccess secret = resolve_access({}, 1000, 100, true);
  EXPECT_EQ(secret.mode, 0400u);
  EXPECT_FALSE(needs_allow_other(secret, 1000));  // the owner's alone: nobody else gets in
  EXPECT_TRUE(needs_allow_other(secret, 0));      // root mounted it for user 1000
  EXPECT_TRUE(needs_allow_other(plain, 1000));    // everyone may read
  AccessRequest r;
  r.owner = "0:5";
  r.mode = "440";
  const MountAccess given = resolve_access(r, 1000, 100, true);
  EXPECT_EQ(std::tuple(given.uid, given.gid, given.mode), std::tuple(0u, 5u, 0440u));
  EXPECT_TRUE(needs_allow_other(given, 0));  // the group may read
  r = {};
  r.owner = "root";  // by name: the user's primary group too
  EXPECT_EQ(resolve_access(r, 1000, 100, false).gid, 0u);
  r = {};
  r.umask = "0027";
  EXPECT_EQ(resolve_access(r, 0, 0, true).mode, 0440u);
  r.umask = "0777";
  EXPECT_EQ(resolve_access(r, 0, 0, false).mode, 0u);
  r = {};
  r.mode = "0550";  // x bits follow the read bits: ignored here
  EXPECT_EQ(resolve_access(r, 0, 0, false).mode, 0440u);
  for (const auto& bad : std::vector<AccessRequest>{
           {"", "", "0644", ""},
           {"", "", "4444", ""},
           {"", "", "0x44", ""},
           {"", "", "04444", ""},
           {"", "", "0440", "0077"},
           {"no-such-user-torshpkg", "", "", ""},
           {"", "no-such-group-torshpkg", "", ""},
           {"0:", "", "", ""},
           {"0:0", "0", "", ""},
       }) {
    EXPECT_EQ(torshpkg::testing::kind_of([&] { resolve_access(bad, 0, 0, false); }),
              ErrorKind::kInvalidArgument)
        << bad.owner << " " << bad.group << " " << bad.mode << " " << bad.umask;
  }
  EXPECT_EQ(mode_string(0440), "0440");
}

TEST(MountPoint, RefusesSymlinksFilesMountRootsAndFullFoldersAndCanonicalizes) {
  TempDir dir;
  const std::string empty = dir / "empty";
  ASSERT_EQ(::mkdir(empty.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir / "full").c_str(), 0755), 0);
  torshpkg::testing::write_file(dir / "full/x", {1});
  ASSERT_EQ(::symlink(empty.c_str(), (dir / "link").c_str()), 0);
  ASSERT_EQ(::symlink(dir.path().c_str(), (dir / "up").c_str()), 0);
  const MountPointRules rules;
  // Spellings of one folder, through a symlinked parent too, give one canonical path.
  char real[PATH_MAX];
  ASSERT_NE(::realpath(empty.c_str(), real), nullptr);
  for (const std::string& spelling :
       {empty, empty + "/", dir / "full/../empty", dir / "up/empty"}) {
    EXPECT_EQ(MountPoint::open(spelling, rules).path(), real) << spelling;
  }
  const auto refused = [&](const std::string& path, const MountPointRules& r) {
    try {
      MountPoint::open(path, r);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(refused(dir / "link", rules).find("symlink"), std::string::npos);
  EXPECT_NE(refused(dir / "full/x", rules).find("not a folder"), std::string::npos);
  EXPECT_NE(refused(dir / "full", rules).find("--nonempty"), std::string::npos);
  EXPECT_NE(refused("/proc", rules).find("already mounted"), std::string::npos);
  EXPECT_NE(refused(dir / "missing", rules).find("create the mount point"), std::string::npos);
  MountPointRules nonempty;
  nonempty.allow_nonempty = true;
  EXPECT_NO_THROW(MountPoint::open(dir / "full", nonempty));
  MountPointRules owner;
  owner.required_owner = 12345;
  EXPECT_NE(refused(empty, owner).find("another user"), std::string::npos);
  // Missing mount points are made under the root named, and only there.
  MountPointRules create;
  create.create_under = dir / "full";
  EXPECT_NE(refused(dir / "elsewhere/m", create).find("not under"), std::string::npos);
  EXPECT_NO_THROW(MountPoint::open(dir / "full/new/m", create));
  struct stat st {};
  EXPECT_EQ(::stat((dir / "full/new/m").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  // A passed descriptor: the folder it is, under the same checks.
  const int fd = ::open(empty.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const MountPoint passed = MountPoint::from_fd(fd, rules);
  EXPECT_EQ(passed.path(), real);
  EXPECT_EQ(passed.target(), "/proc/self/fd/" + std::to_string(passed.fd()));
}

TEST(PackageFs, ReadSlicesPointIntoTheCachedChunksAndKeepThemAlive) {
  TempDir dir;
  FsOptions o = options(0);
  o.cache_bytes = 4096;  // one chunk: the cache evicts while the slices still hold chunks
  PackageFs fs(sample(dir), o);
  const Node* c = fs.tree().find("resources/a/b/c.bin");
  const auto expect = text_bytes(100'000, 1);
  ReadSlices slices;
  fs.read_slices(*c, 4000, 10'000, slices);
  ASSERT_EQ(slices.size, 10'000u);
  ASSERT_EQ(slices.parts.size(), 4u);  // 96 + 4096 + 4096 + 1712 bytes of chunks 0..3
  ASSERT_EQ(slices.chunks.size(), 4u);
  std::vector<uint8_t> joined;
  for (size_t i = 0; i < slices.parts.size(); ++i) {
    const auto& part = slices.parts[i];
    const auto& chunk = *slices.chunks[i];
    EXPECT_GE(part.data(), chunk.data());  // no copy: the part lies inside its chunk
    EXPECT_LE(part.data() + part.size(), chunk.data() + chunk.size());
    joined.insert(joined.end(), part.begin(), part.end());
  }
  EXPECT_TRUE(std::equal(joined.begin(), joined.end(), expect.begin() + 4000));

  fs.read_slices(*c, 99'990, 4096, slices);  // clipped at the end of the file
  EXPECT_EQ(slices.size, 10u);
  fs.read_slices(*c, 100'000, 4096, slices);
  EXPECT_EQ(slices.size, 0u);
  EXPECT_TRUE(slices.parts.empty());

  const Node* manifest = fs.tree().find("manifest.json");
  fs.read_slices(*manifest, 0, 1 << 20, slices);  // not chunked: copied into `own`
  ASSERT_EQ(slices.parts.size(), 1u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(slices.parts[0].data()), slices.size),
            fs.package().manifest_bytes());
}

TEST(PackageFs, SequentialReadsDecodeTheChunksAheadInTheBackground) {
  TempDir dir;
  PackageFs fs(sample(dir), options(8 * 4096));
  const Tree& tree = fs.tree();
  const Node* c = tree.find("resources/a/b/c.bin");
  const uint32_t id = static_cast<uint32_t>(c->file->item);
  std::vector<uint8_t> buf(4096);
  fs.read(*c, 0, buf);
  EXPECT_FALSE(fs.cache().contains({id, 5}));  // one read is not a sequence yet
  fs.read(*c, 4096, buf);
  // The prefetcher decodes chunks 2..9; wait for it (bounded), then they are cached.
  for (int i = 0; i < 1000 && !fs.cache().contains({id, 9}); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (uint64_t chunk = 2; chunk < 10; ++chunk)
    EXPECT_TRUE(fs.cache().contains({id, chunk})) << chunk;
  EXPECT_FALSE(fs.cache().contains({id, 10}));
  const auto expect = text_bytes(100'000, 1);
  fs.read(*c, 8192, buf);
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), expect.begin() + 8192));
}

TEST(PackageFs, ConcurrentReadersOfOneChunkAllGetItsBytesOrItsError) {
  TempDir dir;
  const std::string path = dir / "p.torshpkg";
  sample(dir);
  auto bytes = torshpkg::testing::read_file(path);
  PackageFs good(Package::open(path), options(0));
  const Node* c = good.tree().find("resources/a/b/c.bin");
  const auto expect = text_bytes(100'000, 1);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      std::vector<uint8_t> buf(4096);
      good.read(*c, 3 * 4096, buf);
      if (!std::equal(buf.begin(), buf.end(), expect.begin() + 3 * 4096)) wrong++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);

  const size_t at = std::search(bytes.begin(), bytes.end(), std::begin("resources/a/b/c.bin"),
                                std::end("resources/a/b/c.bin") - 1) -
                    bytes.begin();
  // Damage c.bin (the package's first entry, zstd-compressed) past its local header.
  bytes[at + 200 + 4096] ^= 1;
  torshpkg::testing::write_file(dir / "bad.torshpkg", bytes);
  PackageFs bad(Package::open(dir / "bad.torshpkg"), options(0));
  const Node* cb = bad.tree().find("resources/a/b/c.bin");
  std::atomic<int> failures{0};
  threads.clear();
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      std::vector<uint8_t> buf(cb->file->size);
      try {
        bad.read(*cb, 0, buf);
      } catch (const Error&) {
        failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 8);
}

// A package file whose reads at or past `fail_from` fail while `failing` is set.
class FailingSource final : public torshpkg::testing::ForwardingSource {
 public:
  using ForwardingSource::ForwardingSource;
  void read_at(uint64_t offset, std::span<uint8_t> out, ReadOptions options) const override {
    if (failing && offset >= fail_from) throw Error(ErrorKind::kIo, "read error (injected)");
    ForwardingSource::read_at(offset, out, options);
  }
  uint64_t fail_from = UINT64_MAX;
  std::atomic<bool> failing{false};
};

TEST(PackageFs, ConcurrentReadersShareOneDecodeAndAFailedReadIsTriedAgain) {
  TempDir dir;
  sample(dir);  // c.bin: zstd, 4 KiB chunks
  const auto counting = std::make_shared<torshpkg::testing::ReadCountingSource>(
      open_file_source(dir / "p.torshpkg"));
  const auto source = std::make_shared<FailingSource>(counting);
  PackageFs fs(Package::open(source), options(0));
  const Node* c = fs.tree().find("resources/a/b/c.bin");
  const auto expect = text_bytes(100'000, 1);
  std::vector<uint8_t> buf(100);
  fs.read(*c, 0, buf);  // loads the chunk index
  const std::string entry = fs.package().manifest().resources[c->file->item].entry_name();
  for (const ZipEntry& e : read_zip_directory(*open_file_source(dir / "p.torshpkg"))) {
    if (e.name == entry) source->fail_from = e.data_offset;
  }
  source->failing = true;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      std::vector<uint8_t> page(100);
      try {
        fs.read(*c, 5 * 4096 + 10, page);
      } catch (const Error& e) {
        if (e.kind() == ErrorKind::kIo) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 8);
  // The disk recovers: the same read now succeeds, decoding the chunk once for all readers.
  source->failing = false;
  counting->bytes = 0;
  counting->reads.clear();
  threads.clear();
  std::atomic<int> wrong{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      std::vector<uint8_t> page(100);
      fs.read(*c, 5 * 4096 + 10, page);
      if (!std::equal(page.begin(), page.end(), expect.begin() + 5 * 4096 + 10)) ++wrong;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  const ResourceEntry& r = fs.package().manifest().resources[c->file->item];
  ASSERT_NE(r.compression.codec, Codec::kNone);
  EXPECT_GT(counting->bytes.load(), 0u);
  EXPECT_LT(counting->bytes.load(), 4096u);  // one compressed 4 KiB chunk, read once
  EXPECT_EQ(counting->reads.size(), 1u);
}

TEST(PackageFs, OneRandomReadSplitIntoRequestsDoesNotReadAheadButALongerRunDoes) {
  TempDir dir;
  FsOptions o = options(8 * 4096);
  o.sequential_after_bytes = 6 * 4096;
  PackageFs fs(sample(dir), o);
  const Node* c = fs.tree().find("resources/a/b/c.bin");
  const uint32_t id = static_cast<uint32_t>(c->file->item);
  std::vector<uint8_t> buf(5000);
  fs.read(*c, 50'000, buf);  // one 10,000-byte read the kernel sent as two requests
  fs.read(*c, 55'000, buf);
  // Only chunks 12..14 are in the cache, none queued: readahead claims its chunks in the cache
  // before the read returns, so no later decode can hide one.
  EXPECT_EQ(fs.cache().bytes(), 3u * 4096);
  EXPECT_EQ(fs.cache().in_flight_bytes(), 0u);
  EXPECT_FALSE(fs.cache().contains({id, 15}));
  fs.read(*c, 60'000, buf);
  fs.read(*c, 65'000, buf);  // the run is now 20,000 bytes: still short of 6 chunks
  fs.read(*c, 70'000, buf);
  fs.read(*c, 75'000, buf);  // 30,000 bytes: sequential
  for (int i = 0; i < 1000 && !fs.cache().contains({id, 22}); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(fs.cache().contains({id, 22}));
  // Reading the file again from the start is a new run, recognised as such.
  fs.read(*c, 0, buf);
  fs.read(*c, 5000, buf);
  fs.read(*c, 10'000, buf);
  fs.read(*c, 15'000, buf);
  fs.read(*c, 20'000, buf);
  for (int i = 0; i < 1000 && !fs.cache().contains({id, 8}); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(fs.cache().contains({id, 8}));
}

TEST(PackageFs, RandomReadsDoNotReadAhead) {
  TempDir dir;
  PackageFs fs(sample(dir), options(8 * 4096));
  const Tree& tree = fs.tree();
  const Node* c = tree.find("resources/a/b/c.bin");
  std::vector<uint8_t> buf(100);
  fs.read(*c, 50'000, buf);
  fs.read(*c, 10'000, buf);
  fs.read(*c, 90'000, buf);
  // Readahead would have claimed its chunks, counted at once, before the read returned.
  EXPECT_EQ(fs.cache().bytes(), 3u * 4096);
  EXPECT_EQ(fs.cache().in_flight_bytes(), 0u);
}

// A package of one stored resource, resources/w.bin, in 4 KiB chunks, opened as a file.
// A package of one resource stored plain in 4 KiB chunks; with `block_size` 0, its chunks are
// hashed whole (as compressed ones are, and every chunk of format versions 1 and 2).
std::shared_ptr<ByteSource> stored_package(const TempDir& dir, const std::vector<uint8_t>& data,
                                           uint32_t block_size = kDefaultBlockSize) {
  PackageWriter w(torshpkg::testing::header());
  w.add_bytes("w.bin", data);
  WriteOptions o;
  o.chunk_size = 4096;
  o.block_size = block_size;
  o.compression = {Codec::kNone, 0};
  w.write(dir / "p.torshpkg", o);
  return open_file_source(dir / "p.torshpkg");
}

TEST(PackageFs, ASequentialReaderHasEachChunkAnnouncedOnce) {
  TempDir dir;
  const auto data = text_bytes(64 * 4096, 6);
  const auto source = std::make_shared<HintRecordingSource>(stored_package(dir, data));
  FsOptions o = options(8 * 4096);
  o.direct_reads = false;  // buffered, as compressed chunks are always read
  PackageFs fs(Package::open(source), o);
  const Node* node = fs.tree().find("resources/w.bin");
  source->hints.clear();
  // Requests of two chunks each, front to back: the first ones announce their own chunks, then
  // readahead announces the window ahead, and no request announces its chunks again.
  std::vector<uint8_t> buf(2 * 4096);
  for (uint64_t at = 0; at < data.size(); at += buf.size()) {
    ASSERT_EQ(fs.read(*node, at, buf), buf.size());
    ASSERT_TRUE(std::equal(buf.begin(), buf.end(), data.begin() + static_cast<ptrdiff_t>(at)));
  }
  ASSERT_FALSE(source->hints.empty());
  uint64_t base = UINT64_MAX;  // where chunk 0's stored bytes begin (stored chunks are contiguous)
  for (const auto& a : source->hints) base = std::min(base, a.first);
  std::vector<int> times(64);
  for (const auto& [offset, length] : source->hints) {
    for (uint64_t b = offset; b < offset + length; b += 4096) {
      const uint64_t chunk = (b - base) / 4096;
      if (chunk < times.size()) ++times[chunk];
    }
  }
  for (size_t c = 0; c < times.size(); ++c) EXPECT_LE(times[c], 1) << "chunk " << c;
}

// A package file whose reads, once armed, wait (up to 10 s) for a second read to be in flight,
// and record how many ever were at once, and the lengths announced with kWillNeed.
class OverlapSource final : public torshpkg::testing::ForwardingSource {
 public:
  using ForwardingSource::ForwardingSource;
  void read_at(uint64_t offset, std::span<uint8_t> out, ReadOptions options) const override {
    if (armed) {
      std::unique_lock lock(mutex_);
      ++active_;
      most = std::max(most.load(), active_);
      overlapped_ = overlapped_ || active_ >= 2;
      changed_.notify_all();
      changed_.wait_for(lock, std::chrono::seconds(10), [&] { return overlapped_; });
      lock.unlock();
      ForwardingSource::read_at(offset, out, options);
      lock.lock();
      --active_;
      return;
    }
    ForwardingSource::read_at(offset, out, options);
  }
  void advise(uint64_t offset, uint64_t length, Advice advice) const override {
    if (armed && advice == Advice::kWillNeed) {
      std::lock_guard lock(mutex_);
      announced.push_back(length);
    }
    ForwardingSource::advise(offset, length, advice);
  }
  std::atomic<bool> armed{false};
  mutable std::atomic<int> most{0};
  mutable std::vector<uint64_t> announced;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  mutable int active_ = 0;
  mutable bool overlapped_ = false;
};

TEST(PackageFs, AReadSpanningTwoChunksReadsThemAtOnce) {
  TempDir dir;
  const auto data = text_bytes(100'000, 4);
  const auto source = std::make_shared<OverlapSource>(stored_package(dir, data, 0));
  FsOptions o = options(8 * 4096);
  o.direct_reads = false;  // buffered, as compressed chunks are always read
  PackageFs fs(Package::open(source), o);
  const Node* node = fs.tree().find("resources/w.bin");
  std::vector<uint8_t> buf(4096);
  fs.read(*node, 0, buf);  // loads the chunk index
  source->armed = true;
  fs.read(*node, 5 * 4096 + 100, buf);  // chunks 5 and 6
  EXPECT_EQ(source->most.load(), 2);
  // Both chunks' stored bytes were asked of the disk in one go.
  EXPECT_EQ(source->announced, std::vector<uint64_t>{2 * 4096});
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), data.begin() + 5 * 4096 + 100));
}

TEST(PackageFs, ARandomPageOfAStoredResourceReadsItsBlockNotItsChunk) {
  TempDir dir;
  const auto data = torshpkg::testing::random_bytes(8 << 20, 9);
  PackageWriter w(torshpkg::testing::header());
  w.add_bytes("w.bin", data, std::nullopt, CodecSpec{Codec::kNone, 0});
  w.write(dir / "p.torshpkg");  // 1 MiB chunks of 4 KiB blocks
  const auto source = std::make_shared<torshpkg::testing::ReadCountingSource>(open_file_source(dir / "p.torshpkg"));
  FsOptions o = options(0);  // random reads close together would otherwise count as a run
  o.cache_bytes = 8 << 20;
  PackageFs fs(Package::open(source), o);
  const Node* node = fs.tree().find("resources/w.bin");
  std::vector<uint8_t> page(4096);
  fs.read(*node, 0, page);  // loads the chunk index
  std::mt19937 rng(3);
  for (int i = 0; i < 20; ++i) {
    const uint64_t at = (rng() % 2048) * 4096;
    source->bytes = 0;
    ASSERT_EQ(fs.read(*node, at, page), page.size());
    EXPECT_TRUE(std::equal(page.begin(), page.end(), data.begin() + at));
    // The page and the 256 block hashes of its chunk; no other byte of the chunk.
    EXPECT_EQ(source->bytes.load(), 4096u + 256 * 32) << at;
  }
  // A whole chunk is read whole (and cached): later pages of it read nothing.
  std::vector<uint8_t> chunk(1 << 20);
  source->bytes = 0;
  ASSERT_EQ(fs.read(*node, 3 << 20, chunk), chunk.size());
  EXPECT_EQ(source->bytes.load(), 1u << 20);
  source->bytes = 0;
  ASSERT_EQ(fs.read(*node, (3 << 20) + 8192, page), page.size());
  EXPECT_EQ(source->bytes.load(), 0u);
  EXPECT_TRUE(std::equal(page.begin(), page.end(), data.begin() + (3 << 20) + 8192));
}

// A package file whose direct reads at `hold_from` or later wait until released (or 10 s),
// counting how many wait at once; kWillNeed announcements are counted too.
class HeldDirectReads final : public torshpkg::testing::ForwardingSource {
 public:
  using ForwardingSource::ForwardingSource;
  void read_at(uint64_t offset, std::span<uint8_t> out, ReadOptions options) const override {
    std::unique_lock lock(mutex_);
    if (options.uncached && offset >= hold_from) {
      ++waiting_;
      most = std::max(most, waiting_);
      changed_.notify_all();
      changed_.wait_for(lock, std::chrono::seconds(10), [&] { return released_; });
      --waiting_;
    }
    lock.unlock();
    ForwardingSource::read_at(offset, out, options);
  }
  void advise(uint64_t offset, uint64_t length, Advice advice) const override {
    if (advice == Advice::kWillNeed) ++announced;
    ForwardingSource::advise(offset, length, advice);
  }
  // Waits until `n` reads wait at once (or 10 s), then lets every read through.
  void release_when_waiting(int n) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, std::chrono::seconds(10), [&] { return waiting_ >= n; });
    released_ = true;
    changed_.notify_all();
  }
  int most_waiting() const {
    std::lock_guard lock(mutex_);
    return most;
  }

  uint64_t hold_from = UINT64_MAX;
  mutable std::atomic<int> announced{0};

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  mutable int waiting_ = 0;
  mutable int most = 0;
  bool released_ = false;
};

TEST(PackageFs, OnlyReadsOfBlocksUseTheRequestsOwnMemory) {
  TempDir dir;
  const auto data = text_bytes(16 * 4096, 5);
  PackageFs fs(Package::open(stored_package(dir, data)), options(0));  // 4 KiB chunks, 4 KiB blocks
  const Node* node = fs.tree().find("resources/w.bin");
  ReadSlices slices;
  fs.read_slices(*node, 0, 2 * 4096, slices);  // whole chunks: pointers into them
  EXPECT_EQ(slices.size, 2u * 4096);
  EXPECT_TRUE(slices.own.empty());
  fs.read_slices(*node, 5 * 4096 + 100, 200, slices);  // part of a chunk nobody decoded
  ASSERT_EQ(slices.size, 200u);
  EXPECT_EQ(slices.own.size(), 200u);
  EXPECT_TRUE(
      std::equal(slices.parts[0].begin(), slices.parts[0].end(), data.begin() + 5 * 4096 + 100));
}

TEST(PackageFs, StoredChunksAreReadDirectlyWithManyReadsInFlight) {
  TempDir dir;
  const auto data = text_bytes(64 * 4096, 7);
  const auto source = std::make_shared<HeldDirectReads>(stored_package(dir, data));
  PackageFs fs(Package::open(source), options(16 * 4096));
  const Node* node = fs.tree().find("resources/w.bin");
  // The reader's own reads of chunks 0-3 pass; they start readahead of the 16 chunks after
  // them, whose reads are all held: they are in flight at once, far more than one per core.
  // (Held by position, not by count: readahead threads may read chunk 4 before the reader
  // reads chunk 3, and the reader would then wait for a held chunk.)
  const std::string entry = fs.package().manifest().resources[0].entry_name();
  for (const ZipEntry& e : read_zip_directory(*source)) {
    if (e.name == entry) source->hold_from = e.data_offset + 4 * 4096;
  }
  ASSERT_NE(source->hold_from, UINT64_MAX);
  source->announced = 0;  // opening announced the manifest and the headers
  std::vector<uint8_t> buf(2 * 4096);
  for (uint64_t at = 0; at < 4 * 4096; at += buf.size()) {
    ASSERT_EQ(fs.read(*node, at, buf), buf.size());
  }
  source->release_when_waiting(16);
  EXPECT_EQ(source->most_waiting(), 16);
  for (uint64_t at = 0; at < data.size(); at += buf.size()) {
    ASSERT_EQ(fs.read(*node, at, buf), buf.size());
    ASSERT_TRUE(std::equal(buf.begin(), buf.end(), data.begin() + static_cast<ptrdiff_t>(at)));
  }
  // The disk is never asked for them ahead of time: that would fill the page cache.
  EXPECT_EQ(source->announced.load(), 0);
}

TEST(PackageFs, AnIdleMountHoldsNoReadaheadOrReaderThreads) {
  TempDir dir;
  const auto data = text_bytes(64 * 4096, 7);
  FsOptions o = options(16 * 4096);
  o.idle_thread_exit = std::chrono::milliseconds(20);
  PackageFs fs(Package::open(stored_package(dir, data)), o);
  EXPECT_EQ(fs.prefetch_threads(), 0u);
  const Node* node = fs.tree().find("resources/w.bin");
  std::vector<uint8_t> buf(2 * 4096);
  for (uint64_t at = 0; at < data.size(); at += buf.size()) {
    ASSERT_EQ(fs.read(*node, at, buf), buf.size());
    ASSERT_TRUE(std::equal(buf.begin(), buf.end(), data.begin() + static_cast<ptrdiff_t>(at)));
  }
  ASSERT_TRUE(eventually([&] { return fs.prefetch_threads() == 0; }));
}

}  // namespace
}  // namespace torshpkg::fs
