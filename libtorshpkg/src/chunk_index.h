// The per-resource chunk index: stored length and leaf hash of every chunk, kept in the ZIP entry
// ".torshpkg/index/<id>" and bound to the manifest by its SHA-256 (docs/FORMAT.md, "Chunk index").
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "torshpkg/manifest.h"
#include "torshpkg/sha256.h"

namespace torshpkg {

inline constexpr char kIndexMagic[8] = {'T', 'P', 'K', 'G', 'I', 'D', 'X', '1'};
inline constexpr size_t kIndexHeaderSize = 40;
inline constexpr size_t kIndexRecordSize = 36;

// Immutable once built; safe to share between threads.
struct ChunkIndex {
  uint32_t resource_id = 0;
  uint32_t chunk_size = 0;
  uint64_t plain_size = 0;
  uint64_t stored_size = 0;
  std::vector<uint32_t> stored_len;     // per chunk
  std::vector<uint64_t> stored_offset;  // per chunk, relative to the entry's data; derived
  std::vector<Digest> leaf;             // per chunk

  uint64_t chunk_count() const { return stored_len.size(); }
  uint32_t plain_len(uint64_t chunk) const {
    const uint64_t start = chunk * chunk_size;
    return static_cast<uint32_t>(std::min<uint64_t>(chunk_size, plain_size - start));
  }
  std::vector<uint8_t> serialize() const;
};

// Size in bytes of the serialized index of a resource with `chunk_count` chunks.
uint64_t index_bytes(uint64_t chunk_count);

// Parses an index and checks it against its manifest entry (ids, sizes, counts, stored lengths
// summing to the entry's size). Throws Error(kCorrupt) with a reason; `where` prefixes messages.
ChunkIndex parse_chunk_index(std::span<const uint8_t> bytes, const ResourceEntry& resource,
                             const std::string& file);

// The leaf hash of one chunk (docs/FORMAT.md, "Leaf hash").
Digest leaf_hash(std::span<const uint8_t, 16> package_id, uint32_t resource_id, uint64_t chunk,
                 uint32_t plain_len, std::span<const uint8_t> stored);

// Resources with blocks (format version 3, docs/FORMAT.md "Blocks"): the hash of each block of
// `plain` (the last may be short) into `out`, 32 bytes per block; and a chunk's leaf hash, over
// the hashes of its blocks.
inline constexpr size_t kBlockHashSize = 32;
void hash_blocks(std::span<const uint8_t> plain, uint32_t block_size, std::span<uint8_t> out);
Digest block_leaf_hash(std::span<const uint8_t, 16> package_id, uint32_t resource_id,
                       uint64_t chunk, uint32_t plain_len, std::span<const uint8_t> hashes);

}  // namespace torshpkg
