// Tampered packages: every modification is caught, as a kCorrupt error naming what failed, and
// never returns a byte of a chunk that failed its hash.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "crc32.h"
#include "test_util.h"
#include "torshpkg/error.h"
#include "torshpkg/package.h"
#include "torshpkg/package_writer.h"
#include "zip_reader.h"

namespace torshpkg {
namespace {

using testing::random_bytes;
using testing::TempDir;
using testing::text_bytes;

struct Built {
  std::vector<uint8_t> bytes;
  std::vector<ZipEntry> entries;
  const ZipEntry& entry(const std::string& name) const {
    for (const ZipEntry& e : entries) {
      if (e.name == name) return e;
    }
    throw std::runtime_error("no entry " + name);
  }
};

Built build(CodecSpec codec) {
  TempDir dir;
  PackageWriter w(testing::header("demo", "1.0.0"));
  w.add_bytes("a.bin", text_bytes(4096 * 3, 1));
  w.add_bytes("b.bin", text_bytes(4096 * 3, 2));
  WriteOptions o;
  o.compression = codec;
  o.chunk_size = 4096;
  w.write(dir / "p.torshpkg", o);
  Built b;
  b.bytes = testing::read_file(dir / "p.torshpkg");
  b.entries = read_zip_directory(*memory_source(b.bytes, "p"));
  return b;
}

// The message of the kCorrupt error opening `bytes` throws; "opened" when it opens.
std::string open_error(std::vector<uint8_t> bytes) {
  try {
    Package::open(memory_source(std::move(bytes), "p"));
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorrupt) << e.what();
    return e.what();
  }
  return "opened";
}

TEST(PackageHostile, FlippedChunkFailsOnlyThatChunk) {
  for (CodecSpec codec : {CodecSpec{Codec::kNone, 0}, CodecSpec{Codec::kZstd, 3},
                          CodecSpec{Codec::kDeflate, 6}, CodecSpec{Codec::kXz, 6}}) {
    Built b = build(codec);
    const ZipEntry& a = b.entry("resources/a.bin");
    b.bytes[a.data_offset + a.compressed_size - 30] ^= 0x40;  // inside the last chunk
    const auto pkg = Package::open(memory_source(b.bytes, "p"));
    const FileNode& f = *pkg->find("resources/a.bin");
    std::vector<uint8_t> buf(4096);
    EXPECT_EQ(pkg->read(f, 0, buf), 4096u);  // chunk 0 is intact
    std::fill(buf.begin(), buf.end(), 0xee);
    EXPECT_EQ(testing::kind_of([&] { pkg->read(f, 8192, buf); }), ErrorKind::kCorrupt);
    EXPECT_TRUE(std::all_of(buf.begin(), buf.end(), [](uint8_t c) { return c == 0xee || c == 0; }))
        << "bytes of a failed chunk reached the caller";
    EXPECT_EQ(testing::kind_of([&] { pkg->verify(true); }), ErrorKind::kCorrupt);
    EXPECT_EQ(testing::kind_of([&] { pkg->verify(false); }),
              ErrorKind::kUnsupported);  // index is fine
    std::vector<uint8_t> other(4096 * 3);
    EXPECT_EQ(pkg->read(*pkg->find("resources/b.bin"), 0, other), other.size());
  }
}

TEST(PackageHostile, ChunksSwappedBetweenResourcesFail) {
  Built b = build({Codec::kNone, 0});
  const ZipEntry& a = b.entry("resources/a.bin");
  const ZipEntry& bb = b.entry("resources/b.bin");
  std::swap_ranges(b.bytes.begin() + static_cast<long>(a.data_offset),
                   b.bytes.begin() + static_cast<long>(a.data_offset + 4096),
                   b.bytes.begin() + static_cast<long>(bb.data_offset));
  const auto pkg = Package::open(memory_source(b.bytes, "p"));
  std::vector<uint8_t> buf(4096);
  EXPECT_EQ(testing::kind_of([&] { pkg->read(*pkg->find("resources/a.bin"), 0, buf); }),
            ErrorKind::kCorrupt);
  EXPECT_EQ(testing::kind_of([&] { pkg->read(*pkg->find("resources/b.bin"), 0, buf); }),
            ErrorKind::kCorrupt);
}

TEST(PackageHostile, ChunksReorderedWithinAResourceFail) {
  Built b = build({Codec::kNone, 0});
  const ZipEntry& a = b.entry("resources/a.bin");
  std::swap_ranges(b.bytes.begin() + static_cast<long>(a.data_offset),
                   b.bytes.begin() + static_cast<long>(a.data_offset + 4096),
                   b.bytes.begin() + static_cast<long>(a.data_offset + 4096));
  const auto pkg = Package::open(memory_source(b.bytes, "p"));
  std::vector<uint8_t> buf(4096 * 3);
  EXPECT_EQ(testing::kind_of([&] { pkg->read(*pkg->find("resources/a.bin"), 0, buf); }),
            ErrorKind::kCorrupt);
}

TEST(PackageHostile, TamperedIndexFailsItsManifestDigest) {
  Built b = build({Codec::kZstd, 3});
  const ZipEntry& idx = b.entry(".torshpkg/index/0");
  b.bytes[idx.data_offset + idx.compressed_size - 1] ^= 1;
  // The index is stored with a CRC; fix it so only the digest can catch the edit.
  const uint32_t crc = crc32_of(std::span(b.bytes).subspan(idx.data_offset, idx.compressed_size));
  for (int i = 0; i < 4; ++i)
    b.bytes[idx.local_header_offset + 14 + i] = static_cast<uint8_t>(crc >> (8 * i));
  for (size_t pos = idx.data_offset; pos + 4 < b.bytes.size(); ++pos) {
    // central record: signature, then the same CRC as the local header had before
    if (b.bytes[pos] == 'P' && b.bytes[pos + 1] == 'K' && b.bytes[pos + 2] == 1 &&
        b.bytes[pos + 3] == 2 &&
        std::string(b.bytes.begin() + static_cast<long>(pos + 46),
                    b.bytes.begin() + static_cast<long>(pos + 46 + idx.name.size())) == idx.name) {
      for (int i = 0; i < 4; ++i) b.bytes[pos + 16 + i] = static_cast<uint8_t>(crc >> (8 * i));
    }
  }
  const auto pkg = Package::open(memory_source(b.bytes, "p"));
  try {
    pkg->verify(false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorrupt);
    EXPECT_NE(std::string(e.what()).find("digest"), std::string::npos) << e.what();
  }
}

TEST(PackageHostile, EditedManifestFailsItsCrc) {
  Built b = build({Codec::kZstd, 3});
  const ZipEntry& m = b.entry("manifest.json");
  b.bytes[m.data_offset + 20] ^= 1;
  EXPECT_EQ(testing::kind_of([&] { Package::open(memory_source(b.bytes, "p")); }),
            ErrorKind::kCorrupt);
}

TEST(PackageHostile, ADamagedLocalHeaderIsReportedBeforeTheManifest) {
  // The manifest is read while the local headers are checked on another thread; a fault in a
  // header must still be the error reported, also when the manifest is damaged or missing too.
  Built b = build({Codec::kZstd, 3});
  const ZipEntry& res = b.entry("resources/b.bin");
  b.bytes[res.local_header_offset + 14] ^= 1;  // the local header's CRC-32
  EXPECT_EQ(open_error(b.bytes),
            "p: corrupt: resources/b.bin: local header disagrees with central directory");
  const ZipEntry& m = b.entry("manifest.json");
  auto bad_manifest = b.bytes;
  bad_manifest[m.data_offset + 20] ^= 1;
  EXPECT_EQ(open_error(bad_manifest), open_error(b.bytes));
  auto no_manifest = b.bytes;  // its name in the central directory changed to an unlisted one
  const size_t cd_name = std::search(no_manifest.begin() + static_cast<long>(m.data_offset),
                                     no_manifest.end(), m.name.begin(), m.name.end()) -
                         no_manifest.begin();
  ASSERT_LT(cd_name, no_manifest.size());
  no_manifest[cd_name] = 'n';
  EXPECT_EQ(open_error(no_manifest), open_error(b.bytes));
}

TEST(PackageHostile, ADamagedCentralDirectoryIsReportedBeforeTheManifest) {
  // The manifest is found by a quick scan of the central directory and read while the whole
  // directory is checked on another thread; the directory's fault must be the error reported.
  TempDir dir;
  PackageWriter w(testing::header("demo", "1.0.0"));
  w.add_bytes("x.y", text_bytes(5000, 1));  // its entry name, resources/x.y, has 13 bytes
  w.write(dir / "p.torshpkg", {});
  const std::vector<uint8_t> good = testing::read_file(dir / "p.torshpkg");
  const std::vector<ZipEntry> entries = read_zip_directory(*memory_source(good, "p"));
  // The central record named `name` (after the data, so not the local header's copy).
  const auto central_name = [&](const std::vector<uint8_t>& bytes, const std::string& name) {
    const auto from = bytes.begin() + static_cast<long>(entries.back().data_offset);
    const size_t at = std::search(from, bytes.end(), name.begin(), name.end()) - bytes.begin();
    EXPECT_LT(at, bytes.size()) << name;
    return at;
  };
  for (int round = 0; round < 20; ++round) {  // the two threads race differently each time
    // A second record named manifest.json, before the real one: the scan finds the resource's
    // bytes and they do not parse, but the duplicate is what is reported.
    auto duplicate = good;
    const size_t res = central_name(duplicate, "resources/x.y");
    std::memcpy(&duplicate[res], "manifest.json", 13);
    EXPECT_EQ(open_error(duplicate), "p: corrupt: duplicate entry \"manifest.json\"");
    // Another record the directory's check refuses (encryption flag), which the scan passes,
    // and the manifest damaged too.
    auto flagged = good;
    const ZipEntry& m = *std::find_if(entries.begin(), entries.end(),
                                      [](const ZipEntry& e) { return e.name == "manifest.json"; });
    flagged[m.data_offset + 20] ^= 1;
    flagged[central_name(flagged, "resources/x.y") - 46 + 8] |= 1;  // its flags
    EXPECT_EQ(open_error(flagged),
              "p: corrupt: resources/x.y: unsupported flags (encryption or data descriptor)");
  }
}

TEST(PackageHostile, EveryTruncationFailsCleanly) {
  const Built b = build({Codec::kZstd, 3});
  for (size_t n = 0; n < b.bytes.size(); n += 97) {
    std::vector<uint8_t> cut(b.bytes.begin(), b.bytes.begin() + static_cast<long>(n));
    EXPECT_EQ(testing::kind_of([&] { Package::open(memory_source(cut, "p")); }),
              ErrorKind::kCorrupt)
        << n;
  }
}

TEST(PackageHostile, RandomBitFlipsNeverCrashOrLeakBadBytes) {
  const Built b = build({Codec::kDeflate, 6});
  std::mt19937 rng(7);
  const auto good_a = text_bytes(4096 * 3, 1);
  for (int i = 0; i < 2000; ++i) {
    auto copy = b.bytes;
    copy[rng() % copy.size()] ^= static_cast<uint8_t>(1 << (rng() % 8));
    try {
      const auto pkg = Package::open(memory_source(copy, "p"));
      const FileNode* f = pkg->find("resources/a.bin");
      if (f == nullptr) continue;
      std::vector<uint8_t> buf(f->size);
      pkg->read(*f, 0, buf);
      EXPECT_EQ(buf, good_a) << "flip " << i << " returned wrong bytes without an error";
    } catch (const Error& e) {
      EXPECT_TRUE(e.kind() == ErrorKind::kCorrupt || e.kind() == ErrorKind::kUnsupported)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace torshpkg
