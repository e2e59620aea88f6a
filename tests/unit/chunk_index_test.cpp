#include "chunk_index.h"

#include <gtest/gtest.h>

#include "torshpkg/error.h"

namespace torshpkg {
namespace {

ResourceEntry entry_for(const ChunkIndex& idx) {
  ResourceEntry r;
  r.id = idx.resource_id;
  r.path = "w.bin";
  r.size = idx.plain_size;
  r.stored_size = idx.stored_size;
  r.chunk_size = idx.chunk_size;
  r.chunk_count = idx.chunk_count();
  r.compression = {Codec::kZstd, 3};
  return r;
}

ChunkIndex sample_index() {
  ChunkIndex idx;
  idx.resource_id = 7;
  idx.chunk_size = 4096;
  idx.plain_size = 4096 * 2 + 100;
  idx.stored_len = {1000, 2000, 50};
  idx.stored_size = 3050;
  idx.leaf.resize(3);
  for (size_t i = 0; i < 3; ++i) idx.leaf[i].fill(static_cast<uint8_t>(i + 1));
  return idx;
}

TEST(ChunkIndex, RoundTripsAndDerivesOffsets) {
  const ChunkIndex idx = sample_index();
  const auto bytes = idx.serialize();
  EXPECT_EQ(bytes.size(), index_bytes(3));
  const ChunkIndex back = parse_chunk_index(bytes, entry_for(idx), "t");
  EXPECT_EQ(back.stored_len, idx.stored_len);
  EXPECT_EQ(back.leaf, idx.leaf);
  EXPECT_EQ(back.stored_offset, (std::vector<uint64_t>{0, 1000, 3000}));
  EXPECT_EQ(back.plain_len(2), 100u);
}

TEST(ChunkIndex, RejectsDisagreementWithTheManifest) {
  const ChunkIndex idx = sample_index();
  const auto bytes = idx.serialize();
  ResourceEntry r = entry_for(idx);
  r.id = 8;
  EXPECT_THROW(parse_chunk_index(bytes, r, "t"), Error);
  r = entry_for(idx);
  r.stored_size = 3051;
  EXPECT_THROW(parse_chunk_index(bytes, r, "t"), Error);
  r = entry_for(idx);
  r.chunk_count = 2;
  EXPECT_THROW(parse_chunk_index(bytes, r, "t"), Error);
}

TEST(ChunkIndex, RejectsBadMagicLengthsAndSums) {
  ChunkIndex idx = sample_index();
  auto bytes = idx.serialize();
  bytes[0] ^= 1;
  EXPECT_THROW(parse_chunk_index(bytes, entry_for(idx), "t"), Error);
  idx.stored_len[1] = 0;
  idx.stored_size = 1050;
  EXPECT_THROW(parse_chunk_index(idx.serialize(), entry_for(idx), "t"), Error);
  idx = sample_index();
  idx.stored_len[0] = 0x7fffffff;  // far beyond any codec's expansion
  idx.stored_size = 0x7fffffffull + 2050;
  EXPECT_THROW(parse_chunk_index(idx.serialize(), entry_for(idx), "t"), Error);
  idx = sample_index();
  auto shortened = idx.serialize();
  shortened.pop_back();
  EXPECT_THROW(parse_chunk_index(shortened, entry_for(idx), "t"), Error);
}

TEST(LeafHash, BindsEveryInput) {
  uint8_t pid[16] = {1};
  const std::vector<uint8_t> data = {1, 2, 3};
  const Digest base = leaf_hash(pid, 1, 2, 3, data);
  uint8_t pid2[16] = {2};
  EXPECT_NE(base, leaf_hash(pid2, 1, 2, 3, data));
  EXPECT_NE(base, leaf_hash(pid, 2, 2, 3, data));
  EXPECT_NE(base, leaf_hash(pid, 1, 3, 3, data));
  EXPECT_NE(base, leaf_hash(pid, 1, 2, 4, data));
  EXPECT_NE(base, leaf_hash(pid, 1, 2, 3, std::vector<uint8_t>{1, 2, 4}));
  EXPECT_EQ(base, leaf_hash(pid, 1, 2, 3, data));
}

}  // namespace
}  // namespace torshpkg
