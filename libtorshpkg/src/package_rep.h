// What a Package holds once open, shared by its opening (package_open.cpp) and its reads
// (package.cpp).
#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "chunk_index.h"
#include "crypto.h"
#include "torshpkg/error.h"
#include "torshpkg/package.h"
#include "zip_reader.h"

namespace torshpkg {

struct __attribute__((visibility("hidden"))) Package::Rep {
  std::shared_ptr<const ByteSource> source;
  std::shared_ptr<const ChunkStore> store;  // verified chunks kept across packages; may be null
  std::string manifest_bytes;
  mutable std::once_flag digest_once;  // manifest_digest, computed on first use
  mutable std::string digest;
  Manifest manifest;
  std::array<uint8_t, 16> package_id{};
  std::vector<FileNode> files;
  std::vector<std::string> dependency_bytes;
  std::vector<Signature> signatures;
  // Per resource: its key when the package is unlocked and the resource encrypted.
  bool unlocked = false;
  std::vector<Key256> resource_keys;
  // Per resource: its data entry and index entry, and the index loaded on first use.
  std::vector<ZipEntry> data_entries;
  std::vector<ZipEntry> index_entries;
  std::vector<ZipEntry> blocks_entries;  // for resources with blocks; empty entries otherwise
  std::unique_ptr<std::once_flag[]> index_once;
  mutable std::vector<std::unique_ptr<ChunkIndex>> indexes;

  const std::string& name() const { return source->name(); }
  const ChunkIndex& index(uint32_t resource) const;
  // Reads a chunk's stored bytes into `stored` (sized to them) and checks its leaf hash.
  void read_stored(const ResourceEntry& r, const ChunkIndex& idx, uint64_t chunk,
                   std::span<uint8_t> stored, bool uncached = false) const;
  // How each resource's chunks become plain bytes, decided when the package is opened: read in
  // place (stored, not encrypted), or read into scratch memory, then decrypted and/or decoded.
  enum class ChunkPath : uint8_t { kPlain, kDecoded };
  std::vector<ChunkPath> paths;
  // Reads, verifies, decrypts and decodes a chunk into `plain` along its resource's path;
  // `scratch` ends up holding the stored bytes of a decoded chunk.
  void read_chunk_into(const ResourceEntry& r, const ChunkIndex& idx, uint64_t chunk,
                       std::span<uint8_t> plain, std::vector<uint8_t>& scratch,
                       bool uncached = false) const;
  // A resource with blocks: reads plain bytes [from, from + out.size()) of a chunk, reading and
  // checking only the chunk's block hashes (against its leaf) and the blocks the range touches.
  void read_blocks(const ResourceEntry& r, const ChunkIndex& idx, uint64_t chunk, uint64_t from,
                   std::span<uint8_t> out) const;
  // Reads the block hashes of a chunk and checks them against its leaf hash (from the source's
  // copy `copy` on, the next ones when they do not match).
  void read_block_hashes(const ResourceEntry& r, const ChunkIndex& idx, uint64_t chunk,
                         std::vector<uint8_t>& hashes, uint32_t copy = 0) const;
  [[noreturn]] void chunk_fault(const ResourceEntry& r, uint64_t chunk,
                                const std::string& what) const {
    throw corrupt(name(), r.entry_name() + ": chunk " + std::to_string(chunk) + " " + what);
  }
};

// A stored entry's bytes, CRC-checked; `spare` more bytes of capacity are allocated after them.
std::string read_entry_bytes(const ByteSource& src, const ZipEntry& e, uint64_t limit,
                             size_t spare = 0);

}  // namespace torshpkg
