// The converters' parsers and the strided copy, on hand-built inputs (the integration tests run
// them on files the real producers made).
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <numeric>
#include <random>

#include "materialize.h"
#include "numpy_sources.h"
#include "pickle.h"
#include "source_zip.h"
#include "test_util.h"
#include "torch_pickle.h"
#include "torshpkg/error.h"

namespace torshpkg::convert {
namespace {

using Kind = PickleValue::Kind;

Pickle parse(const std::string& bytes) {
  return read_pickle(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
                     "t.pkl");
}

ErrorKind kind_of_parse(const std::string& bytes) {
  return testing::kind_of([&] { parse(bytes); });
}

TEST(Pickle, RebuildsContainersScalarsAndSharedValues) {
  // protocol 2: {'a': [1, -2, 3.5, None, True], 'b': <the same list>, 'c': (b'x', 2**70)}
  const std::vector<uint8_t> bytes = {
      0x80, 2,    '}',  'q',  0,    '(',  'X', 1,    0,    0,   0, 'a',  ']',  'q', 1,   '(', 'K',
      1,    'J',  0xfe, 0xff, 0xff, 0xff, 'G', 0x40, 0x0c, 0,   0, 0,    0,    0,   0,   'N', 0x88,
      'e',  'X',  1,    0,    0,    0,    'b', 'h',  1,    'X', 1, 0,    0,    0,   'c', 'C', 1,
      'x',  0x8a, 9,    0,    0,    0,    0,   0,    0,    0,   0, 0x40, 0x86, 'u', '.'};
  const std::string p(bytes.begin(), bytes.end());
  const Pickle pk = parse(p);
  ASSERT_EQ(pk.root->kind, Kind::kDict);
  ASSERT_EQ(pk.root->entries.size(), 3u);
  const PickleRef list = pk.root->entries[0].second;
  ASSERT_EQ(list->kind, Kind::kList);
  ASSERT_EQ(list->items.size(), 5u);
  EXPECT_EQ(list->items[0]->integer, 1);
  EXPECT_EQ(list->items[1]->integer, -2);
  EXPECT_DOUBLE_EQ(list->items[2]->real, 3.5);
  EXPECT_EQ(list->items[3]->kind, Kind::kNone);
  EXPECT_TRUE(list->items[4]->boolean);
  EXPECT_EQ(pk.root->entries[1].second, list);  // the memo shares the value
  const PickleRef tuple = pk.root->entries[2].second;
  ASSERT_EQ(tuple->kind, Kind::kTuple);
  EXPECT_EQ(tuple->items[0]->text, "x");
  EXPECT_EQ(tuple->items[1]->kind, Kind::kBigInt);
}

TEST(Pickle, Protocol0TextOpcodesAndGlobalsAsData) {
  // (lp0\nI12\naS'hi'\np1\nacos\nsystem\n(S'echo'\ntRp2\na.
  const Pickle pk = parse("(lp0\nI12\naS'hi'\np1\nacos\nsystem\n(S'echo'\ntRp2\na.");
  ASSERT_EQ(pk.root->kind, Kind::kList);
  ASSERT_EQ(pk.root->items.size(), 3u);
  EXPECT_EQ(pk.root->items[0]->integer, 12);
  EXPECT_EQ(pk.root->items[1]->text, "hi");
  const PickleRef call = pk.root->items[2];
  EXPECT_TRUE(call->is_call_of("os", "system"));  // recorded, never called
  EXPECT_EQ(call->args->items[0]->text, "echo");
}

TEST(Pickle, CyclesAreValuesNotLoops) {
  const Pickle pk =
      parse(std::string("\x80\x02]q\x00h\x00"
                        "a.",
                        9));  // contains itself
  ASSERT_EQ(pk.root->items.size(), 1u);
  EXPECT_EQ(pk.root->items[0], pk.root);
  EXPECT_TRUE(find_torch_tensors(pk.root, "t.pkl").empty());
}

TEST(Pickle, MalformedInputIsCorruptAndRegistryOpcodesUnsupported) {
  for (const std::string& bad :
       {std::string("\x80\x02"), std::string("\x80\x02t."), std::string("\x80\x02h\x01."),
        std::string("\x80\x02\xff."), std::string("\x80\x09N."), std::string("\x80\x02NN."),
        std::string("\x80\x02X\xff\xff\xff\x7f"), std::string("I1x\n."),
        std::string("\x80\x02(u.", 5)}) {
    EXPECT_EQ(kind_of_parse(bad), ErrorKind::kCorrupt) << ::testing::PrintToString(bad);
  }
  EXPECT_EQ(kind_of_parse("\x80\x02\x82\x01."), ErrorKind::kUnsupported);
  EXPECT_EQ(kind_of_parse("\x80\x05\x97."), ErrorKind::kUnsupported);
  // Past a limit is not damage: unsupported (exit 1), with the limit named.
  const auto limit_of = [](const std::string& bytes, const PickleLimits& limits) {
    try {
      read_pickle(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), "t.pkl",
                  limits);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUnsupported) << e.what();
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  PickleLimits tight;
  tight.max_values = 10;
  const std::string many = "\x80\x02" + std::string(20, 'N');
  EXPECT_NE(limit_of(many, tight).find("more than 10 values"), std::string::npos);
  PickleLimits small;
  small.max_bytes = 64 << 10;  // 64 KiB: a 100 KiB string is over it
  const std::string big =
      "\x80\x02X" + std::string("\xa0\x86\x01\x00", 4) + std::string(100'000, 'a') + ".";
  EXPECT_NE(limit_of(big, small).find("more than 65536 bytes of values"), std::string::npos);
  EXPECT_EQ(limit_of(big, PickleLimits{}), "accepted");
}

TEST(StridedView, GathersTransposedOffsetAndBroadcastViews) {
  std::vector<uint8_t> storage(24 * 4);
  for (uint32_t i = 0; i < 24; ++i) std::memcpy(storage.data() + 4 * i, &i, 4);
  const RangeReader read = [&](uint64_t offset, std::span<uint8_t> out) {
    std::memcpy(out.data(), storage.data() + offset, out.size());
  };
  const auto gather = [&](uint64_t offset, std::vector<uint64_t> shape,
                          std::vector<uint64_t> stride) {
    StridedView v{4, 24, offset, shape, stride};
    std::vector<uint8_t> bytes;
    stream_view(
        v, read, [&](std::span<const uint8_t> b) { bytes.insert(bytes.end(), b.begin(), b.end()); },
        "t");
    std::vector<uint32_t> out(bytes.size() / 4);
    std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  };
  EXPECT_EQ(gather(0, {2, 3}, {1, 2}), (std::vector<uint32_t>{0, 2, 4, 1, 3, 5}));  // transposed
  EXPECT_EQ(gather(5, {2, 2}, {6, 1}), (std::vector<uint32_t>{5, 6, 11, 12}));      // slice
  EXPECT_EQ(gather(7, {3, 2}, {0, 1}), (std::vector<uint32_t>{7, 8, 7, 8, 7, 8}));  // expand
  EXPECT_EQ(gather(23, {}, {}), (std::vector<uint32_t>{23}));                       // scalar
  EXPECT_TRUE(gather(0, {0, 5}, {5, 1}).empty());
  EXPECT_EQ(testing::kind_of([&] { gather(20, {2, 3}, {3, 1}); }), ErrorKind::kCorrupt);
  EXPECT_EQ(testing::kind_of([&] {
              gather(0, {UINT64_MAX, 2}, {UINT64_MAX, 1});
            }),
            ErrorKind::kCorrupt);
}

// Views over spans larger than the budget are gathered a chunk at a time; the result must be the
// same bytes as an element-by-element walk, from reads and pieces within the budget.
TEST(StridedView, ChunkedGatherMatchesAnElementWalkWithinItsBudget) {
  constexpr uint64_t kStorage = 5000;
  std::vector<uint8_t> storage(kStorage * 2);
  for (uint64_t i = 0; i < storage.size(); ++i) storage[i] = static_cast<uint8_t>(i * 7 + i / 251);
  size_t largest_read = 0, largest_piece = 0;
  uint64_t bytes_read = 0;
  const RangeReader read = [&](uint64_t offset, std::span<uint8_t> out) {
    ASSERT_LE(offset + out.size(), storage.size());
    std::memcpy(out.data(), storage.data() + offset, out.size());
    largest_read = std::max(largest_read, out.size());
    bytes_read += out.size();
  };
  GatherBudget tiny;
  tiny.span_bytes = 64;
  tiny.chunk_bytes = 96;
  tiny.read_bytes = 40;
  const auto walk = [&](const StridedView& v) {
    std::vector<uint8_t> out;
    const uint64_t n = *element_count(v.shape);
    std::vector<uint64_t> index(v.shape.size(), 0);
    for (uint64_t e = 0; e < n; ++e) {
      uint64_t at = v.offset;
      for (size_t i = 0; i < index.size(); ++i) at += index[i] * v.stride[i];
      for (unsigned b = 0; b < v.element_size; ++b) {
        out.push_back(storage[at * v.element_size + (v.byte_swap ? v.element_size - 1 - b : b)]);
      }
      for (size_t i = index.size(); i-- > 0;) {
        if (++index[i] < v.shape[i]) break;
        index[i] = 0;
      }
    }
    return out;
  };
  std::mt19937 rng(19);
  int chunked = 0;
  for (int round = 0; round < 400; ++round) {
    StridedView v;
    v.element_size = rng() % 2 ? 2 : 1;
    v.storage_elements = kStorage * 2 / v.element_size;
    const size_t rank = 1 + rng() % 4;
    for (size_t i = 0; i < rank; ++i) {
      v.shape.push_back(1 + rng() % 9);
      const uint64_t pick = rng() % 6;
      v.stride.push_back(pick == 0 ? 0 : pick == 1 ? 1 : rng() % 60);
    }
    if (round % 5 == 0) {  // Fortran order
      uint64_t step = 1;
      for (size_t i = 0; i < rank; ++i) v.stride[i] = step, step *= v.shape[i];
    }
    v.byte_swap = v.element_size == 2 && rng() % 2;
    uint64_t last = 0;
    for (size_t i = 0; i < rank; ++i) last += (v.shape[i] - 1) * v.stride[i];
    if (last >= v.storage_elements) continue;
    v.offset = rng() % (v.storage_elements - last);
    if (is_row_major(v)) continue;
    const bool large = (last + 1) * v.element_size > tiny.span_bytes;
    chunked += large;
    largest_read = largest_piece = 0;
    bytes_read = 0;
    std::vector<uint8_t> got;
    stream_view(
        v, read,
        [&](std::span<const uint8_t> b) {
          largest_piece = std::max(largest_piece, b.size());
          got.insert(got.end(), b.begin(), b.end());
        },
        "t", tiny);
    ASSERT_EQ(got, walk(v)) << "round " << round;
    if (large) {
      EXPECT_LE(largest_read, std::max<size_t>(tiny.read_bytes, v.element_size)) << round;
      EXPECT_LE(largest_piece, tiny.chunk_bytes) << round;
    }
  }
  EXPECT_GT(chunked, 100);
  // A Fortran-ordered array is read once, in runs down its columns: chunks of 10 rows, so a
  // read of 10 elements per column per chunk.
  StridedView f{2, 4000, 0, {40, 100}, {1, 40}};
  GatherBudget rows = tiny;
  rows.chunk_bytes = 2000;
  bytes_read = 0;
  size_t reads = 0;
  std::vector<uint8_t> got;
  stream_view(
      f,
      [&](uint64_t offset, std::span<uint8_t> out) {
        ++reads;
        read(offset, out);
      },
      [&](std::span<const uint8_t> b) { got.insert(got.end(), b.begin(), b.end()); }, "t", rows);
  EXPECT_EQ(got, walk(f));
  EXPECT_EQ(bytes_read, 8000u);
  EXPECT_EQ(reads, 400u);
}

TEST(StridedView, SwapsBigEndianElements) {
  const std::vector<uint8_t> be = {0, 0, 0, 1, 0, 0, 1, 0};
  StridedView v{4, 2, 0, {2}, {1}, true, 0};
  std::vector<uint8_t> out;
  stream_view(
      v,
      [&](uint64_t offset, std::span<uint8_t> o) {
        std::memcpy(o.data(), be.data() + offset, o.size());
      },
      [&](std::span<const uint8_t> b) { out.insert(out.end(), b.begin(), b.end()); }, "t");
  EXPECT_EQ(out, (std::vector<uint8_t>{1, 0, 0, 0, 0, 1, 0, 0}));
}

std::vector<uint8_t> npy(const std::string& dict, size_t data_bytes, int version = 1) {
  std::string header = dict;
  const size_t prefix = version == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(version), 0};
  for (size_t i = 0; i < prefix - 8; ++i)
    out.push_back(static_cast<uint8_t>(header.size() >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 7);
  return out;
}

NpyHeader parse_npy(const std::vector<uint8_t>& bytes) {
  return read_npy_header(
      [&](uint64_t offset, std::span<uint8_t> out) {
        if (offset + out.size() > bytes.size()) throw corrupt("t.npy", "past end");
        std::memcpy(out.data(), bytes.data() + offset, out.size());
      },
      bytes.size(), "t.npy");
}

TEST(NpyHeader, ReadsEveryVersionOrderAndByteOrder) {
  const auto h = parse_npy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24));
  EXPECT_EQ(h.dtype, Dtype::kF32);
  EXPECT_EQ(h.shape, (std::vector<uint64_t>{2, 3}));
  EXPECT_FALSE(h.fortran_order);
  const auto f = parse_npy(npy("{'descr': '>c16', 'fortran_order': True, 'shape': (3,), }", 48, 2));
  EXPECT_TRUE(f.split_complex);
  EXPECT_TRUE(f.big_endian);
  EXPECT_TRUE(f.fortran_order);
  const auto s = parse_npy(npy("{'descr': '|b1', 'fortran_order': False, 'shape': (), }", 1, 3));
  EXPECT_EQ(s.dtype, Dtype::kBool);
  EXPECT_TRUE(s.shape.empty());
}

TEST(NpyHeader, RefusesWhatSafetensorsCannotHoldAndBadSizes) {
  const auto kind = [](const std::vector<uint8_t>& b) {
    return testing::kind_of([&] { parse_npy(b); });
  };
  EXPECT_EQ(kind(npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16)),
            ErrorKind::kUnsupported);
  EXPECT_EQ(kind(npy("{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }", 24)),
            ErrorKind::kUnsupported);
  // A structured (record) dtype is valid NumPy with no tensor equivalent, like a string array.
  EXPECT_EQ(kind(npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8)),
            ErrorKind::kUnsupported);
  EXPECT_EQ(kind(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 23)),
            ErrorKind::kCorrupt);
  EXPECT_EQ(
      kind(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 4)),
      ErrorKind::kCorrupt);
  EXPECT_EQ(kind({0x93, 'N', 'U', 'M', 'P', 'Y', 9, 0, 0, 0}), ErrorKind::kUnsupported);
}

// A ZIP made the way torch.save makes them: data descriptors after each member, and one
// deflated member as numpy.savez_compressed makes them.
std::vector<uint8_t> zip_with_descriptors() {
  struct Member {
    std::string name;
    std::vector<uint8_t> data;
    bool deflate;
  };
  std::vector<Member> members = {{"a/data.pkl", {1, 2, 3}, false},
                                 {"a/data/0", testing::text_bytes(5000), true}};
  std::vector<uint8_t> out, cd;
  const auto le = [](std::vector<uint8_t>& v, uint64_t x, int n) {
    for (int i = 0; i < n; ++i) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
  };
  for (const Member& m : members) {
    std::vector<uint8_t> stored = m.data;
    if (m.deflate) {
      stored.resize(compressBound(static_cast<uLong>(m.data.size())) + 64);
      z_stream z{};
      deflateInit2(&z, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
      z.next_in = const_cast<uint8_t*>(m.data.data());
      z.avail_in = static_cast<uInt>(m.data.size());
      z.next_out = stored.data();
      z.avail_out = static_cast<uInt>(stored.size());
      deflate(&z, Z_FINISH);
      stored.resize(z.total_out);
      deflateEnd(&z);
    }
    const uint32_t crc =
        static_cast<uint32_t>(crc32(0, m.data.data(), static_cast<uInt>(m.data.size())));
    const uint64_t local = out.size();
    le(out, 0x04034b50, 4);
    le(out, 20, 2);
    le(out, 0x0808, 2);
    le(out, m.deflate ? 8 : 0, 2);
    le(out, 0, 4);
    le(out, 0, 4);  // crc, sizes zero: in the descriptor
    le(out, 0, 4);
    le(out, 0, 4);
    le(out, m.name.size(), 2);
    le(out, 0, 2);
    out.insert(out.end(), m.name.begin(), m.name.end());
    out.insert(out.end(), stored.begin(), stored.end());
    le(out, 0x08074b50, 4);
    le(out, crc, 4);
    le(out, stored.size(), 4);
    le(out, m.data.size(), 4);
    le(cd, 0x02014b50, 4);
    le(cd, 20, 2);
    le(cd, 20, 2);
    le(cd, 0x0808, 2);
    le(cd, m.deflate ? 8 : 0, 2);
    le(cd, 0, 4);
    le(cd, crc, 4);
    le(cd, stored.size(), 4);
    le(cd, m.data.size(), 4);
    le(cd, m.name.size(), 2);
    le(cd, 0, 2);
    le(cd, 0, 2);
    le(cd, 0, 2);
    le(cd, 0, 2);
    le(cd, 0, 4);
    le(cd, local, 4);
    cd.insert(cd.end(), m.name.begin(), m.name.end());
  }
  const uint64_t cd_at = out.size();
  out.insert(out.end(), cd.begin(), cd.end());
  le(out, 0x06054b50, 4);
  le(out, 0, 4);
  le(out, members.size(), 2);
  le(out, members.size(), 2);
  le(out, cd.size(), 4);
  le(out, cd_at, 4);
  le(out, 0, 2);
  return out;
}

TEST(SourceZip, ReadsDataDescriptorMembersStoredAndDeflated) {
  const SourceZip zip(memory_source(zip_with_descriptors(), "t.zip"));
  ASSERT_EQ(zip.entries().size(), 2u);
  EXPECT_EQ(zip.read_all(*zip.find("a/data.pkl")), (std::vector<uint8_t>{1, 2, 3}));
  const SourceZipEntry& d = *zip.find("a/data/0");
  EXPECT_EQ(zip.read_all(d), testing::text_bytes(5000));
  std::vector<uint8_t> part(100);
  zip.read(d, 4000, part);  // a range of a deflated member: inflated from its start
  const auto all = testing::text_bytes(5000);
  EXPECT_TRUE(std::equal(part.begin(), part.end(), all.begin() + 4000));
  EXPECT_EQ(testing::kind_of([&] { zip.read_all(d, 100); }), ErrorKind::kInvalidArgument);
  EXPECT_EQ(zip.find("missing"), nullptr);
}

TEST(SourceZip, DamageIsCorrupt) {
  auto bytes = zip_with_descriptors();
  auto flipped = bytes;
  flipped[40] ^= 0xFF;  // inside the deflated member's stream or its name: CRC or structure
  const auto kind = [](std::vector<uint8_t> b) {
    return testing::kind_of([&] {
      const SourceZip zip(memory_source(std::move(b), "t.zip"));
      for (const auto& e : zip.entries()) zip.read_all(e);
    });
  };
  EXPECT_EQ(kind(flipped), ErrorKind::kCorrupt);
  EXPECT_EQ(kind(std::vector<uint8_t>(bytes.begin(), bytes.end() - 5)), ErrorKind::kCorrupt);
  EXPECT_EQ(kind({'P', 'K'}), ErrorKind::kCorrupt);
}

}  // namespace
}  // namespace torshpkg::convert
