// DiskChunkStore, and a package reading through one: two versions of a package share the
// chunks they have in common, and nothing the store gives is used unchecked.
#include "torshpkg/chunk_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"
#include "torshpkg/package.h"
#include "torshpkg/package_writer.h"

namespace torshpkg {
namespace {

using testing::random_bytes;
using testing::ReadCountingSource;
using testing::TempDir;

std::string stored_package(const std::filesystem::path& path, const std::vector<uint8_t>& data) {
  PackageWriter w(testing::header());
  w.add_bytes("w.bin", data, std::nullopt, CodecSpec{Codec::kNone, 0});
  w.write(path);
  return path;
}

Digest key_of(uint8_t n) {
  Digest d{};
  d[0] = n;
  return d;
}

std::vector<std::filesystem::path> entries(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out.push_back(e.path());
  }
  return out;
}

TEST(DiskChunkStore, KeepsEntriesWithinItsBoundLeastRecentlyUsedFirst) {
  TempDir dir;
  const DiskChunkStore store(dir / "cache", 3000);
  std::vector<uint8_t> a(1000, 'a'), out(1000);
  store.put(key_of(1), a);
  store.put(key_of(2), a);
  store.put(key_of(3), a);
  EXPECT_TRUE(store.get(key_of(1), out));  // 1 is now the most recently used
  store.put(key_of(4), a);                 // over the bound: 2 goes
  EXPECT_FALSE(store.get(key_of(2), out));
  EXPECT_TRUE(store.get(key_of(1), out));
  EXPECT_TRUE(store.get(key_of(4), out));
  EXPECT_EQ(store.stats().evicted, 1u);
  EXPECT_LE(store.stats().bytes, 3000u);
  std::vector<uint8_t> wrong_size(999);
  EXPECT_FALSE(store.get(key_of(1), wrong_size));
  // Another process (a new store over the folder) finds them, in the same order of use.
  const DiskChunkStore again(dir / "cache", 3000);
  EXPECT_EQ(again.stats().entries, 3u);
  EXPECT_TRUE(again.get(key_of(3), out));
}

TEST(DiskChunkStore, ASecondVersionReadsOnlyTheChunksThatChanged) {
  TempDir dir;
  const auto v1 = random_bytes(6 << 20, 7);
  auto v2 = v1;
  for (size_t i = 0; i < 100; ++i) v2[(3 << 20) + i * 997] ^= 0x5a;  // inside chunk 3 only
  const auto store = std::make_shared<DiskChunkStore>(dir / "cache", 64 << 20);
  std::vector<uint8_t> out(v1.size());
  {
    auto src = std::make_shared<ReadCountingSource>(
        open_file_source(stored_package(dir / "1.torshpkg", v1)));
    const auto pkg = Package::open(src);
    pkg->set_chunk_store(store);
    ASSERT_EQ(pkg->read(*pkg->find("resources/w.bin"), 0, out), out.size());
    EXPECT_EQ(out, v1);
    EXPECT_GT(src->bytes, v1.size());
  }
  auto src = std::make_shared<ReadCountingSource>(
      open_file_source(stored_package(dir / "2.torshpkg", v2)));
  const auto pkg = Package::open(src);
  pkg->set_chunk_store(store);
  const uint64_t opened = src->bytes;
  ASSERT_EQ(pkg->read(*pkg->find("resources/w.bin"), 0, out), out.size());
  EXPECT_EQ(out, v2);
  // One chunk of six (1 MiB), the block hashes of all six (8 KiB each) and the chunk index
  // (36 bytes a chunk) from the package.
  EXPECT_LE(src->bytes - opened, (1u << 20) + 6 * 8192 + 6 * 36 + 64);
  EXPECT_GE(src->bytes - opened, 1u << 20);
}

TEST(DiskChunkStore, WhatTheStoreGivesIsCheckedBeforeUse) {
  TempDir dir;
  const auto data = random_bytes(3 << 20, 9);
  const auto store = std::make_shared<DiskChunkStore>(dir / "cache", 64 << 20);
  const std::string path = stored_package(dir / "p.torshpkg", data);
  std::vector<uint8_t> out(data.size());
  {
    const auto pkg = Package::open(path);
    pkg->set_chunk_store(store);
    pkg->read(*pkg->find("resources/w.bin"), 0, out);
  }
  const auto files = entries(dir / "cache");
  ASSERT_EQ(files.size(), 3u);
  {
    // Every entry damaged: a flipped byte, a truncated one, another chunk's bytes.
    std::fstream f(files[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x01');
  }
  std::filesystem::resize_file(files[1], 1000);
  std::filesystem::copy_file(files[0], files[2], std::filesystem::copy_options::overwrite_existing);
  auto src = std::make_shared<ReadCountingSource>(open_file_source(path));
  const auto pkg = Package::open(src);
  pkg->set_chunk_store(store);
  const uint64_t opened = src->bytes;
  ASSERT_EQ(pkg->read(*pkg->find("resources/w.bin"), 0, out), out.size());
  EXPECT_EQ(out, data);
  EXPECT_GE(src->bytes - opened, data.size());  // all of it read again from the package
}

}  // namespace
}  // namespace torshpkg
