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
#include "thread_pool.h"
#include "torshpkg/error.h"
#include "torshpkg/sha256.h"
#include "zip_reader.h"
#include "zip_writer.h"

namespace torshpkg {

namespace {
constexpr std::string_view kManifestEntry = "manifest.json";
constexpr uint64_t kMaxDependencyFile = 1u << 20;

// A stored entry's bytes, CRC-checked; `spare` more bytes of capacity are allocated after them.
std::string read_entry_bytes(const ByteSource& src, const ZipEntry& e, uint64_t limit,
                             size_t spare = 0) {
  if (e.method != 0) throw corrupt(src.name(), e.name + ": must be stored uncompressed");
  if (e.uncompressed_size > limit) throw corrupt(src.name(), e.name + ": too large");
  std::string bytes;
  bytes.reserve(e.uncompressed_size + spare);
  bytes.resize(e.uncompressed_size);
  src.read_at(e.data_offset, std::span(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size()));
  const auto data = std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (crc32_of(data) != e.crc32) throw corrupt(src.name(), e.name + ": CRC-32 mismatch");
  return bytes;
}
}  // namespace

struct __attribute__((visibility("hidden"))) Package::Rep {
  std::shared_ptr<const ByteSource> source;
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
  // Reads the block hashes of a chunk and checks them against its leaf hash.
  void read_block_hashes(const ResourceEntry& r, const ChunkIndex& idx, uint64_t chunk,
                         std::vector<uint8_t>& hashes) const;
  [[noreturn]] void chunk_fault(const ResourceEntry& r, uint64_t chunk,
                                const std::string& what) const {
    throw corrupt(name(), r.entry_name() + ": chunk " + std::to_string(chunk) + " " + what);
  }
};

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

void Package::Rep::read_stored(const ResourceEntry& r, const ChunkIndex& idx, uint64_t chunk,
                               std::span<uint8_t> stored, bool uncached) const {
  const uint64_t at = data_entries[r.id].data_offset + idx.stored_offset[chunk];
  const bool aligned = at % kUncachedAlignment == 0 &&
                       reinterpret_cast<uintptr_t>(stored.data()) % kUncachedAlignment == 0;
  source->read_at(at, stored, {.uncached = uncached && aligned});
  const uint32_t plain_len = idx.plain_len(chunk);
  Digest leaf;
  if (r.block_size != 0) {
    // The leaf covers the hashes of the chunk's blocks: computed here from its bytes, they need
    // not be read.
    thread_local std::vector<uint8_t> hashes;
    hashes.resize((plain_len + r.block_size - 1) / r.block_size * kBlockHashSize);
    hash_blocks(stored, r.block_size, hashes);
    leaf = block_leaf_hash(package_id, r.id, chunk, plain_len, hashes);
  } else {
    leaf = leaf_hash(package_id, r.id, chunk, plain_len, stored);
  }
  if (leaf != idx.leaf[chunk]) {
    // Nothing of a failed chunk may reach the caller, also when it was read in place.
    std::memset(stored.data(), 0, stored.size());
    chunk_fault(r, chunk, "hash mismatch");
  }
}

void Package::Rep::read_block_hashes(const ResourceEntry& r, const ChunkIndex& idx, uint64_t chunk,
                                     std::vector<uint8_t>& hashes) const {
  const uint32_t plain_len = idx.plain_len(chunk);
  const uint64_t first = chunk * (r.chunk_size / r.block_size);
  hashes.resize((plain_len + r.block_size - 1) / r.block_size * kBlockHashSize);
  source->read_at(blocks_entries[r.id].data_offset + first * kBlockHashSize, hashes);
  if (block_leaf_hash(package_id, r.id, chunk, plain_len, hashes) != idx.leaf[chunk]) {
    chunk_fault(r, chunk, "block hashes do not match its leaf hash");
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
  source->read_at(at + first * bs, bytes);
  std::array<uint8_t, kBlockHashSize> got;
  for (uint64_t b = first; b * bs < end; ++b) {
    const auto block =
        std::span(bytes).subspan((b - first) * bs, std::min<uint64_t>(bs, end - b * bs));
    hash_blocks(block, bs, got);
    if (std::memcmp(got.data(), hashes.data() + b * kBlockHashSize, kBlockHashSize) != 0) {
      std::memset(bytes.data(), 0, bytes.size());
      chunk_fault(r, chunk, "block " + std::to_string(b) + " hash mismatch");
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

std::unique_ptr<Package> Package::open(const std::string& path, const Secret* secret) {
  return open(open_file_source(path), secret);
}

std::unique_ptr<Package> Package::open(std::shared_ptr<const ByteSource> source,
                                       const Secret* secret) {
  auto rep = std::make_unique<Rep>();
  rep->source = std::move(source);
  const ByteSource& src = *rep->source;
  const std::string& file = src.name();
  // The central directory is checked on a second thread, and then every local header, while
  // this one reads and parses the manifest, found by a quick scan of the directory's records
  // (on a cold cache all of it mostly waits for the disk, so the manifest is asked for first).
  // Faults are reported in the order one step after the other would have found them: the
  // directory's, the local headers', the manifest's.
  CentralDirectoryBytes cd = read_central_directory_bytes(src);
  std::optional<ZipEntry> manifest_zip = find_central_record(cd, kManifestEntry, file);
  if (manifest_zip && manifest_zip->local_header_offset < cd.offset) {
    const uint64_t at = manifest_zip->local_header_offset;
    const uint64_t most =
        kZipLocalHeaderMax + std::min(manifest_zip->compressed_size, ManifestLimits::kMaxBytes);
    src.advise(at, std::min(cd.offset - at, most), Advice::kWillNeed);
  }
  // Entries, and their positions sorted by name for lookups in O(log n) whatever the names are.
  ZipDirectory dir;
  std::exception_ptr structure_fault;
  const auto check_structure = [&]() noexcept {
    try {
      dir = parse_central_directory(cd, file);
      check_local_headers(src, dir.entries, dir.cd_offset);
    } catch (...) {
      structure_fault = std::current_exception();
    }
  };
  const auto read_manifest = [&] {
    manifest_zip->data_offset = read_local_header(src, *manifest_zip, cd.offset);
    // Read with room for the parser's padding, so that it parses the bytes in place.
    rep->manifest_bytes =
        read_entry_bytes(src, *manifest_zip, ManifestLimits::kMaxBytes, kManifestParsePadding);
    rep->manifest = parse_padded_manifest(rep->manifest_bytes, file);
  };
  std::exception_ptr manifest_fault;
  {
    std::jthread checker;
    bool checked = false;
    try {
      checker = std::jthread(check_structure);
    } catch (const std::system_error&) {
      check_structure();  // no thread to be had: check here, first
      checked = true;
    }
    if (manifest_zip && !(checked && structure_fault)) {
      try {
        read_manifest();
      } catch (...) {
        manifest_fault = std::current_exception();
      }
    }
  }  // the checker is joined here
  if (structure_fault) std::rethrow_exception(structure_fault);
  std::vector<uint8_t>().swap(cd.bytes);
  std::vector<ZipEntry>& entries = dir.entries;
  const std::vector<uint32_t>& by_name = dir.by_name;
  std::vector<bool> listed(entries.size());
  // The entry named `name`, which becomes listed; nullptr when there is none. Packages list
  // the resources' data entries in manifest order, and their index entries likewise, so the
  // entry after the last one found of the same kind (`next`) is tried first.
  const auto find = [&](std::string_view name, size_t& next) -> const ZipEntry* {
    size_t found = next;
    if (found >= entries.size() || entries[found].name != name) {
      const auto it = std::lower_bound(
          by_name.begin(), by_name.end(), name,
          [&](uint32_t a, std::string_view b) { return entries[a].name < b; });
      if (it == by_name.end() || entries[*it].name != name) return nullptr;
      found = *it;
    }
    listed[found] = true;
    next = found + 1;
    return &entries[found];
  };
  size_t next_data = 0;
  size_t next_index = 0;
  size_t next_other = 0;
  if (find(kManifestEntry, next_other) == nullptr) throw corrupt(file, "no manifest.json");
  // With the names unique, the scan found that same record (it gives up only on records the
  // directory's check refuses).
  if (!manifest_zip) throw corrupt(file, "manifest.json: central directory record not found");
  if (manifest_fault) std::rethrow_exception(manifest_fault);
  const Manifest& m = rep->manifest;
  from_hex(m.package_id, rep->package_id);
  // Every entry carries the time the writer derives from the signed "created".
  {
    uint32_t dos_time = 0;
    uint16_t dos_date = 0;
    dos_time_of(m.created, dos_time, dos_date);
    for (const ZipEntry& e : entries) {
      if (e.dos_time != dos_time || e.dos_date != dos_date) {
        throw corrupt(file, e.name + ": entry time differs from the manifest's \"created\"");
      }
    }
  }

  // The entry set must be exactly what the manifest lists.
  const auto need = [&](const std::string& name, size_t& next) -> const ZipEntry& {
    const ZipEntry* e = find(name, next);
    if (e == nullptr) throw corrupt(file, "entry " + name + " listed in the manifest is missing");
    return *e;
  };
  const size_t n = m.resources.size();
  // Positions of each resource's data and index entries; the entries move into the package
  // once every lookup (which compares their names) is done.
  std::vector<uint32_t> data_at(n);
  std::vector<uint32_t> index_at(n);
  std::vector<int64_t> blocks_at(n, -1);
  size_t next_blocks = 0;
  rep->files.reserve(1 + m.dependencies.size() + n);
  rep->files.push_back(
      {std::string(kManifestEntry), FileNode::Kind::kManifest, rep->manifest_bytes.size(), 0});
  for (const ResourceEntry& r : m.resources) {
    std::string name = r.entry_name();
    const ZipEntry& data = need(name, next_data);
    // Encrypted resources are stored entries holding their ciphertext.
    const bool encrypted = r.encryption != Cipher::kNone;
    if (data.method != (encrypted ? 0 : zip_method(r.compression.codec)) ||
        data.uncompressed_size != (encrypted ? r.stored_size : r.size) ||
        data.compressed_size != r.stored_size) {
      throw corrupt(file, data.name + ": ZIP entry disagrees with the manifest");
    }
    data_at[r.id] = static_cast<uint32_t>(&data - entries.data());
    if (r.block_size != 0) {
      const ZipEntry& blocks = need(r.blocks_entry_name(), next_blocks);
      if (blocks.method != 0 || blocks.uncompressed_size != r.block_count() * kBlockHashSize) {
        throw corrupt(file, blocks.name + ": ZIP entry disagrees with the manifest");
      }
      blocks_at[r.id] = &blocks - entries.data();
    }
    index_at[r.id] =
        static_cast<uint32_t>(&need(r.index_entry_name(), next_index) - entries.data());
    rep->files.push_back({std::move(name), FileNode::Kind::kResource, r.size, r.id});
  }
  rep->index_once.reset(new std::once_flag[n]);
  rep->indexes.resize(n);
  rep->paths.reserve(n);
  for (const ResourceEntry& r : m.resources) {
    const bool plain = r.compression.codec == Codec::kNone && r.encryption == Cipher::kNone;
    rep->paths.push_back(plain ? Rep::ChunkPath::kPlain : Rep::ChunkPath::kDecoded);
  }
  for (size_t i = 0; i < m.dependencies.size(); ++i) {
    const Dependency& d = m.dependencies[i];
    const ZipEntry& e = need(d.entry_name(), next_other);
    if (e.uncompressed_size != d.file_size)
      throw corrupt(file, e.name + ": size disagrees with the manifest");
    std::string bytes = read_entry_bytes(src, e, kMaxDependencyFile);
    if (to_hex(sha256(bytes)) != d.file_sha256) {
      throw corrupt(file, e.name + ": digest does not match the manifest");
    }
    rep->dependency_bytes.push_back(std::move(bytes));
    rep->files.push_back({e.name, FileNode::Kind::kDependency, d.file_size, i});
  }
  // Besides what the manifest lists, only signature entries may exist.
  for (size_t i = 0; i < entries.size(); ++i) {
    if (listed[i]) continue;
    const ZipEntry& e = entries[i];
    std::string key_id;
    if (!is_signature_entry_name(e.name, &key_id)) {
      throw corrupt(file, "entry " + e.name + " is not listed in the manifest");
    }
    Signature sig = parse_signature_entry(read_entry_bytes(src, e, 64 * 1024), file, e.name);
    if (sig.key_id != key_id) throw corrupt(file, e.name + ": key id differs from the entry name");
    rep->signatures.push_back(std::move(sig));
  }
  rep->data_entries.reserve(n);
  rep->index_entries.reserve(n);
  rep->blocks_entries.resize(n);
  for (size_t i = 0; i < n; ++i) {
    rep->data_entries.push_back(std::move(entries[data_at[i]]));
    rep->index_entries.push_back(std::move(entries[index_at[i]]));
    if (blocks_at[i] >= 0) rep->blocks_entries[i] = std::move(entries[blocks_at[i]]);
  }
  // dependencies/ < manifest.json < resources/: with the dependencies moved to the front, the
  // list is sorted already when the manifest lists resources in path order (as writers do).
  std::rotate(rep->files.begin(), rep->files.begin() + 1 + static_cast<long>(n), rep->files.end());
  const auto by_path = [](const FileNode& a, const FileNode& b) { return a.path < b.path; };
  if (!std::is_sorted(rep->files.begin(), rep->files.end(), by_path)) {
    std::sort(rep->files.begin(), rep->files.end(), by_path);
  }

  auto package = std::unique_ptr<Package>(new Package(std::move(rep)));
  if (secret != nullptr) package->unlock(*secret);
  return package;
}

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

void Package::unlock(const Secret& secret) {
  Rep& rep = *rep_;
  const Manifest& m = rep.manifest;
  const std::string& file = rep.name();
  if (m.key_slots.empty() || rep.unlocked) return;
  std::optional<Key256> data_key;
  for (size_t i = 0; i < m.key_slots.size() && !data_key; ++i) {
    try {
      data_key = open_key_slot(m.key_slots[i], secret, rep.package_id, static_cast<uint32_t>(i));
    } catch (const Error& e) {
      throw corrupt(file, "key slot " + std::to_string(i) + ": " + e.what());
    }
  }
  if (!data_key) {
    throw Error(ErrorKind::kWrongKey,
                file + ": wrong " +
                    (secret.kind == Secret::Kind::kPassword ? "password" : "key file") +
                    " (no key slot opens with it)");
  }
  rep.resource_keys.resize(m.resources.size());
  for (const ResourceEntry& r : m.resources) {
    if (r.encryption != Cipher::kNone) {
      rep.resource_keys[r.id] = resource_key(*data_key, rep.package_id, r.id, r.path);
    }
  }
  rep.unlocked = true;
}

bool Package::encrypted() const {
  return !rep_->manifest.key_slots.empty();
}
bool Package::unlocked() const {
  return rep_->unlocked;
}

const FileNode* Package::find(std::string_view path) const {
  const std::vector<FileNode>& files = rep_->files;
  const auto it = std::lower_bound(files.begin(), files.end(), path,
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
