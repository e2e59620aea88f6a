#include <fcntl.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <tuple>

#include "crc32.h"
#include "little_endian.h"
#include "test_util.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "zip_names.h"
#include "zip_reader.h"
#include "zip_writer.h"

namespace torshpkg {
namespace {

using testing::random_bytes;
using testing::TempDir;

struct Item {
  std::string name;
  std::vector<uint8_t> data;
  uint32_t align = 1;
};

std::vector<uint8_t> build_zip(const std::vector<Item>& items, bool zip64_local = false) {
  TempDir dir;
  const std::string path = dir / "t.zip";
  {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644));
    ZipWriter w(fd.get(), path, 0, 0x21);
    for (const Item& it : items) {
      w.begin_entry(it.name, 0, zip64_local, it.align);
      w.write(it.data);
      w.end_entry(crc32_of(it.data), it.data.size());
    }
    w.finish();
  }
  return testing::read_file(path);
}

std::vector<ZipEntry> parse(std::vector<uint8_t> bytes) {
  auto src = memory_source(std::move(bytes), "t.zip");
  return read_zip_directory(*src);
}

void expect_corrupt(std::vector<uint8_t> bytes, const std::string& why) {
  try {
    parse(std::move(bytes));
    ADD_FAILURE() << "accepted: " << why;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorrupt) << why << ": " << e.what();
  }
}

TEST(ZipArchive, Crc32MatchesZlibAtEveryLengthAndAlignment) {
  const std::string check = "123456789";
  EXPECT_EQ(crc32_of(std::span(reinterpret_cast<const uint8_t*>(check.data()), check.size())),
            0xCBF43926u);  // the CRC-32 (ISO-HDLC) check value
  EXPECT_EQ(crc32_of({}), 0u);
  const std::vector<uint8_t> data = random_bytes((3 << 20) + 77, 9);
  const std::span<const uint8_t> all(data);
  for (const size_t start : {0, 1, 3, 15, 64}) {
    for (const size_t len : {0, 1, 7, 16, 63, 64, 65, 255, 4096, 100'000, 3 << 20}) {
      const auto piece = all.subspan(start, len);
      EXPECT_EQ(crc32_of(piece), ::crc32(0, piece.data(), static_cast<uInt>(piece.size())))
          << start << "+" << len;
    }
  }
  // Continued and combined CRCs agree with the one over the whole.
  const uint32_t whole = crc32_of(all);
  const size_t cut = 1'000'003;
  EXPECT_EQ(crc32_of(all.subspan(cut), crc32_of(all.first(cut))), whole);
  EXPECT_EQ(combine_crc32(crc32_of(all.first(cut)), crc32_of(all.subspan(cut)), all.size() - cut),
            whole);
}

TEST(ZipArchive, WriterOutputReadsBackWithDataOffsets) {
  const auto bytes = build_zip({{"a.txt", {'h', 'i'}}, {"dir/b.bin", {1, 2, 3}, 4096}});
  const auto entries = parse(bytes);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].name, "a.txt");
  EXPECT_EQ(entries[1].name, "dir/b.bin");
  EXPECT_EQ(entries[1].data_offset % 4096, 0u);
  EXPECT_EQ(bytes[entries[1].data_offset], 1);
  EXPECT_EQ(entries[0].crc32, crc32_of(std::vector<uint8_t>{'h', 'i'}));
}

TEST(ZipArchive, Zip64LocalHeadersAndManyEntriesUseZip64Records) {
  std::vector<Item> items;
  for (int i = 0; i < 70000; ++i)
    items.push_back({"f" + std::to_string(i), {static_cast<uint8_t>(i)}});
  const auto bytes = build_zip(items, true);
  const auto entries = parse(bytes);
  ASSERT_EQ(entries.size(), 70000u);
  EXPECT_EQ(entries[69999].name, "f69999");
  EXPECT_EQ(bytes[entries[69999].data_offset], static_cast<uint8_t>(69999));
}

TEST(ZipArchive, ARecordFoundByScanningIsTheDirectorysEntry) {
  for (const bool zip64 : {false, true}) {
    std::vector<Item> items;
    for (int i = 0; i < 50; ++i) items.push_back({"f" + std::to_string(i), random_bytes(i * 7, i)});
    const auto bytes = build_zip(items, zip64);
    const auto src = memory_source(bytes, "t.zip");
    const CentralDirectoryBytes cd = read_central_directory_bytes(*src);
    const ZipDirectory dir = parse_central_directory(cd, "t.zip");
    for (const ZipEntry& e : dir.entries) {
      const auto found = find_central_record(cd, e.name, "t.zip");
      ASSERT_TRUE(found) << e.name;
      EXPECT_EQ(
          std::tie(found->name, found->method, found->flags, found->crc32, found->compressed_size,
                   found->uncompressed_size, found->local_header_offset),
          std::tie(e.name, e.method, e.flags, e.crc32, e.compressed_size, e.uncompressed_size,
                   e.local_header_offset));
    }
    EXPECT_FALSE(find_central_record(cd, "f50", "t.zip"));
    EXPECT_FALSE(find_central_record(cd, "f", "t.zip"));
    // A record before the one looked for that does not hold together ends the scan.
    CentralDirectoryBytes damaged = cd;
    damaged.bytes[0] ^= 1;  // the first record's signature
    EXPECT_FALSE(find_central_record(damaged, "f10", "t.zip"));
    damaged = cd;
    damaged.bytes[28] = 0xff;  // the first record's name runs past the directory
    damaged.bytes[29] = 0xff;
    EXPECT_FALSE(find_central_record(damaged, "f10", "t.zip"));
    damaged = cd;
    damaged.entries = 10;  // fewer records declared than there are
    EXPECT_FALSE(find_central_record(damaged, "f10", "t.zip"));
    EXPECT_TRUE(find_central_record(damaged, "f9", "t.zip"));
  }
}

TEST(ZipArchive, LocalHeadersOfSmallNeighboursComeInFewReads) {
  // Small entries, large ones (gaps past any read window) and aligned ones (a large extra field),
  // mixed: every data offset must be right, and the small entries' headers must be batched.
  std::vector<Item> items;
  for (int i = 0; i < 3000; ++i) {
    Item it{"small/" + std::to_string(i), std::vector<uint8_t>(100 + i % 300, static_cast<uint8_t>(i))};
    if (i % 1000 == 500) it.data.assign(3 << 20, static_cast<uint8_t>(i));  // 3 MiB
    if (i % 700 == 0) it.align = 4096;
    items.push_back(std::move(it));
  }
  const auto bytes = build_zip(items);
  const auto counting =
      std::make_shared<testing::ReadCountingSource>(memory_source(bytes, "t.zip"));
  const auto entries = read_zip_directory(*counting);
  ASSERT_EQ(entries.size(), items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    ASSERT_EQ(entries[i].name, items[i].name);
    ASSERT_EQ(entries[i].uncompressed_size, items[i].data.size());
    ASSERT_TRUE(std::equal(items[i].data.begin(), items[i].data.end(),
                           bytes.begin() + static_cast<long>(entries[i].data_offset)))
        << items[i].name;
    if (items[i].align == 4096) {
      EXPECT_EQ(entries[i].data_offset % 4096, 0u) << items[i].name;
    }
  }
  // Two reads per entry before batching; the large entries' data is never read.
  EXPECT_LT(counting->reads.size(), 100u);
  EXPECT_LT(counting->bytes.load(), 8u << 20);
}

TEST(ZipArchive, DamageInABatchedHeaderIsFound) {
  std::vector<Item> items;
  for (int i = 0; i < 50; ++i) items.push_back({"f" + std::to_string(i), {1, 2, 3}});
  const auto bytes = build_zip(items);
  const auto entries = parse(bytes);
  for (const size_t which : {0, 1, 25, 49}) {
    auto bad = bytes;
    bad[entries[which].local_header_offset + 8] ^= 1;  // the method
    expect_corrupt(bad, "method of entry " + std::to_string(which));
    bad = bytes;
    bad[entries[which].local_header_offset + 30] ^= 0x20;  // the name
    expect_corrupt(bad, "name of entry " + std::to_string(which));
  }
}

TEST(ZipArchive, RejectsTruncationAnywhere) {
  const auto bytes = build_zip({{"a", {1, 2, 3}}, {"b", {4, 5}}});
  for (size_t n = 0; n < bytes.size(); ++n) {
    expect_corrupt(std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(n)),
                   "truncated to " + std::to_string(n));
  }
}

TEST(ZipArchive, RejectsBitFlipsInHeaders) {
  const auto bytes = build_zip({{"a", {1, 2, 3}}, {"b", {4, 5}}});
  const auto entries = parse(bytes);
  const auto in_data = [&](size_t i) {
    for (const ZipEntry& e : entries) {
      if (i >= e.data_offset && i < e.data_offset + e.compressed_size) return true;
    }
    return false;
  };
  // Every header byte is load-bearing: each of its bit flips is refused as corrupt. A flip in
  // entry data (whose integrity the chunk hashes check) changes nothing the directory says.
  size_t refused = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto copy = bytes;
      copy[i] ^= static_cast<uint8_t>(1 << bit);
      try {
        const auto flipped = parse(copy);
        EXPECT_TRUE(in_data(i)) << "header byte " << i << " bit " << bit << " accepted";
        ASSERT_EQ(flipped.size(), entries.size());
        for (size_t k = 0; k < entries.size(); ++k) {
          EXPECT_EQ(flipped[k].name, entries[k].name);
          EXPECT_EQ(flipped[k].data_offset, entries[k].data_offset);
          EXPECT_EQ(flipped[k].crc32, entries[k].crc32);
        }
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::kCorrupt);
        EXPECT_FALSE(in_data(i)) << "data byte " << i << " refused: " << e.what();
        ++refused;
      }
    }
  }
  EXPECT_EQ(refused, 8 * (bytes.size() - 5));  // all but the 5 data bytes
}

TEST(ZipArchive, RejectsLocalHeaderThatDisagreesWithCentral) {
  auto bytes = build_zip({{"a", {1, 2, 3}}});
  bytes[8] = 8;  // local method: deflate
  expect_corrupt(bytes, "method mismatch");
  bytes = build_zip({{"a", {1, 2, 3}}});
  bytes[14] ^= 0xff;  // local CRC
  expect_corrupt(bytes, "crc mismatch");
}

// Patches the central directory record of the first entry: returns its offset.
size_t central_offset(const std::vector<uint8_t>& bytes) {
  const size_t eocd = bytes.size() - 22;
  return load_u32(&bytes[eocd + 16]);
}

TEST(ZipArchive, RejectsSymlinkEntries) {
  auto bytes = build_zip({{"link", {'x'}}});
  const size_t cd = central_offset(bytes);
  const uint32_t attrs = (0120777u) << 16;
  for (int i = 0; i < 4; ++i) bytes[cd + 38 + i] = static_cast<uint8_t>(attrs >> (8 * i));
  expect_corrupt(bytes, "symlink");
}

TEST(ZipArchive, RejectsUnsafeNames) {
  for (const std::string name : {"/abs", "../up", "a/../b", "a\\b", "a//b", "./a", "dir/"}) {
    // Same length as "xxxx..." so offsets stay valid: build with a placeholder, then patch both
    // headers' name bytes.
    std::string placeholder(name.size(), 'x');
    auto bytes = build_zip({{placeholder, {1}}});
    const size_t cd = central_offset(bytes);
    std::copy(name.begin(), name.end(), bytes.begin() + 30);
    std::copy(name.begin(), name.end(), bytes.begin() + static_cast<long>(cd + 46));
    expect_corrupt(bytes, "name " + name);
  }
  std::string nul_name = "ab";
  auto bytes = build_zip({{"ab", {1}}});
  bytes[31] = 0;
  bytes[central_offset(bytes) + 47] = 0;
  expect_corrupt(bytes, "NUL in name");
}

TEST(ZipArchive, RejectsDuplicateNames) {
  expect_corrupt(build_zip({{"same", {1}}, {"same", {2}}}), "duplicate");
  // Apart, in different ascending runs of names, and one run descending name by name.
  expect_corrupt(build_zip({{"a", {1}}, {"m", {1}}, {"z", {1}}, {"b", {1}}, {"m", {2}}}),
                 "duplicate in the second run");
  expect_corrupt(build_zip({{"d", {1}}, {"c", {1}}, {"b", {1}}, {"a", {1}}, {"c", {2}}}),
                 "duplicate among descending names");
}

TEST(ZipArchive, NameIndexSortsWhateverTheOrderOfEntries) {
  // Runs of ascending names as packages have them (data, then indexes numbered 0..n that sort
  // as text), and a descending tail: the index must come out sorted all the same.
  std::vector<Item> items;
  for (const char* name : {"res/a", "res/b", "res/c", "idx/0", "idx/1", "idx/10", "idx/2", "idx/9",
                           "manifest.json", "zz", "yy", "xx", "b"}) {
    items.push_back({name, {1}});
  }
  auto src = memory_source(build_zip(items), "t.zip");
  const ZipDirectory dir = read_central_directory(*src);
  ASSERT_EQ(dir.by_name.size(), items.size());
  std::vector<std::string> names;
  for (const uint32_t i : dir.by_name) names.push_back(dir.entries[i].name);
  std::vector<std::string> expected;
  for (const Item& it : items) expected.push_back(it.name);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names, expected);
}

TEST(ZipArchive, RejectsOverlappingEntries) {
  auto bytes = build_zip({{"a", {1, 2, 3}}, {"b", {4, 5}}});
  const size_t cd = central_offset(bytes);
  const size_t second = cd + 46 + 1;  // after the first record (name "a", no extra)
  // Point b's local header offset at a's.
  for (int i = 0; i < 4; ++i) bytes[second + 42 + i] = 0;
  expect_corrupt(bytes, "overlap");
}

TEST(ZipArchive, RejectsAbsurdEntryCounts) {
  auto bytes = build_zip({{"a", {1}}});
  const size_t eocd = bytes.size() - 22;
  bytes[eocd + 8] = bytes[eocd + 10] = 0xfe;
  bytes[eocd + 9] = bytes[eocd + 11] = 0xff;
  expect_corrupt(bytes, "count");
}

TEST(ZipArchive, RejectsTrailingAndLeadingGarbage) {
  auto bytes = build_zip({{"a", {1}}});
  auto prefixed = bytes;
  prefixed.insert(prefixed.begin(), 16, 0);
  expect_corrupt(prefixed, "prefix");
  auto suffixed = bytes;
  suffixed.push_back(0);
  expect_corrupt(suffixed, "suffix");
}

TEST(ZipPaths, NormalizedPathRules) {
  for (const char* ok : {"a", "a/b", "model.safetensors", "d\xc3\xa9j\xc3\xa0/vu", "a b/c-d_e.f"}) {
    EXPECT_TRUE(is_normalized_path(ok)) << ok;
  }
  for (const char* bad : {"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "a\\b", "a\x01",
                          "\xff", "\xc0\xaf"}) {
    EXPECT_FALSE(is_normalized_path(bad)) << bad;
  }
  EXPECT_FALSE(is_normalized_path(std::string(300, 'a')));
}

}  // namespace
}  // namespace torshpkg
