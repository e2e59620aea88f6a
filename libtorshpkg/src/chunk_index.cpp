#include "chunk_index.h"

#include <array>
#include <cstring>

#include "chunk_codec.h"
#include "little_endian.h"
#include "torshpkg/error.h"

namespace torshpkg {

namespace {
constexpr std::string_view kLeafTag{"torshpkg-leaf-v1\0", 17};
constexpr std::string_view kBlockLeafTag{"torshpkg-leaf-v2\0", 17};
constexpr std::string_view kBlockTag{"torshpkg-block-v1\0", 18};
}

uint64_t index_bytes(uint64_t chunk_count) {
  return kIndexHeaderSize + chunk_count * kIndexRecordSize;
}

std::vector<uint8_t> ChunkIndex::serialize() const {
  std::vector<uint8_t> out;
  out.reserve(index_bytes(chunk_count()));
  ByteWriter w(out);
  w.bytes(std::span(reinterpret_cast<const uint8_t*>(kIndexMagic), sizeof kIndexMagic));
  w.u32(resource_id);
  w.u32(chunk_size);
  w.u64(plain_size);
  w.u64(stored_size);
  w.u64(chunk_count());
  for (size_t i = 0; i < stored_len.size(); ++i) {
    w.u32(stored_len[i]);
    w.bytes(leaf[i]);
  }
  return out;
}

ChunkIndex parse_chunk_index(std::span<const uint8_t> bytes, const ResourceEntry& r,
                             const std::string& file) {
  const std::string where = r.index_entry_name() + ": ";
  if (bytes.size() != index_bytes(r.chunk_count)) throw corrupt(file, where + "wrong size");
  const uint8_t* p = bytes.data();
  if (std::memcmp(p, kIndexMagic, sizeof kIndexMagic) != 0)
    throw corrupt(file, where + "bad magic");
  ChunkIndex index;
  index.resource_id = load_u32(p + 8);
  index.chunk_size = load_u32(p + 12);
  index.plain_size = load_u64(p + 16);
  index.stored_size = load_u64(p + 24);
  const uint64_t count = load_u64(p + 32);
  if (index.resource_id != r.id || index.chunk_size != r.chunk_size || index.plain_size != r.size ||
      index.stored_size != r.stored_size || count != r.chunk_count) {
    throw corrupt(file, where + "header disagrees with the manifest");
  }
  index.stored_len.resize(count);
  index.stored_offset.resize(count);
  index.leaf.resize(count);
  uint64_t offset = 0;
  for (uint64_t i = 0; i < count; ++i) {
    const uint8_t* rec = p + kIndexHeaderSize + i * kIndexRecordSize;
    const uint32_t len = load_u32(rec);
    // The last xz chunk also carries the stream index (a few bytes per chunk).
    // Encrypted chunks carry a 16-byte tag.
    const uint32_t tag = r.encryption == Cipher::kNone ? 0 : 16;
    const uint64_t bound =
        max_stored_chunk_size(index.plain_len(i)) + tag + (i + 1 == count ? 64 + 16 * count : 0);
    if (len == 0 || len > bound)
      throw corrupt(file, where + "bad stored length of chunk " + std::to_string(i));
    if (r.compression.codec == Codec::kNone && len != index.plain_len(i) + tag) {
      throw corrupt(file, where + "stored chunk length differs from its plain length");
    }
    index.stored_len[i] = len;
    index.stored_offset[i] = offset;
    offset += len;
    std::memcpy(index.leaf[i].data(), rec + 4, 32);
  }
  if (offset != r.stored_size)
    throw corrupt(file, where + "chunk lengths do not add up to the entry size");
  return index;
}

namespace {
// Domain tag, package id, resource id, chunk number, plain length: a fixed 49-byte prefix,
// built on the stack since this runs for every chunk read.
Digest tagged_leaf(std::string_view tag, std::span<const uint8_t, 16> package_id,
                   uint32_t resource_id, uint64_t chunk, uint32_t plain_len,
                   std::span<const uint8_t> body) {
  std::array<uint8_t, 17 + 16 + 4 + 8 + 4> prefix;
  uint8_t* p = prefix.data();
  std::memcpy(p, tag.data(), tag.size());
  std::memcpy(p + 17, package_id.data(), 16);
  for (int i = 0; i < 4; ++i) p[33 + i] = static_cast<uint8_t>(resource_id >> (8 * i));
  for (int i = 0; i < 8; ++i) p[37 + i] = static_cast<uint8_t>(chunk >> (8 * i));
  for (int i = 0; i < 4; ++i) p[45 + i] = static_cast<uint8_t>(plain_len >> (8 * i));
  thread_local Sha256 h;
  h.update(prefix);
  h.update(body);
  return h.finish();
}
}  // namespace

Digest leaf_hash(std::span<const uint8_t, 16> package_id, uint32_t resource_id, uint64_t chunk,
                 uint32_t plain_len, std::span<const uint8_t> stored) {
  return tagged_leaf(kLeafTag, package_id, resource_id, chunk, plain_len, stored);
}

Digest block_leaf_hash(std::span<const uint8_t, 16> package_id, uint32_t resource_id,
                       uint64_t chunk, uint32_t plain_len, std::span<const uint8_t> hashes) {
  return tagged_leaf(kBlockLeafTag, package_id, resource_id, chunk, plain_len, hashes);
}

void hash_blocks(std::span<const uint8_t> plain, uint32_t block_size, std::span<uint8_t> out) {
  thread_local Sha256 h;
  for (size_t at = 0, k = 0; at < plain.size(); at += block_size, ++k) {
    h.update(kBlockTag);
    h.update(plain.subspan(at, std::min<size_t>(block_size, plain.size() - at)));
    const Digest d = h.finish();
    std::memcpy(out.data() + 32 * k, d.data(), 32);
  }
}

}  // namespace torshpkg
