// libFuzzer target: decoding one chunk of any codec.
// Input layout: byte 0 selects the codec (low 2 bits) and the chunk's place (bits 2-3); bytes
// 1-3 give the plain length (little-endian, at most 16 MiB); the rest is the stored chunk.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "chunk_codec.h"
#include "torshpkg/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const auto codec = static_cast<torshpkg::Codec>(data[0] & 3);
  const torshpkg::ChunkPlace place{(data[0] & 4) != 0, (data[0] & 8) != 0};
  const size_t plain_len = data[1] | (data[2] << 8) | (data[3] << 16);
  if (plain_len == 0) return 0;
  std::vector<uint8_t> plain(plain_len);
  try {
    torshpkg::decode_chunk(codec, std::span(data + 4, size - 4), plain, place);
  } catch (const torshpkg::Error&) {
  }
  return 0;
}
