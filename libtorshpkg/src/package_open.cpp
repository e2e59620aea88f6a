// Opening a package: the ZIP directory and the manifest read at once and checked against each
// other (the layout every entry must have), the signature entries, the dependency files; and
// unlocking an encrypted one with a password or key file.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <thread>

#include "crc32.h"
#include "crypto.h"
#include "package_rep.h"
#include "torshpkg/error.h"
#include "torshpkg/package.h"
#include "torshpkg/sha256.h"
#include "zip_reader.h"
#include "zip_writer.h"

namespace torshpkg {

namespace {
constexpr std::string_view kManifestEntry = "manifest.json";
constexpr uint64_t kMaxDependencyFile = 1u << 20;

}  // namespace

std::string read_entry_bytes(const ByteSource& src, const ZipEntry& e, uint64_t limit,
                             size_t spare) {
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
      const auto it =
          std::lower_bound(by_name.begin(), by_name.end(), name,
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

}  // namespace torshpkg
