// Encoding and decoding one chunk of a resource.
//
// A resource's entry is one standard stream of its ZIP method, cut at chunk boundaries so that
// each chunk decodes alone (docs/FORMAT.md, "Chunking"):
//   none     the plain bytes;
//   deflate  raw deflate from a fresh compressor, ending in a full flush (the last in a final
//   block); zstd     one zstd frame with its content size; xz       one xz block (LZMA2, CRC32
//   check); the first chunk also holds the 12-byte stream
//            header, the last also holds the stream's index and footer.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "torshpkg/codec.h"

namespace torshpkg {

struct ChunkPlace {
  bool first = true;
  bool last = true;
};

struct EncodedChunk {
  std::vector<uint8_t> bytes;
  // xz only: the block's unpadded size, which the stream index records.
  uint64_t xz_unpadded_size = 0;
};

// Thread-safe: codec contexts are per thread. The second form reuses `out`'s buffer.
EncodedChunk encode_chunk(const CodecSpec& spec, std::span<const uint8_t> plain, ChunkPlace place);
void encode_chunk(const CodecSpec& spec, std::span<const uint8_t> plain, ChunkPlace place,
                  EncodedChunk& out);

// For xz: the stream's index and footer for blocks with these sizes, appended to the last chunk.
struct XzBlockRecord {
  uint64_t unpadded_size;
  uint64_t uncompressed_size;
};
std::vector<uint8_t> xz_stream_tail(std::span<const XzBlockRecord> blocks);

// Decodes `stored` into exactly `plain.size()` bytes. Throws Error(kCorrupt) with a reason (no
// file name; the caller adds context) when the bytes are not one valid unit that decodes to
// exactly that many bytes. Never writes outside `plain`. Thread-safe.
void decode_chunk(Codec codec, std::span<const uint8_t> stored, std::span<uint8_t> plain,
                  ChunkPlace place);

// The largest stored size a chunk of `plain_size` bytes can have for any codec, excluding the xz
// stream tail. Used to bound what a reader will allocate.
uint64_t max_stored_chunk_size(uint64_t plain_size);

}  // namespace torshpkg
