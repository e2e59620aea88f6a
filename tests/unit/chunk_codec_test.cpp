#include "chunk_codec.h"

#include <gtest/gtest.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "test_util.h"
#include "torshpkg/error.h"

namespace torshpkg {
namespace {

using testing::random_bytes;
using testing::text_bytes;

const CodecSpec kAll[] = {
    {Codec::kNone, 0}, {Codec::kDeflate, 6}, {Codec::kZstd, 3}, {Codec::kXz, 6}};

// Encodes `data` in chunks the way the writer does and returns the concatenated entry.
std::vector<uint8_t> encode_stream(const CodecSpec& spec, const std::vector<uint8_t>& data,
                                   size_t chunk, std::vector<std::vector<uint8_t>>* chunks) {
  std::vector<uint8_t> entry;
  std::vector<XzBlockRecord> blocks;
  const size_t count = (data.size() + chunk - 1) / chunk;
  for (size_t i = 0; i < count; ++i) {
    const size_t len = std::min(chunk, data.size() - i * chunk);
    EncodedChunk e =
        encode_chunk(spec, std::span(data).subspan(i * chunk, len), {i == 0, i + 1 == count});
    if (spec.codec == Codec::kXz) {
      blocks.push_back({e.xz_unpadded_size, len});
      if (i + 1 == count) {
        auto tail = xz_stream_tail(blocks);
        e.bytes.insert(e.bytes.end(), tail.begin(), tail.end());
      }
    }
    entry.insert(entry.end(), e.bytes.begin(), e.bytes.end());
    if (chunks) chunks->push_back(e.bytes);
  }
  return entry;
}

TEST(ChunkCodec, EveryChunkDecodesAloneToItsExactBytes) {
  const auto data = text_bytes(300'000);
  for (const CodecSpec& spec : kAll) {
    std::vector<std::vector<uint8_t>> chunks;
    encode_stream(spec, data, 65536, &chunks);
    for (size_t i = 0; i < chunks.size(); ++i) {
      const size_t len = std::min<size_t>(65536, data.size() - i * 65536);
      std::vector<uint8_t> out(len);
      decode_chunk(spec.codec, chunks[i], out, {i == 0, i + 1 == chunks.size()});
      EXPECT_TRUE(std::equal(out.begin(), out.end(), data.begin() + static_cast<long>(i * 65536)))
          << codec_name(spec.codec) << " chunk " << i;
    }
  }
}

TEST(ChunkCodec, ConcatenatedDeflateChunksAreOneValidStream) {
  const auto data = text_bytes(200'000);
  const auto entry = encode_stream({Codec::kDeflate, 6}, data, 16384, nullptr);
  std::vector<uint8_t> out(data.size() + 10);
  z_stream zs{};
  ASSERT_EQ(inflateInit2(&zs, -15), Z_OK);
  zs.next_in = const_cast<Bytef*>(entry.data());
  zs.avail_in = static_cast<uInt>(entry.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(inflate(&zs, Z_FINISH), Z_STREAM_END);
  EXPECT_EQ(zs.total_out, data.size());
  inflateEnd(&zs);
  out.resize(data.size());
  EXPECT_EQ(out, data);
}

TEST(ChunkCodec, ConcatenatedZstdFramesAreOneValidStream) {
  const auto data = text_bytes(200'000);
  const auto entry = encode_stream({Codec::kZstd, 3}, data, 16384, nullptr);
  std::vector<uint8_t> out(data.size());
  EXPECT_EQ(ZSTD_decompress(out.data(), out.size(), entry.data(), entry.size()), data.size());
  EXPECT_EQ(out, data);
}

TEST(ChunkCodec, XzChunksFormOneStreamWithOneBlockPerChunk) {
  const auto data = text_bytes(200'000);
  const auto entry = encode_stream({Codec::kXz, 1}, data, 16384, nullptr);
  std::vector<uint8_t> out(data.size());
  uint64_t memlimit = UINT64_MAX;
  size_t in_pos = 0, out_pos = 0;
  ASSERT_EQ(lzma_stream_buffer_decode(&memlimit, 0, nullptr, entry.data(), &in_pos, entry.size(),
                                      out.data(), &out_pos, out.size()),
            LZMA_OK);
  EXPECT_EQ(in_pos, entry.size());
  EXPECT_EQ(out, data);
}

TEST(ChunkCodec, RejectsChunksThatDecodeToTheWrongSize) {
  const auto data = random_bytes(10'000);
  for (const CodecSpec& spec : kAll) {
    const EncodedChunk e = encode_chunk(spec, data, {true, true});
    std::vector<uint8_t> shorter(data.size() - 1), longer(data.size() + 1);
    EXPECT_THROW(decode_chunk(spec.codec, e.bytes, shorter, {true, true}), Error)
        << codec_name(spec.codec);
    EXPECT_THROW(decode_chunk(spec.codec, e.bytes, longer, {true, true}), Error)
        << codec_name(spec.codec);
  }
}

TEST(ChunkCodec, RejectsTruncatedAndGarbageInput) {
  const auto data = text_bytes(50'000);
  for (const CodecSpec& spec : kAll) {
    if (spec.codec == Codec::kNone) continue;
    EncodedChunk e = encode_chunk(spec, data, {true, false});
    std::vector<uint8_t> out(data.size());
    auto truncated = e.bytes;
    truncated.resize(truncated.size() / 2);
    EXPECT_THROW(decode_chunk(spec.codec, truncated, out, {true, false}), Error)
        << codec_name(spec.codec);
    auto trailing = e.bytes;
    trailing.push_back(0);
    EXPECT_THROW(decode_chunk(spec.codec, trailing, out, {true, false}), Error)
        << codec_name(spec.codec);
    const auto garbage = random_bytes(e.bytes.size(), 9);
    EXPECT_THROW(decode_chunk(spec.codec, garbage, out, {true, false}), Error)
        << codec_name(spec.codec);
  }
}

TEST(ChunkCodec, DeflateChunkPositionMustMatchTheStream) {
  const auto data = text_bytes(10'000);
  const EncodedChunk middle = encode_chunk({Codec::kDeflate, 6}, data, {false, false});
  const EncodedChunk last = encode_chunk({Codec::kDeflate, 6}, data, {false, true});
  std::vector<uint8_t> out(data.size());
  EXPECT_THROW(decode_chunk(Codec::kDeflate, middle.bytes, out, {false, true}), Error);
  EXPECT_THROW(decode_chunk(Codec::kDeflate, last.bytes, out, {false, false}), Error);
}

TEST(ChunkCodec, XzFirstChunkNeedsTheStreamHeader) {
  const auto data = text_bytes(10'000);
  const EncodedChunk first = encode_chunk({Codec::kXz, 6}, data, {true, false});
  const EncodedChunk middle = encode_chunk({Codec::kXz, 6}, data, {false, false});
  std::vector<uint8_t> out(data.size());
  EXPECT_THROW(decode_chunk(Codec::kXz, middle.bytes, out, {true, false}), Error);
  EXPECT_THROW(decode_chunk(Codec::kXz, first.bytes, out, {false, false}), Error);
  decode_chunk(Codec::kXz, first.bytes, out, {true, false});
  EXPECT_EQ(out, data);
}

}  // namespace
}  // namespace torshpkg
