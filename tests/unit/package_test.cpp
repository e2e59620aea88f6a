#include "torshpkg/package.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "test_util.h"
#include "torshpkg/error.h"
#include "torshpkg/package_writer.h"
#include "zip_reader.h"

namespace torshpkg {
namespace {

using testing::random_bytes;
using testing::TempDir;
using testing::text_bytes;

Manifest header() {
  Manifest m;
  m.name = "demo";
  m.version = "1.0.0";
  return m;
}

const CodecSpec kCodecs[] = {
    {Codec::kNone, 0}, {Codec::kDeflate, 1}, {Codec::kZstd, 3}, {Codec::kXz, 1}};

TEST(Package, EveryCodecRoundTripsBitExact) {
  TempDir dir;
  const auto random = random_bytes(300'000);
  const auto text = text_bytes(500'000);
  for (const CodecSpec& codec : kCodecs) {
    const std::string out = dir / (std::string(codec_name(codec.codec)) + ".torshpkg");
    PackageWriter w(header());
    w.add_bytes("random.bin", random);
    w.add_bytes("sub/dir/text.txt", text);
    w.add_bytes("empty", {});
    WriteOptions o;
    o.compression = codec;
    o.chunk_size = 65536;
    w.write(out, o);
    const auto pkg = Package::open(out);
    EXPECT_EQ(testing::read_all(*pkg, "resources/random.bin"), random) << codec_name(codec.codec);
    EXPECT_EQ(testing::read_all(*pkg, "resources/sub/dir/text.txt"), text)
        << codec_name(codec.codec);
    EXPECT_TRUE(testing::read_all(*pkg, "resources/empty").empty());
    pkg->verify(true);
    EXPECT_EQ(pkg->manifest().resources[1].compression.codec, codec.codec);
    EXPECT_EQ(pkg->manifest().resources[2].compression.codec, Codec::kNone);
  }
}

TEST(Package, ListsTheTreeSorted) {
  TempDir dir;
  PackageWriter w(header());
  w.add_bytes("b.txt", {1});
  w.add_bytes("a/c.txt", {2});
  w.add_dependency({"base", "^1.0", false, {}, 0, ""});
  w.write(dir / "p.torshpkg");
  const auto pkg = Package::open(dir / "p.torshpkg");
  std::vector<std::string> paths;
  for (const FileNode& f : pkg->files()) paths.push_back(f.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"dependencies/base.json", "manifest.json",
                                             "resources/a/c.txt", "resources/b.txt"}));
  const auto dep = testing::read_all(*pkg, "dependencies/base.json");
  EXPECT_NE(std::string(dep.begin(), dep.end()).find("\"^1.0\""), std::string::npos);
  const auto manifest = testing::read_all(*pkg, "manifest.json");
  EXPECT_EQ(std::string(manifest.begin(), manifest.end()), pkg->manifest_bytes());
}

TEST(Package, RandomSlicesAreExact) {
  TempDir dir;
  const auto data = text_bytes(1'000'003);
  std::mt19937_64 rng(42);
  for (const CodecSpec& codec : kCodecs) {
    const std::string out = dir / "p.torshpkg";
    PackageWriter w(header());
    w.add_bytes("w.bin", data);
    WriteOptions o;
    o.compression = codec;
    o.chunk_size = 16384;
    w.write(out, o);
    const auto pkg = Package::open(out);
    const FileNode& f = *pkg->find("resources/w.bin");
    for (int i = 0; i < 200; ++i) {
      const uint64_t off = rng() % (data.size() + 10);
      const size_t len = static_cast<size_t>(rng() % 100'000);
      std::vector<uint8_t> buf(len);
      const size_t n = pkg->read(f, off, buf);
      const size_t expect = off >= data.size() ? 0 : std::min<size_t>(len, data.size() - off);
      ASSERT_EQ(n, expect);
      ASSERT_TRUE(
          std::equal(buf.begin(), buf.begin() + static_cast<long>(n),
                     data.begin() + static_cast<long>(std::min<uint64_t>(off, data.size()))))
          << codec_name(codec.codec) << " offset " << off << " length " << len;
    }
  }
}

TEST(Package, SizesAroundChunkBoundariesRoundTrip) {
  TempDir dir;
  const uint32_t cs = 4096;
  for (const CodecSpec& codec : kCodecs) {
    PackageWriter w(header());
    std::vector<std::vector<uint8_t>> datas;
    for (size_t size : {size_t{0}, size_t{1}, size_t{cs - 1}, size_t{cs}, size_t{cs + 1},
                        size_t{2 * cs}, size_t{2 * cs + 1}}) {
      datas.push_back(random_bytes(size, static_cast<uint32_t>(size)));
      w.add_bytes("s" + std::to_string(size), datas.back());
    }
    WriteOptions o;
    o.compression = codec;
    o.chunk_size = cs;
    w.write(dir / "p.torshpkg", o);
    const auto pkg = Package::open(dir / "p.torshpkg");
    size_t i = 0;
    for (size_t size : {size_t{0}, size_t{1}, size_t{cs - 1}, size_t{cs}, size_t{cs + 1},
                        size_t{2 * cs}, size_t{2 * cs + 1}}) {
      EXPECT_EQ(testing::read_all(*pkg, "resources/s" + std::to_string(size)), datas[i++])
          << codec_name(codec.codec) << " size " << size;
    }
    pkg->verify(true);
  }
}

TEST(Package, ReadChunkIntoCallerMemoryOfExactlyItsPlainLength) {
  TempDir dir;
  const auto data = random_bytes(2 * 4096 + 10, 3);
  for (const CodecSpec& codec : kCodecs) {
    PackageWriter w(header());
    w.add_bytes("w.bin", data);
    WriteOptions o;
    o.compression = codec;
    o.chunk_size = 4096;
    w.write(dir / "p.torshpkg", o);
    const auto pkg = Package::open(dir / "p.torshpkg");
    const ResourceEntry& r = pkg->manifest().resources[0];
    std::vector<uint8_t> out(4096);
    pkg->read_chunk(r, 1, std::span<uint8_t>(out));
    EXPECT_TRUE(std::equal(out.begin(), out.end(), data.begin() + 4096)) << codec_name(codec.codec);
    std::vector<uint8_t> last(10);
    pkg->read_chunk(r, 2, std::span<uint8_t>(last));
    EXPECT_TRUE(std::equal(last.begin(), last.end(), data.begin() + 2 * 4096));
    EXPECT_THROW(pkg->read_chunk(r, 2, std::span<uint8_t>(out)), Error);  // 4096 != 10
    EXPECT_THROW(pkg->read_chunk(r, 3, std::span<uint8_t>(last)), Error);
  }
}

TEST(PackageWriter, ChunkSizeDefaultsByCodecUnlessChosen) {
  TempDir dir;
  const auto data = text_bytes(300'000, 5);
  for (const uint32_t chosen : {0u, 65536u}) {
    PackageWriter w(header());
    w.add_bytes("z.txt", data);  // the default codec, zstd
    w.add_bytes("s.txt", data, std::nullopt, CodecSpec{Codec::kNone, 0});  // stored
    WriteOptions o;
    o.chunk_size = chosen;
    w.write(dir / "p.torshpkg", o);
    const auto pkg = Package::open(dir / "p.torshpkg");
    const auto& rs = pkg->manifest().resources;
    ASSERT_EQ(rs.size(), 2u);
    const ResourceEntry& z = rs[0].path == "z.txt" ? rs[0] : rs[1];
    const ResourceEntry& s = rs[0].path == "s.txt" ? rs[0] : rs[1];
    EXPECT_EQ(z.compression.codec, Codec::kZstd);
    EXPECT_EQ(z.chunk_size, chosen ? chosen : kDefaultCompressedChunkSize);
    EXPECT_EQ(s.chunk_size, chosen ? chosen : kDefaultChunkSize);
    EXPECT_EQ(testing::read_all(*pkg, "resources/z.txt"), data);
    EXPECT_EQ(testing::read_all(*pkg, "resources/s.txt"), data);
  }
}

TEST(Package, StoredResourcesAreAlignedTo4096) {
  TempDir dir;
  PackageWriter w(header());
  w.add_bytes("a", random_bytes(1000));
  w.add_bytes("b", random_bytes(5000));
  w.add_bytes("c", text_bytes(5000), std::nullopt, CodecSpec{Codec::kZstd, 3});
  w.add_bytes("d", random_bytes(10));
  WriteOptions o;
  o.compression = {Codec::kNone, 0};
  w.write(dir / "p.torshpkg", o);
  auto src = open_file_source(dir / "p.torshpkg");
  for (const ZipEntry& e : read_zip_directory(*src)) {
    if (e.name.starts_with("resources/") && e.method == 0) {
      EXPECT_EQ(e.data_offset % 4096, 0u) << e.name;
    }
  }
}

// Memory as a chunk buffer has it: starting at a multiple of kUncachedAlignment, with room for
// the size rounded up to one.
struct AlignedBuffer {
  explicit AlignedBuffer(size_t size)
      : room(uncached_room(size)),
        memory(static_cast<uint8_t*>(std::aligned_alloc(kUncachedAlignment, room)), &std::free),
        bytes(memory.get(), size) {}
  size_t room;
  std::unique_ptr<uint8_t, decltype(&std::free)> memory{nullptr, &std::free};
  std::span<uint8_t> bytes;
};

// How many of a file's pages the page cache holds.
size_t resident_pages(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  const size_t size = std::filesystem::file_size(path);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in((size + page - 1) / page);
  ::mincore(map, size, in.data());
  ::munmap(map, size);
  return static_cast<size_t>(
      std::count_if(in.begin(), in.end(), [](unsigned char c) { return (c & 1) != 0; }));
}

// Writes a file's bytes back and drops them from the page cache, as for a package on a host
// that has not read it yet.
void drop_cached(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::fdatasync(fd), 0);
  EXPECT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  ::close(fd);
}

TEST(FileSource, UncachedReadsComeFromTheDiskAndLeaveThePageCacheAlone) {
  TempDir dir;
  const auto data = random_bytes((3u << 20) + 100);  // ends inside a page
  testing::write_file(dir / "f", data);
  drop_cached(dir / "f");
  ASSERT_EQ(resident_pages(dir / "f"), 0u);
  const auto src = open_file_source(dir / "f");
  // Aligned reads in the middle and up to the end of the file (which ends before the room).
  AlignedBuffer middle(1u << 20), tail(data.size() - (2u << 20));
  const int probe = ::open((dir / "f").c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (probe < 0) GTEST_SKIP() << "this file system does not allow direct I/O";
  ::close(probe);
  const ReadOptions uncached{.uncached = true};
  src->read_at(1u << 20, middle.bytes, uncached);
  src->read_at(2u << 20, tail.bytes, uncached);
  EXPECT_TRUE(std::equal(middle.bytes.begin(), middle.bytes.end(), data.begin() + (1 << 20)));
  EXPECT_TRUE(std::equal(tail.bytes.begin(), tail.bytes.end(), data.begin() + (2 << 20)));
  EXPECT_EQ(resident_pages(dir / "f"), 0u);
  // Once the page cache holds the bytes, they are taken from there, and are the same.
  std::vector<uint8_t> all(data.size());
  src->read_at(0, all);
  AlignedBuffer again(1u << 20);
  src->read_at(1u << 20, again.bytes, uncached);
  EXPECT_TRUE(std::equal(again.bytes.begin(), again.bytes.end(), data.begin() + (1 << 20)));
  // Past the end is refused like read_at.
  AlignedBuffer past(8192);
  EXPECT_THROW(src->read_at(3u << 20, past.bytes, uncached), Error);
}

TEST(Package, UncachedChunkReadsGiveTheVerifiedBytesAndRefuseDamage) {
  TempDir dir;
  PackageWriter w(header());
  const auto stored = random_bytes((2u << 20) + 5000);
  const auto packed = text_bytes(300'000, 3);
  w.add_bytes("s.bin", stored, std::nullopt, CodecSpec{Codec::kNone, 0});
  w.add_bytes("z.txt", packed, std::nullopt, CodecSpec{Codec::kZstd, 3});
  w.write(dir / "p.torshpkg", {});
  drop_cached(dir / "p.torshpkg");
  auto pkg = Package::open(dir / "p.torshpkg");
  const auto read_all_chunks = [&](const Package& p, const ResourceEntry& r,
                                   const std::vector<uint8_t>& want) {
    for (uint64_t c = 0; c < r.chunk_count; ++c) {
      const size_t len =
          static_cast<size_t>(std::min<uint64_t>(r.chunk_size, r.size - c * r.chunk_size));
      AlignedBuffer buf(len);
      p.read_chunk(r, c, buf.bytes, true);
      EXPECT_TRUE(std::equal(buf.bytes.begin(), buf.bytes.end(),
                             want.begin() + static_cast<ptrdiff_t>(c * r.chunk_size)))
          << r.path << " chunk " << c;
    }
  };
  const ResourceEntry& s = pkg->manifest().resources[pkg->find("resources/s.bin")->item];
  const ResourceEntry& z = pkg->manifest().resources[pkg->find("resources/z.txt")->item];
  read_all_chunks(*pkg, s, stored);
  read_all_chunks(*pkg, z, packed);  // decoded through scratch memory: `uncached` has no effect
  // Memory that is not aligned is read through the page cache instead.
  std::vector<uint8_t> odd(s.chunk_size + 1);
  pkg->read_chunk(s, 0, std::span(odd).subspan(1), true);
  EXPECT_TRUE(std::equal(odd.begin() + 1, odd.end(), stored.begin()));

  // One byte of chunk 1 flipped: that chunk fails its hash and nothing of it is handed out.
  uint64_t at = 0;
  for (const ZipEntry& e : read_zip_directory(*open_file_source(dir / "p.torshpkg"))) {
    if (e.name == "resources/s.bin") at = e.data_offset + s.chunk_size + 77;
  }
  ASSERT_GT(at, 0u);
  const ResourceEntry damaged = s;
  pkg.reset();
  {
    const int fd = ::open((dir / "p.torshpkg").c_str(), O_RDWR | O_CLOEXEC);
    uint8_t byte = 0;
    ASSERT_EQ(::pread(fd, &byte, 1, static_cast<off_t>(at)), 1);
    byte ^= 0x10;
    ASSERT_EQ(::pwrite(fd, &byte, 1, static_cast<off_t>(at)), 1);
    ::close(fd);
  }
  drop_cached(dir / "p.torshpkg");
  pkg = Package::open(dir / "p.torshpkg");
  const ResourceEntry& s2 = pkg->manifest().resources[damaged.id];
  AlignedBuffer buf(s2.chunk_size);
  std::fill(buf.bytes.begin(), buf.bytes.end(), 0xee);
  try {
    pkg->read_chunk(s2, 1, buf.bytes, true);
    ADD_FAILURE() << "a damaged chunk was read";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorrupt);
    EXPECT_NE(std::string(e.what()).find("chunk 1 hash mismatch"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(std::all_of(buf.bytes.begin(), buf.bytes.end(), [](uint8_t b) { return b == 0; }));
  AlignedBuffer good(s2.chunk_size);
  pkg->read_chunk(s2, 0, good.bytes, true);
  EXPECT_TRUE(std::equal(good.bytes.begin(), good.bytes.end(), stored.begin()));
}

using testing::ReadCountingSource;

// A package of one resource "w.bin" stored plain (1 MiB chunks of 4 KiB blocks).
std::string stored_package(const TempDir& dir, const std::vector<uint8_t>& data) {
  PackageWriter w(header());
  w.add_bytes("w.bin", data, std::nullopt, CodecSpec{Codec::kNone, 0});
  w.write(dir / "p.torshpkg");
  return dir / "p.torshpkg";
}

uint64_t entry_offset(const ByteSource& src, const std::string& name) {
  for (const ZipEntry& e : read_zip_directory(src)) {
    if (e.name == name) return e.data_offset;
  }
  ADD_FAILURE() << "no entry " << name;
  return 0;
}

constexpr CodecSpec kStored{Codec::kNone, 0};

TEST(Blocks, StoredResourcesGetBlocksAndAVersion3Manifest) {
  TempDir dir;
  const auto data = random_bytes(3'000'000);
  PackageWriter w(header());
  w.add_bytes("w.bin", data, std::nullopt, kStored);
  w.add_bytes("t.txt", text_bytes(100'000), std::nullopt, CodecSpec{Codec::kZstd, 3});
  w.write(dir / "p.torshpkg");
  const auto pkg = Package::open(dir / "p.torshpkg");
  EXPECT_EQ(pkg->manifest().format_version, 3);
  const ResourceEntry& r = pkg->manifest().resources[0];
  EXPECT_EQ(r.block_size, 4096u);
  EXPECT_EQ(r.chunk_size, 1u << 20);
  EXPECT_EQ(pkg->manifest().resources[1].block_size, 0u);  // compressed: chunks hashed whole
  EXPECT_EQ(testing::read_all(*pkg, "resources/w.bin"), data);
  pkg->verify(true);
  // Without blocks, the package is what readers of versions 1 and 2 read.
  PackageWriter old(header());
  old.add_bytes("w.bin", data, std::nullopt, kStored);
  WriteOptions o;
  o.block_size = 0;
  old.write(dir / "v1.torshpkg", o);
  const auto v1 = Package::open(dir / "v1.torshpkg");
  EXPECT_EQ(v1->manifest().format_version, 1);
  EXPECT_EQ(v1->manifest().resources[0].block_size, 0u);
  EXPECT_EQ(testing::read_all(*v1, "resources/w.bin"), data);
  for (const uint32_t bad : {2048u, 6000u, 2u << 20}) {
    o.block_size = bad;
    EXPECT_EQ(testing::kind_of([&] { old.write(dir / "bad.torshpkg", o); }),
              ErrorKind::kInvalidArgument)
        << bad;
  }
}

TEST(Blocks, A4KiBReadTouchesOnlyItsBlockAndTheChunksBlockHashes) {
  TempDir dir;
  const auto data = random_bytes(5'000'000);
  auto counter = std::make_shared<ReadCountingSource>(open_file_source(stored_package(dir, data)));
  const auto pkg = Package::open(counter);
  const FileNode& f = *pkg->find("resources/w.bin");
  const uint64_t data_at = entry_offset(*counter, "resources/w.bin");
  const uint64_t blocks_at = entry_offset(*counter, ".torshpkg/blocks/0");
  std::vector<uint8_t> page(4096);
  pkg->read(f, 0, page);  // loads the chunk index
  std::mt19937 rng(7);
  for (int i = 0; i < 50; ++i) {
    const uint64_t block = rng() % (data.size() / 4096);
    counter->bytes = 0;
    counter->reads.clear();
    ASSERT_EQ(pkg->read(f, block * 4096, page), 4096u);
    EXPECT_TRUE(std::equal(page.begin(), page.end(), data.begin() + block * 4096));
    // The hashes of its 1 MiB chunk's blocks (256 of them, 8 KiB; the short last chunk has
    // fewer), then the block itself.
    const uint64_t chunk = block / 256;
    const uint64_t hashes =
        32 * std::min<uint64_t>(256, (data.size() - chunk * (1 << 20) + 4095) / 4096);
    ASSERT_EQ(counter->reads.size(), 2u);
    EXPECT_EQ(counter->reads[0], std::make_pair(blocks_at + chunk * 256 * 32, hashes));
    EXPECT_EQ(counter->reads[1], std::make_pair(data_at + block * 4096, uint64_t{4096}));
    EXPECT_EQ(counter->bytes, 4096u + hashes);
  }
  // A read across a block boundary reads the two blocks; one at an odd offset and length too.
  counter->bytes = 0;
  std::vector<uint8_t> odd(5000);
  ASSERT_EQ(pkg->read(f, 3 * 4096 + 100, odd), odd.size());
  EXPECT_TRUE(std::equal(odd.begin(), odd.end(), data.begin() + 3 * 4096 + 100));
  EXPECT_EQ(counter->bytes, 2u * 4096 + 8192);
  // The short last chunk and its short last block.
  std::vector<uint8_t> tail(100);
  ASSERT_EQ(pkg->read(f, data.size() - 100, tail), 100u);
  EXPECT_TRUE(std::equal(tail.begin(), tail.end(), data.end() - 100));
}

TEST(Blocks, DamageToABlockOrItsHashesIsRefused) {
  TempDir dir;
  const auto data = random_bytes(3'000'000);
  const auto bytes = testing::read_file(stored_package(dir, data));
  const auto src = memory_source(bytes, "p");
  const uint64_t data_at = entry_offset(*src, "resources/w.bin");
  const uint64_t blocks_at = entry_offset(*src, ".torshpkg/blocks/0");
  std::vector<uint8_t> page(4096);
  const auto damaged = [&](uint64_t at) {
    auto copy = bytes;
    copy[at] ^= 1;
    return Package::open(memory_source(std::move(copy), "p"));
  };
  {
    // A flipped bit in block 300 (chunk 1): that block's reads fail, its neighbours' do not,
    // and whole-chunk reads and verify fail.
    const auto pkg = damaged(data_at + 300 * 4096 + 17);
    const FileNode& f = *pkg->find("resources/w.bin");
    EXPECT_EQ(testing::kind_of([&] { pkg->read(f, 300 * 4096, page); }), ErrorKind::kCorrupt);
    EXPECT_EQ(pkg->read(f, 301 * 4096, page), 4096u);
    EXPECT_TRUE(std::equal(page.begin(), page.end(), data.begin() + 301 * 4096));
    std::vector<uint8_t> chunk(1 << 20);
    EXPECT_EQ(testing::kind_of([&] { pkg->read(f, 1 << 20, chunk); }), ErrorKind::kCorrupt);
    EXPECT_EQ(testing::kind_of([&] { pkg->verify(true); }), ErrorKind::kCorrupt);
  }
  {
    // A flipped bit in the hash of block 5: every partial read of chunk 0 fails (its hashes
    // no longer match its leaf), whole-chunk reads do not need them, verify --full reads them.
    const auto pkg = damaged(blocks_at + 5 * 32 + 3);
    const FileNode& f = *pkg->find("resources/w.bin");
    EXPECT_EQ(testing::kind_of([&] { pkg->read(f, 9 * 4096, page); }), ErrorKind::kCorrupt);
    EXPECT_EQ(pkg->read(f, 400 * 4096, page), 4096u);  // chunk 1
    std::vector<uint8_t> chunk(1 << 20);
    EXPECT_EQ(pkg->read(f, 0, chunk), chunk.size());
    EXPECT_TRUE(std::equal(chunk.begin(), chunk.end(), data.begin()));
    EXPECT_EQ(testing::kind_of([&] { pkg->verify(true); }), ErrorKind::kCorrupt);
  }
}

// Copies of one package's bytes (a web origin and its mirrors, as a test sees them): copy 0
// unless a read asks for another; counts the reads of each.
class CopiesSource final : public ByteSource {
 public:
  explicit CopiesSource(std::vector<std::shared_ptr<ByteSource>> copies)
      : ByteSource(0, static_cast<uint32_t>(copies.size())),
        copies_(std::move(copies)),
        reads_(copies_.size()) {}
  uint64_t size() const override { return copies_[0]->size(); }
  const std::string& name() const override { return copies_[0]->name(); }
  void read_at(uint64_t offset, std::span<uint8_t> out, ReadOptions options) const override {
    reads_[options.copy] += 1;
    copies_[options.copy]->read_at(offset, out, {});
  }
  uint64_t reads(size_t copy) const { return reads_[copy]; }

 private:
  std::vector<std::shared_ptr<ByteSource>> copies_;
  mutable std::vector<std::atomic<uint64_t>> reads_;
};

TEST(Blocks, BytesThatFailTheirHashAreReadFromTheNextCopy) {
  TempDir dir;
  const auto data = random_bytes(3'000'000);
  const auto bytes = testing::read_file(stored_package(dir, data));
  const uint64_t data_at = entry_offset(*memory_source(bytes, "p"), "resources/w.bin");
  const uint64_t blocks_at = entry_offset(*memory_source(bytes, "p"), ".torshpkg/blocks/0");
  auto flipped = [&](uint64_t at) {
    auto copy = bytes;
    copy[at] ^= 1;
    return memory_source(std::move(copy), "p");
  };
  // The first copy has a bad block (300) and a bad block hash (of block 5), the second a bad
  // block 301, the third is good.
  auto twice = bytes;
  twice[blocks_at + 5 * 32 + 3] ^= 1;
  twice[data_at + 300 * 4096 + 17] ^= 1;
  const auto first = memory_source(std::move(twice), "p");
  const auto src = std::make_shared<CopiesSource>(std::vector<std::shared_ptr<ByteSource>>{
      first, flipped(data_at + 301 * 4096), memory_source(bytes, "p")});
  const auto pkg = Package::open(src);
  const FileNode& f = *pkg->find("resources/w.bin");
  std::vector<uint8_t> out(data.size());
  EXPECT_EQ(pkg->read(f, 0, out), out.size());  // whole chunks
  EXPECT_TRUE(std::equal(out.begin(), out.end(), data.begin()));
  std::vector<uint8_t> page(4096);
  for (const uint64_t block : {5u, 300u, 301u, 302u}) {  // single blocks, with their hashes
    EXPECT_EQ(pkg->read(f, block * 4096, page), 4096u);
    EXPECT_TRUE(std::equal(page.begin(), page.end(), data.begin() + block * 4096)) << block;
  }
  EXPECT_GT(src->reads(1), 0u);
  EXPECT_GT(src->reads(2), 0u);
  pkg->verify(true);
  // With only the bad copies the damage is an error, as with one file.
  const auto bad = Package::open(std::make_shared<CopiesSource>(
      std::vector<std::shared_ptr<ByteSource>>{first, flipped(data_at + 300 * 4096 + 17)}));
  const FileNode& g = *bad->find("resources/w.bin");
  EXPECT_EQ(testing::kind_of([&] { bad->read(g, 300 * 4096, page); }), ErrorKind::kCorrupt);
  EXPECT_EQ(bad->read(g, 5 * 4096, page), 4096u);  // the second copy's hashes are good
}

TEST(Package, ManyThreadsReadConcurrently) {
  TempDir dir;
  const auto data = text_bytes(2'000'000);
  PackageWriter w(header());
  w.add_bytes("w.bin", data);
  WriteOptions o;
  o.chunk_size = 8192;
  w.write(dir / "p.torshpkg", o);
  const auto pkg = Package::open(dir / "p.torshpkg");
  const FileNode& f = *pkg->find("resources/w.bin");
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<uint32_t>(t));
      for (int i = 0; i < 100; ++i) {
        const uint64_t off = rng() % data.size();
        std::vector<uint8_t> buf(rng() % 50'000);
        const size_t n = pkg->read(f, off, buf);
        if (!std::equal(buf.begin(), buf.begin() + static_cast<long>(n),
                        data.begin() + static_cast<long>(off)))
          bad++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(Package, WillNeedHintsExactlyTheStoredBytesOfTheChunks) {
  TempDir dir;
  PackageWriter w(header());
  w.add_bytes("w.bin", random_bytes(200'000));
  WriteOptions o;
  o.compression = {Codec::kNone, 0};
  o.chunk_size = 4096;
  w.write(dir / "p.torshpkg", o);
  auto recorder =
      std::make_shared<testing::HintRecordingSource>(open_file_source(dir / "p.torshpkg"));
  const auto pkg = Package::open(recorder);
  uint64_t data_offset = 0;
  for (const ZipEntry& e : read_zip_directory(*recorder)) {
    if (e.name == "resources/w.bin") data_offset = e.data_offset;
  }
  const ResourceEntry& r = pkg->manifest().resources[0];
  recorder->hints.clear();
  pkg->will_need(r, 2, 3);
  pkg->will_need(r, 48, 10);  // clipped to the last chunk (49: 200,000 = 48 * 4096 + 3392)
  pkg->will_need(r, 49, 0);   // nothing
  pkg->will_need(r, 60, 2);   // past the end: nothing
  ASSERT_EQ(recorder->hints.size(), 2u);
  EXPECT_EQ(recorder->hints[0], std::make_pair(data_offset + 2 * 4096, uint64_t{3 * 4096}));
  EXPECT_EQ(recorder->hints[1], std::make_pair(data_offset + 48 * 4096, uint64_t{3392}));
}

TEST(Package, OpeningAnnouncesTheManifestAndTheHeadersItWillRead) {
  TempDir dir;
  PackageWriter w(header());
  w.add_bytes("big.bin", random_bytes(3'000'000));  // its data lies between the small files
  for (int i = 0; i < 20; ++i) w.add_bytes("small/" + std::to_string(i), random_bytes(100));
  WriteOptions o;
  o.compression = {Codec::kNone, 0};
  w.write(dir / "p.torshpkg", o);
  auto recorder =
      std::make_shared<testing::HintRecordingSource>(open_file_source(dir / "p.torshpkg"));
  Package::open(recorder);
  const auto covered = [&](uint64_t from, uint64_t to) {
    return std::any_of(recorder->hints.begin(), recorder->hints.end(),
                       [&](const auto& h) { return h.first <= from && to <= h.first + h.second; });
  };
  uint64_t big_data = 0;
  for (const ZipEntry& e : read_zip_directory(*open_file_source(dir / "p.torshpkg"))) {
    EXPECT_TRUE(covered(e.local_header_offset, e.data_offset)) << e.name << " header";
    if (e.name == "manifest.json") {
      EXPECT_TRUE(covered(e.data_offset, e.data_offset + e.compressed_size)) << "manifest";
    }
    if (e.name == "resources/big.bin") big_data = e.data_offset;
  }
  // The large resource's data is not announced (only its header).
  EXPECT_FALSE(covered(big_data + 1'000'000, big_data + 1'000'001));
}

TEST(Package, OpenCostDoesNotReadResourceData) {
  // A package whose only resource's chunks are all zeroed still opens and lists: opening reads
  // the directory and manifest, never the data or the index.
  TempDir dir;
  PackageWriter w(header());
  w.add_bytes("w.bin", random_bytes(200'000));
  WriteOptions o;
  o.compression = {Codec::kNone, 0};
  o.chunk_size = 4096;
  const Manifest m = w.write(dir / "p.torshpkg", o);
  auto bytes = testing::read_file(dir / "p.torshpkg");
  auto src = memory_source(bytes, "p");
  const auto entries = read_zip_directory(*src);
  for (const ZipEntry& e : entries) {
    if (e.name == "resources/w.bin") {
      std::fill_n(bytes.begin() + static_cast<long>(e.data_offset), e.compressed_size, 0);
    }
  }
  const auto pkg = Package::open(memory_source(bytes, "p"));
  EXPECT_EQ(pkg->files().size(), 2u);
  std::vector<uint8_t> buf(10);
  EXPECT_THROW(pkg->read(*pkg->find("resources/w.bin"), 0, buf), Error);
}

TEST(Package, AFifoOrAFolderIsRefusedWithoutWaiting) {
  TempDir dir;
  const std::string fifo = dir / "pipe.torshpkg";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Opening a FIFO for reading blocks until a writer comes unless asked not to: no writer ever
  // comes here, so a blocking open would hang the test.
  EXPECT_EQ(testing::kind_of([&] { Package::open(fifo); }), ErrorKind::kInvalidArgument);
  EXPECT_EQ(testing::kind_of([&] { Package::open(dir.path()); }), ErrorKind::kInvalidArgument);
  EXPECT_EQ(testing::kind_of([&] { Package::open("/dev/zero"); }), ErrorKind::kInvalidArgument);
}

TEST(PackageWriter, CancellationLeavesNothingBehind) {
  TempDir dir;
  std::atomic<bool> cancel{true};
  PackageWriter w(header());
  w.add_bytes("w.bin", random_bytes(100'000));
  WriteOptions o;
  o.cancel = &cancel;
  try {
    w.write(dir / "p.torshpkg", o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInterrupted);
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(PackageWriter, FailureKeepsTheOldFileAndRemovesTheTemporary) {
  TempDir dir;
  testing::write_file(dir / "p.torshpkg", {'o', 'l', 'd'});
  testing::write_file(dir / "in.bin", random_bytes(100));
  PackageWriter w(header());
  w.add_file("in.bin", dir / "in.bin");
  std::filesystem::remove(dir / "in.bin");
  EXPECT_THROW(w.write(dir / "p.torshpkg"), Error);
  EXPECT_EQ(testing::read_file(dir / "p.torshpkg"), (std::vector<uint8_t>{'o', 'l', 'd'}));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(PackageWriter, RejectsBadInputsBeforeWriting) {
  EXPECT_THROW(PackageWriter(testing::header("bad name", "1.0.0")), Error);
  EXPECT_THROW(PackageWriter(testing::header("ok", "1.0")), Error);
  PackageWriter w(header());
  EXPECT_THROW(w.add_bytes("../x", {1}), Error);
  EXPECT_THROW(w.add_bytes("/x", {1}), Error);
  w.add_bytes("x", {1});
  EXPECT_THROW(w.add_bytes("x", {1}), Error);
  EXPECT_THROW(w.add_file("y", "/nonexistent/file"), Error);
  w.add_bytes("x/y", {1});
  TempDir dir;
  EXPECT_THROW(w.write(dir / "p.torshpkg"), Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(PackageWriter, TenThousandResources) {
  TempDir dir;
  PackageWriter w(header());
  for (int i = 0; i < 10000; ++i) {
    const std::string s = std::to_string(i);
    w.add_bytes("d" + std::to_string(i % 100) + "/f" + s, std::vector<uint8_t>(s.begin(), s.end()));
  }
  w.write(dir / "p.torshpkg");
  const auto pkg = Package::open(dir / "p.torshpkg");
  EXPECT_EQ(pkg->manifest().resources.size(), 10000u);
  const auto v = testing::read_all(*pkg, "resources/d99/f9999");
  EXPECT_EQ(std::string(v.begin(), v.end()), "9999");
  pkg->verify(true);
}

}  // namespace
}  // namespace torshpkg
