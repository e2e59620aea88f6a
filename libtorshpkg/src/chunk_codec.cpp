#include "chunk_codec.h"

#include <libdeflate.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <memory>
#include <vector>

#include "torshpkg/error.h"

namespace torshpkg {
namespace {

Error chunk_error(const std::string& reason) {
  return Error(ErrorKind::kCorrupt, reason);
}

constexpr lzma_check kXzCheck = LZMA_CHECK_CRC32;
constexpr size_t kXzHeaderSize = LZMA_STREAM_HEADER_SIZE;

// ---- zstd

struct ZstdContexts {
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx{ZSTD_createCCtx(), &ZSTD_freeCCtx};
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx{ZSTD_createDCtx(), &ZSTD_freeDCtx};
};

ZstdContexts& zstd_contexts() {
  thread_local ZstdContexts contexts;
  if (!contexts.cctx || !contexts.dctx) throw std::bad_alloc();
  return contexts;
}

void encode_zstd(int level, std::span<const uint8_t> plain, EncodedChunk& out) {
  ZSTD_CCtx* cctx = zstd_contexts().cctx.get();
  ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0);
  out.bytes.resize(ZSTD_compressBound(plain.size()));
  const size_t n =
      ZSTD_compress2(cctx, out.bytes.data(), out.bytes.size(), plain.data(), plain.size());
  if (ZSTD_isError(n)) throw Error(ErrorKind::kIo, std::string("zstd: ") + ZSTD_getErrorName(n));
  out.bytes.resize(n);
}

void decode_zstd(std::span<const uint8_t> stored, std::span<uint8_t> plain) {
  const unsigned long long content = ZSTD_getFrameContentSize(stored.data(), stored.size());
  if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN ||
      content != plain.size()) {
    throw chunk_error("zstd frame does not declare the chunk's size");
  }
  const size_t frame = ZSTD_findFrameCompressedSize(stored.data(), stored.size());
  if (ZSTD_isError(frame) || frame != stored.size()) {
    throw chunk_error("chunk is not exactly one zstd frame");
  }
  ZSTD_DCtx* dctx = zstd_contexts().dctx.get();
  ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
  ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 27);
  const size_t n =
      ZSTD_decompressDCtx(dctx, plain.data(), plain.size(), stored.data(), stored.size());
  if (ZSTD_isError(n)) throw chunk_error(std::string("zstd: ") + ZSTD_getErrorName(n));
  if (n != plain.size()) throw chunk_error("zstd frame decoded to the wrong size");
}

// ---- deflate

void encode_deflate(int level, std::span<const uint8_t> plain, bool last, EncodedChunk& out) {
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::bad_alloc();
  }
  std::unique_ptr<z_stream, decltype(&deflateEnd)> guard(&zs, &deflateEnd);
  // deflateBound covers a finished stream; a full-flush marker adds at most a few bytes.
  out.bytes.resize(deflateBound(&zs, static_cast<uLong>(plain.size())) + 16);
  zs.next_in = const_cast<Bytef*>(plain.data());
  zs.avail_in = static_cast<uInt>(plain.size());
  zs.next_out = out.bytes.data();
  zs.avail_out = static_cast<uInt>(out.bytes.size());
  const int rc = deflate(&zs, last ? Z_FINISH : Z_FULL_FLUSH);
  if ((last && rc != Z_STREAM_END) || (!last && rc != Z_OK) || zs.avail_in != 0) {
    throw Error(ErrorKind::kIo, "deflate failed");
  }
  out.bytes.resize(zs.total_out);
}

// libdeflate decodes whole buffers, which chunks are, about 1.6 times as fast as zlib's inflate
// (256 KiB chunks of bf16 weights: 315 against 195 MB/s). One decompressor per thread.
libdeflate_decompressor& deflate_decompressor() {
  thread_local const std::unique_ptr<libdeflate_decompressor,
                                     decltype(&libdeflate_free_decompressor)>
      d(libdeflate_alloc_decompressor(), &libdeflate_free_decompressor);
  if (!d) throw std::bad_alloc();
  return *d;
}

void decode_deflate(std::span<const uint8_t> stored, std::span<uint8_t> plain, bool last) {
  // A non-final chunk must end at a full-flush point: an empty stored block, 00 00 ff ff.
  static constexpr uint8_t kFlushMarker[4] = {0x00, 0x00, 0xff, 0xff};
  if (!last &&
      (stored.size() < 4 || std::memcmp(stored.data() + stored.size() - 4, kFlushMarker, 4))) {
    throw chunk_error("deflate chunk does not end at a full-flush point");
  }
  // libdeflate decodes complete streams, so a non-final chunk is followed by an empty final
  // block (fixed Huffman, BFINAL set: 03 00), which decodes to nothing.
  std::span<const uint8_t> input = stored;
  thread_local std::vector<uint8_t> closed;
  if (!last) {
    closed.assign(stored.begin(), stored.end());
    closed.push_back(0x03);
    closed.push_back(0x00);
    input = closed;
  }
  size_t used = 0;
  size_t decoded = 0;
  switch (libdeflate_deflate_decompress_ex(&deflate_decompressor(), input.data(), input.size(),
                                           plain.data(), plain.size(), &used, &decoded)) {
    case LIBDEFLATE_SUCCESS:
      break;
    case LIBDEFLATE_INSUFFICIENT_SPACE:
      throw chunk_error("deflate chunk decodes to more than its size");
    default:
      throw chunk_error(last ? "deflate: invalid data, or the last chunk does not end the stream"
                             : "deflate: invalid data");
  }
  if (decoded != plain.size()) throw chunk_error("deflate chunk decodes to the wrong size");
  // The stream must end exactly where the chunk does (where the appended block does).
  if (used != input.size()) {
    throw chunk_error(last ? "deflate chunk has trailing bytes"
                           : "deflate stream ends before its last chunk");
  }
}

// ---- xz

std::vector<uint8_t> xz_stream_header() {
  lzma_stream_flags flags{};
  flags.version = 0;
  flags.check = kXzCheck;
  std::vector<uint8_t> header(kXzHeaderSize);
  if (lzma_stream_header_encode(&flags, header.data()) != LZMA_OK) {
    throw Error(ErrorKind::kIo, "xz: cannot encode stream header");
  }
  return header;
}

void encode_xz(int level, std::span<const uint8_t> plain, bool first, EncodedChunk& out) {
  lzma_options_lzma options{};
  if (lzma_lzma_preset(&options, static_cast<uint32_t>(level))) {
    throw invalid_argument("xz: bad preset " + std::to_string(level));
  }
  lzma_filter filters[2] = {{LZMA_FILTER_LZMA2, &options}, {LZMA_VLI_UNKNOWN, nullptr}};
  lzma_block block{};
  block.version = 0;
  block.check = kXzCheck;
  block.filters = filters;
  out.bytes.clear();
  if (first) out.bytes = xz_stream_header();
  const size_t header = out.bytes.size();
  out.bytes.resize(header + lzma_block_buffer_bound(plain.size()));
  size_t pos = header;
  const lzma_ret rc = lzma_block_buffer_encode(&block, nullptr, plain.data(), plain.size(),
                                               out.bytes.data(), &pos, out.bytes.size());
  if (rc != LZMA_OK) throw Error(ErrorKind::kIo, "xz: block encoding failed");
  out.bytes.resize(pos);
  out.xz_unpadded_size = lzma_block_unpadded_size(&block);
}

void decode_xz(std::span<const uint8_t> stored, std::span<uint8_t> plain, ChunkPlace place) {
  size_t pos = 0;
  if (place.first) {
    const std::vector<uint8_t> header = xz_stream_header();
    if (stored.size() < header.size() || std::memcmp(stored.data(), header.data(), header.size())) {
      throw chunk_error("first xz chunk does not start with the expected stream header");
    }
    pos = header.size();
  }
  if (pos >= stored.size()) throw chunk_error("xz chunk has no block");
  lzma_filter filters[LZMA_FILTERS_MAX + 1];
  lzma_block block{};
  block.version = 1;
  block.check = kXzCheck;
  block.filters = filters;
  block.header_size = lzma_block_header_size_decode(stored[pos]);
  if (stored[pos] == 0 || block.header_size > stored.size() - pos) {
    throw chunk_error("bad xz block header");
  }
  if (lzma_block_header_decode(&block, nullptr, stored.data() + pos) != LZMA_OK) {
    throw chunk_error("bad xz block header");
  }
  struct FilterGuard {
    lzma_filter* f;
    ~FilterGuard() { lzma_filters_free(f, nullptr); }
  } guard{filters};
  // Only plain LZMA2 with a bounded dictionary: a hostile header cannot ask for much memory.
  if (filters[0].id != LZMA_FILTER_LZMA2 || filters[1].id != LZMA_VLI_UNKNOWN) {
    throw chunk_error("xz block uses filters other than LZMA2");
  }
  if (static_cast<const lzma_options_lzma*>(filters[0].options)->dict_size > (64u << 20)) {
    throw chunk_error("xz block dictionary larger than 64 MiB");
  }
  if (block.uncompressed_size != LZMA_VLI_UNKNOWN && block.uncompressed_size != plain.size()) {
    throw chunk_error("xz block declares the wrong size");
  }
  size_t out_pos = 0;
  pos += block.header_size;
  const size_t in_limit = stored.size();
  const lzma_ret rc = lzma_block_buffer_decode(&block, nullptr, stored.data(), &pos, in_limit,
                                               plain.data(), &out_pos, plain.size());
  if (rc != LZMA_OK) throw chunk_error("xz block does not decode");
  if (out_pos != plain.size()) throw chunk_error("xz block decodes to the wrong size");
  // Whatever follows the block: nothing, or (last chunk) the stream index and footer, which are
  // covered by the leaf hash and read by other tools only.
  if (!place.last && pos != stored.size()) throw chunk_error("xz chunk has trailing bytes");
  if (place.last && stored.size() - pos < LZMA_STREAM_HEADER_SIZE + 8) {
    throw chunk_error("last xz chunk lacks the stream index and footer");
  }
}

}  // namespace

void encode_chunk(const CodecSpec& spec, std::span<const uint8_t> plain, ChunkPlace place,
                  EncodedChunk& out) {
  out.xz_unpadded_size = 0;
  switch (spec.codec) {
    case Codec::kNone:
      out.bytes.assign(plain.begin(), plain.end());
      return;
    case Codec::kDeflate:
      return encode_deflate(spec.level, plain, place.last, out);
    case Codec::kZstd:
      return encode_zstd(spec.level, plain, out);
    case Codec::kXz:
      return encode_xz(spec.level, plain, place.first, out);
  }
  throw invalid_argument("unknown codec");
}

EncodedChunk encode_chunk(const CodecSpec& spec, std::span<const uint8_t> plain, ChunkPlace place) {
  EncodedChunk out;
  encode_chunk(spec, plain, place, out);
  return out;
}

std::vector<uint8_t> xz_stream_tail(std::span<const XzBlockRecord> blocks) {
  lzma_index* index = lzma_index_init(nullptr);
  if (index == nullptr) throw std::bad_alloc();
  std::unique_ptr<lzma_index, void (*)(lzma_index*)> guard(
      index, [](lzma_index* i) { lzma_index_end(i, nullptr); });
  for (const XzBlockRecord& b : blocks) {
    if (lzma_index_append(index, nullptr, b.unpadded_size, b.uncompressed_size) != LZMA_OK) {
      throw Error(ErrorKind::kIo, "xz: cannot build stream index");
    }
  }
  const lzma_vli index_size = lzma_index_size(index);
  std::vector<uint8_t> tail(index_size + LZMA_STREAM_HEADER_SIZE);
  size_t pos = 0;
  if (lzma_index_buffer_encode(index, tail.data(), &pos, index_size) != LZMA_OK) {
    throw Error(ErrorKind::kIo, "xz: cannot encode stream index");
  }
  lzma_stream_flags flags{};
  flags.version = 0;
  flags.check = kXzCheck;
  flags.backward_size = index_size;
  if (lzma_stream_footer_encode(&flags, tail.data() + pos) != LZMA_OK) {
    throw Error(ErrorKind::kIo, "xz: cannot encode stream footer");
  }
  return tail;
}

void decode_chunk(Codec codec, std::span<const uint8_t> stored, std::span<uint8_t> plain,
                  ChunkPlace place) {
  switch (codec) {
    case Codec::kNone:
      if (stored.size() != plain.size()) throw chunk_error("stored chunk has the wrong size");
      std::memcpy(plain.data(), stored.data(), plain.size());
      return;
    case Codec::kDeflate:
      return decode_deflate(stored, plain, place.last);
    case Codec::kZstd:
      return decode_zstd(stored, plain);
    case Codec::kXz:
      return decode_xz(stored, plain, place);
  }
  throw chunk_error("unknown codec");
}

uint64_t max_stored_chunk_size(uint64_t plain_size) {
  // Covers zstd and xz bounds (raw blocks: ~0.02% and ~0.3% overhead), deflate's stored blocks
  // (5 bytes per 16 KiB) and the xz stream header.
  return plain_size + plain_size / 64 + 4096;
}

}  // namespace torshpkg
