#include "torshpkg/package.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "chunk_codec.h"
#include "chunk_index.h"
#include "crc32.h"
#include "crypto.h"
#include "package_rep.h"
#include "thread_pool.h"
#include "torshpkg/chunk_store.h"
#include "torshpkg/error.h"
#include "torshpkg/sha256.h"
#include "zip_reader.h"

namespace torshpkg {

const ChunkIndex& Package::Rep::index(uint32_t id) const {
  std::call_once(index_once[id], [&] {
    const ResourceEntry& r = manifest.resources[id];
    const ZipEntry& e = index_entries[id];
    if (e.uncompressed_size != index_bytes(r.chunk_count)) {
      throw corrupt(name(), e.name + ": size disagrees with the manifest");
    }
    const std::string bytes = read_entry_bytes(*source, e, e.uncompressed_size);
    const auto data = std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    if (to_hex(sha256(data)) != r.index_sha256) {
      throw corrupt(name(), e.name + ": digest does not match the manifest");
    }
    indexes[id] = std::make_unique<ChunkIndex>(parse_chunk_index(data, r, name()));
  });
  return *indexes[id];
}

// A chunk's name in a ChunkStore (docs/FORMAT.md 7.2): its bytes' alone, through the block
// hashes, so that other packages holding the same chunk name it alike.
static Digest chunk_content_key(uint32_t block_size, std::span<const uint8_t> block_hashes) {
  static constexpr std::string_view kTag{"torshpkg-content-v1\0", 20};
  const std::array<uint8_t, 4> size = {
      static_cast<uint8_t>(block_size), static_cast<uint8_t>(block_size >> 8),
      static_cast<uint8_t>(block_size >> 16), static_cast<uint8_t>(block_size >> 24)};
  Sha256 h;
  h.update(kTag);
  h.update(size);
  h.update(block_hashes);
  return h.finish();
}

// Bytes that fail their hash are read again from each other copy the source has (a web origin
// and its mirrors) before the read fails; a file has one copy.
void Package::Rep::read_stored(const ResourceEntry& r, const ChunkIndex& idx, uint64_t chunk,
                               std::span<uint8_t> stored, bool uncached) const {
  const uint64_t at = data_entries[r.id].data_offset + idx.stored_offset[chunk];
  const bool aligned = at % kUncachedAlignment == 0 &&
                       reinterpret_cast<uintptr_t>(stored.data()) % kUncachedAlignment == 0;
  const uint32_t plain_len = idx.plain_len(chunk);
  std::optional<Digest> key;
  if (store && r.block_size != 0) {
    // The chunk's block hashes (checked against its leaf) name it in the store, and check what
    // the store gives.
    thread_local std::vector<uint8_t> expected, got;
    read_block_hashes(r, idx, chunk, expected);
    key = chunk_content_key(r.block_size, expected);
    if (store->get(*key, stored)) {
      got.resize(expected.size());
      hash_blocks(stored, r.block_size, got);
      if (got == expected) return;
    }
  }
  for (uint32_t copy = 0;; ++copy) {
    source->read_at(at, stored, {.uncached = uncached && aligned, .copy = copy});
    Digest leaf;
    if (r.block_size != 0) {
      // The leaf covers the hashes of the chunk's blocks: computed here from its bytes, they
      // need not be read.
      thread_local std::vector<uint8_t> hashes;
      hashes.resize((plain_len + r.block_size - 1) / r.block_size * kBlockHashSize);
      hash_blocks(stored, r.block_size, hashes);
      leaf = block_leaf_hash(package_id, r.id, chunk, plain_len, hashes);
    } else {
      leaf = leaf_hash(package_id, r.id, chunk, plain_len, stored);
    }
    if (leaf == idx.leaf[chunk]) {
      if (key) store->put(*key, stored);
      return;
    }
    if (copy + 1 >= source->copies()) {
      // Nothing of a failed chunk may reach the caller, also when it was read in place.
      std::memset(stored.data(), 0, stored.size());
      chunk_fault(r, chunk, "hash mismatch");
    }
  }
}

void Package::Rep::read_block_hashes(const ResourceEntry& r, const ChunkIndex& idx, uint64_t chunk,
                                     std::vector<uint8_t>& hashes, uint32_t copy) const {
  const uint32_t plain_len = idx.plain_len(chunk);
  const uint64_t first = chunk * (r.chunk_size / r.block_size);
  hashes.resize((plain_len + r.block_size - 1) / r.block_size * kBlockHashSize);
  for (;; ++copy) {
    source->read_at(blocks_entries[r.id].data_offset + first * kBlockHashSize, hashes,
                    {.copy = copy});
    if (block_leaf_hash(package_id, r.id, chunk, plain_len, hashes) == idx.leaf[chunk]) return;
    if (copy + 1 >= source->copies()) {
      chunk_fault(r, chunk, "block hashes do not match its leaf hash");
    }
  }
}

void Package::Rep::read_blocks(const ResourceEntry& r, const ChunkIndex& idx, uint64_t chunk,
                               uint64_t from, std::span<uint8_t> out) const {
  const uint32_t bs = r.block_size;
  const uint32_t plain_len = idx.plain_len(chunk);
  const uint64_t first = from / bs;
  const uint64_t end = std::min<uint64_t>((from + out.size() + bs - 1) / bs * bs, plain_len);
  const uint64_t at = data_entries[r.id].data_offset + idx.stored_offset[chunk];
  // Both reads are small and random: the disk gets the blocks' request while the hashes come.
  source->advise(at + first * bs, end - first * bs, Advice::kWillNeed);
  thread_local std::vector<uint8_t> hashes, bytes;
  read_block_hashes(r, idx, chunk, hashes);
  bytes.resize(end - first * bs);
  std::array<uint8_t, kBlockHashSize> got;
  for (uint32_t copy = 0;; ++copy) {
    source->read_at(at + first * bs, bytes, {.copy = copy});
    uint64_t bad = UINT64_MAX;
    for (uint64_t b = first; b * bs < end && bad == UINT64_MAX; ++b) {
      const auto block =
          std::span(bytes).subspan((b - first) * bs, std::min<uint64_t>(bs, end - b * bs));
      hash_blocks(block, bs, got);
      if (std::memcmp(got.data(), hashes.data() + b * kBlockHashSize, kBlockHashSize) != 0) bad = b;
    }
    if (bad == UINT64_MAX) break;
    if (copy + 1 >= source->copies()) {
      std::memset(bytes.data(), 0, bytes.size());
      chunk_fault(r, chunk, "block " + std::to_string(bad) + " hash mismatch");
    }
  }
  std::memcpy(out.data(), bytes.data() + (from - first * bs), out.size());
}

void Package::Rep::read_chunk_into(const ResourceEntry& r, const ChunkIndex& idx, uint64_t chunk,
                                   std::span<uint8_t> plain, std::vector<uint8_t>& scratch,
                                   bool uncached) const {
  if (paths[r.id] == ChunkPath::kPlain) {
    read_stored(r, idx, chunk, plain, uncached);  // read and hashed in place
    return;
  }
  const bool encrypted = r.encryption != Cipher::kNone;
  if (encrypted && !unlocked) {
    throw Error(ErrorKind::kWrongKey, name() + ": " + r.entry_name() +
                                          " is encrypted: give the password file or key file");
  }
  scratch.resize(idx.stored_len[chunk]);
  read_stored(r, idx, chunk, scratch);
  std::span<const uint8_t> encoded = scratch;
  thread_local std::vector<uint8_t> opened;
  if (encrypted) {
    const bool last = chunk + 1 == idx.chunk_count();
    if (!aead_decrypt(r.encryption, resource_keys[r.id], chunk_nonce(chunk, last),
                      chunk_aad(package_id, r.id, chunk, idx.chunk_count(), idx.plain_len(chunk)),
                      scratch, opened)) {
      chunk_fault(r, chunk, "does not decrypt (wrong key or forged chunk)");
    }
    encoded = opened;
  }
  try {
    decode_chunk(r.compression.codec, encoded, plain, {chunk == 0, chunk + 1 == idx.chunk_count()});
  } catch (const Error& e) {
    throw corrupt(name(), r.entry_name() + ": chunk " + std::to_string(chunk) + ": " + e.what());
  }
}

Package::Package(std::unique_ptr<Rep> rep) : rep_(std::move(rep)) {}
Package::~Package() = default;

const std::string& Package::file_name() const {
  return rep_->name();
}
const Manifest& Package::manifest() const {
  return rep_->manifest;
}
const std::string& Package::manifest_bytes() const {
  return rep_->manifest_bytes;
}
const std::vector<FileNode>& Package::files() const {
  return rep_->files;
}
const std::vector<Signature>& Package::signatures() const {
  return rep_->signatures;
}
const std::string& Package::manifest_digest() const {
  std::call_once(rep_->digest_once,
                 [&] { rep_->digest = to_hex(sha256(std::string_view(rep_->manifest_bytes))); });
  return rep_->digest;
}

bool Package::encrypted() const {
  return !rep_->manifest.key_slots.empty();
}
bool Package::unlocked() const {
  return rep_->unlocked;
}

const FileNode* Package::find(std::string_view path) const {
  const std::vector<FileNode>& files = rep_->files;
  const auto it =
      std::lower_bound(files.begin(), files.end(), path,
                       [](const FileNode& f, std::string_view p) { return f.path < p; });
  return it == files.end() || it->path != path ? nullptr : &*it;
}

void Package::read_chunk(const ResourceEntry& r, uint64_t chunk, std::span<uint8_t> out,
                         bool uncached) const {
  const ChunkIndex& idx = rep_->index(r.id);
  if (chunk >= idx.chunk_count()) throw invalid_argument("chunk number out of range");
  if (out.size() != idx.plain_len(chunk)) throw invalid_argument("chunk buffer of the wrong size");
  thread_local std::vector<uint8_t> scratch;
  rep_->read_chunk_into(r, idx, chunk, out, scratch, uncached);
}

bool Package::stored_plain(const ResourceEntry& r) const {
  return rep_->paths[r.id] == Rep::ChunkPath::kPlain;
}

void Package::will_need(const ResourceEntry& r, uint64_t first, uint64_t count) const {
  const ChunkIndex& idx = rep_->index(r.id);
  const uint64_t end = std::min(first + count, idx.chunk_count());
  if (first >= end) return;
  const uint64_t from = idx.stored_offset[first];
  const uint64_t to = idx.stored_offset[end - 1] + idx.stored_len[end - 1];
  rep_->source->advise(rep_->data_entries[r.id].data_offset + from, to - from, Advice::kWillNeed);
}

void Package::set_chunk_store(std::shared_ptr<const ChunkStore> store) {
  rep_->store = std::move(store);
}

void Package::reads_are_planned() const {
  rep_->source->advise(0, 0, Advice::kPlanned);
}

size_t Package::read(const FileNode& f, uint64_t offset, std::span<uint8_t> out) const {
  if (offset >= f.size || out.empty()) return 0;
  const size_t len = static_cast<size_t>(std::min<uint64_t>(out.size(), f.size - offset));
  if (f.kind != FileNode::Kind::kResource) {
    const std::string& bytes =
        f.kind == FileNode::Kind::kManifest ? rep_->manifest_bytes : rep_->dependency_bytes[f.item];
    std::memcpy(out.data(), bytes.data() + offset, len);
    return len;
  }
  const ResourceEntry& r = rep_->manifest.resources[f.item];
  const ChunkIndex& idx = rep_->index(r.id);
  const uint64_t cs = r.chunk_size;
  const uint64_t first = offset / cs;
  const uint64_t last = (offset + len - 1) / cs;
  const auto do_chunk = [&](size_t k) {
    const uint64_t chunk = first + k;
    const uint64_t chunk_start = chunk * cs;
    const uint32_t plain_len = idx.plain_len(chunk);
    const uint64_t from = std::max(offset, chunk_start);
    const uint64_t to = std::min<uint64_t>(offset + len, chunk_start + plain_len);
    const std::span<uint8_t> dest = out.subspan(from - offset, to - from);
    thread_local std::vector<uint8_t> scratch;
    if (from == chunk_start && to - from == plain_len) {
      rep_->read_chunk_into(r, idx, chunk, dest, scratch);
    } else if (r.block_size != 0) {
      rep_->read_blocks(r, idx, chunk, from - chunk_start, dest);
    } else {
      thread_local std::vector<uint8_t> whole;
      whole.resize(plain_len);
      rep_->read_chunk_into(r, idx, chunk, whole, scratch);
      std::memcpy(dest.data(), whole.data() + (from - chunk_start), dest.size());
    }
  };
  const size_t count = last - first + 1;
  if (count == 1) {
    do_chunk(0);
  } else {
    shared_thread_pool().parallel_for(count, do_chunk);
  }
  return len;
}

void Package::verify(bool full, const ProgressFn& progress) const {
  const Manifest& m = rep_->manifest;
  for (const ResourceEntry& r : m.resources) rep_->index(r.id);
  if (!full) return;
  uint64_t total = 0, done = 0;
  for (const ResourceEntry& r : m.resources) total += r.size;
  for (const ResourceEntry& r : m.resources) {
    const ChunkIndex& idx = rep_->index(r.id);
    // The ZIP CRC-32 covers what the entry holds: the plain bytes, or an encrypted resource's
    // stored bytes. Encrypted chunks of a locked package can only be hash-checked.
    const bool encrypted = r.encryption != Cipher::kNone;
    const bool decode = !encrypted || rep_->unlocked;
    Sha256 plain_hash;
    uint32_t crc = 0;
    const uint64_t batch = chunks_per_batch(r.chunk_size, 64u << 20);
    std::vector<std::vector<uint8_t>> plain(batch), stored(batch);
    for (uint64_t base = 0; base < idx.chunk_count(); base += batch) {
      const uint64_t count = std::min(batch, idx.chunk_count() - base);
      shared_thread_pool().parallel_for(count, [&](size_t k) {
        if (decode) {
          plain[k].resize(idx.plain_len(base + k));
          rep_->read_chunk_into(r, idx, base + k, plain[k], stored[k]);
        } else {
          stored[k].resize(idx.stored_len[base + k]);
          rep_->read_stored(r, idx, base + k, stored[k]);
        }
      });
      for (uint64_t k = 0; k < count; ++k) {
        if (encrypted) {
          crc = crc32_of(stored[k], crc);
        } else {
          plain_hash.update(plain[k]);
          crc = crc32_of(plain[k], crc);
        }
        done += idx.plain_len(base + k);
      }
      if (progress) progress(done, total);
    }
    if (!encrypted && to_hex(plain_hash.finish()) != r.sha256) {
      throw corrupt(rep_->name(),
                    r.entry_name() + ": SHA-256 of the content does not match the manifest");
    }
    if (crc != rep_->data_entries[r.id].crc32) {
      throw corrupt(rep_->name(), r.entry_name() + ": ZIP CRC-32 does not match the content");
    }
    if (r.block_size != 0) {
      // Every chunk's block hashes against its leaf, and the blocks entry's CRC-32.
      std::vector<uint8_t> hashes;
      uint32_t blocks_crc = 0;
      for (uint64_t c = 0; c < idx.chunk_count(); ++c) {
        rep_->read_block_hashes(r, idx, c, hashes);
        blocks_crc = crc32_of(hashes, blocks_crc);
      }
      if (blocks_crc != rep_->blocks_entries[r.id].crc32) {
        throw corrupt(rep_->name(), r.blocks_entry_name() + ": ZIP CRC-32 does not match");
      }
    }
  }
}

}  // namespace torshpkg
