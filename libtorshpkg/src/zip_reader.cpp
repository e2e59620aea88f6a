// The strict ZIP reader in its steps: end records, central directory, local headers. Kept in one
// file (over 500 lines) because each step checks its records against the others' with the same
// record helpers (the extra-field walker, the ZIP64 rules); zip_reader.h names the steps.
#include "zip_reader.h"

#include <algorithm>
#include <cstdio>

#include "little_endian.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "zip_format.h"
#include "zip_names.h"

namespace torshpkg {

using namespace zip;

namespace {

std::string octal(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%o", v);
  return buf;
}

std::string hex16(uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04x", v);
  return buf;
}

// Fields that a ZIP64 extended-information record may replace, in the order APPNOTE 4.5.3 gives.
struct Zip64Fields {
  uint64_t* uncompressed = nullptr;
  uint64_t* compressed = nullptr;
  uint64_t* offset = nullptr;
};

// Walks an extra field; fills the ZIP64 values that are marked by 0xffffffff in the fixed header.
// Only what the writer writes is accepted (nothing unsigned may ride along): a ZIP64 record
// holding exactly the marked values (in a local header, where the writer reserves both sizes,
// 16 bytes), and, with `local`, the alignment record: id 0xd935, the alignment (a power of two
// up to 64 KiB) and zero padding shorter than it.
void parse_extra(std::span<const uint8_t> extra, const Zip64Fields& want, const std::string& file,
                 const std::string& entry, bool local = false) {
  bool seen_zip64 = false;
  bool seen_align = false;
  size_t pos = 0;
  while (pos < extra.size()) {
    if (extra.size() - pos < 4) throw corrupt(file, entry + ": truncated extra field");
    const uint16_t id = load_u16(&extra[pos]);
    const uint16_t len = load_u16(&extra[pos + 2]);
    pos += 4;
    if (len > extra.size() - pos) throw corrupt(file, entry + ": extra field overruns its header");
    if (id == kZip64ExtraId) {
      if (seen_zip64) throw corrupt(file, entry + ": duplicate ZIP64 extra field");
      seen_zip64 = true;
      size_t field = pos;
      const size_t end = pos + len;
      size_t marked = 0;
      for (uint64_t* target : {want.uncompressed, want.compressed, want.offset}) {
        if (target == nullptr || *target != k32) continue;
        if (end - field < 8) throw corrupt(file, entry + ": ZIP64 extra field too short");
        *target = load_u64(&extra[field]);
        field += 8;
        ++marked;
      }
      if (len != (local ? 16 : marked * 8) || (local && marked != 0 && marked != 2)) {
        throw corrupt(file, entry + ": ZIP64 extra field of an unexpected size");
      }
    } else if (id == kAlignExtraId && local && !seen_align && len >= 2) {
      seen_align = true;
      const uint16_t align = load_u16(&extra[pos]);
      if (align < 2 || (align & (align - 1)) != 0 || len - 2 >= align ||
          std::any_of(extra.begin() + static_cast<ptrdiff_t>(pos + 2),
                      extra.begin() + static_cast<ptrdiff_t>(pos + len),
                      [](uint8_t b) { return b != 0; })) {
        throw corrupt(file, entry + ": bad alignment extra field");
      }
    } else {
      throw corrupt(file, entry + ": extra field 0x" + hex16(id) +
                              " (a package carries only what its writer writes)");
    }
    pos += len;
  }
  for (uint64_t* target : {want.uncompressed, want.compressed, want.offset}) {
    if (target != nullptr && *target == k32 && !seen_zip64) {
      throw corrupt(file, entry + ": size or offset needs a ZIP64 extra field that is missing");
    }
  }
}

struct EndRecord {
  uint64_t entries = 0;
  uint64_t cd_size = 0;
  uint64_t cd_offset = 0;
  uint64_t cd_end = 0;  // where the central directory must end: the first end record
};

EndRecord read_end_record(const ByteSource& src) {
  const std::string& file = src.name();
  const uint64_t size = src.size();
  if (size < kEocdSize) throw corrupt(file, "too small to be a ZIP archive");
  const uint64_t tail_len = std::min<uint64_t>(size, kEocdSize + 0xffff);
  std::vector<uint8_t> tail(tail_len);
  src.read_at(size - tail_len, tail);
  // The EOCD is the last signature whose comment length reaches exactly the end of the file.
  size_t found = SIZE_MAX;
  for (size_t i = tail_len - kEocdSize + 1; i-- > 0;) {
    if (load_u32(&tail[i]) == kEocdSig && i + kEocdSize + load_u16(&tail[i + 20]) == tail_len) {
      found = i;
      break;
    }
  }
  if (found == SIZE_MAX) throw corrupt(file, "no end of central directory record");
  const uint8_t* e = &tail[found];
  if (load_u16(e + 20) != 0) {
    throw corrupt(file, "archive comment of " + std::to_string(load_u16(e + 20)) +
                            " bytes (a package has none: the signature would not cover it)");
  }
  const uint64_t eocd_pos = size - tail_len + found;
  if (load_u16(e + 4) != 0 || load_u16(e + 6) != 0) {
    throw corrupt(file, "multi-disk archives are not supported");
  }
  EndRecord rec;
  const uint16_t disk_entries = load_u16(e + 8);
  const uint16_t entries = load_u16(e + 10);
  rec.entries = entries;
  rec.cd_size = load_u32(e + 12);
  rec.cd_offset = load_u32(e + 16);
  rec.cd_end = eocd_pos;
  if (disk_entries != entries) throw corrupt(file, "inconsistent entry counts in EOCD");
  const bool needs_zip64 = entries == k16 || rec.cd_size == k32 || rec.cd_offset == k32;
  const bool has_locator = eocd_pos >= kZip64LocatorSize && [&] {
    uint8_t sig[4];
    src.read_at(eocd_pos - kZip64LocatorSize, sig);
    return load_u32(sig) == kZip64LocatorSig;
  }();
  if (!has_locator) {
    if (needs_zip64) throw corrupt(file, "EOCD needs a ZIP64 record that is missing");
    return rec;
  }
  uint8_t loc[kZip64LocatorSize];
  src.read_at(eocd_pos - kZip64LocatorSize, loc);
  if (load_u32(loc + 4) != 0 || load_u32(loc + 16) != 1) {
    throw corrupt(file, "multi-disk archives are not supported");
  }
  const uint64_t z64_pos = load_u64(loc + 8);
  if (z64_pos > eocd_pos - kZip64LocatorSize ||
      eocd_pos - kZip64LocatorSize - z64_pos < kZip64EocdSize) {
    throw corrupt(file, "ZIP64 end record out of bounds");
  }
  uint8_t z[kZip64EocdSize];
  src.read_at(z64_pos, z);
  if (load_u32(z) != kZip64EocdSig) throw corrupt(file, "bad ZIP64 end record signature");
  // The record must end exactly where the locator begins (no extensible data is written).
  if (load_u64(z + 4) != kZip64EocdSize - 12 ||
      z64_pos + kZip64EocdSize != eocd_pos - kZip64LocatorSize) {
    throw corrupt(file, "bad ZIP64 end record size");
  }
  if (load_u32(z + 16) != 0 || load_u32(z + 20) != 0) {
    throw corrupt(file, "multi-disk archives are not supported");
  }
  if (load_u16(z + 12) != kMadeByUnix || load_u16(z + 14) != 45) {
    throw corrupt(file, "unexpected versions in the ZIP64 end record");
  }
  const uint64_t z_disk_entries = load_u64(z + 24);
  const uint64_t z_entries = load_u64(z + 32);
  const uint64_t z_cd_size = load_u64(z + 40);
  const uint64_t z_cd_offset = load_u64(z + 48);
  if (z_disk_entries != z_entries) throw corrupt(file, "inconsistent entry counts in ZIP64 EOCD");
  // Where the EOCD holds a real value it must agree with the ZIP64 record.
  if ((entries != k16 && entries != z_entries) ||
      (rec.cd_size != k32 && rec.cd_size != z_cd_size) ||
      (rec.cd_offset != k32 && rec.cd_offset != z_cd_offset)) {
    throw corrupt(file, "EOCD and ZIP64 EOCD disagree");
  }
  rec.entries = z_entries;
  rec.cd_size = z_cd_size;
  rec.cd_offset = z_cd_offset;
  rec.cd_end = z64_pos;
  return rec;
}

}  // namespace

namespace {

// Local headers through one buffer. Entries are visited in file order; the header of an entry
// that lies close after the previous one is read with it, so a package of many small files
// costs a few large reads instead of two small reads per entry. The bytes read in between are
// the small entries' data: at most kGap per entry.
class LocalHeaderReader {
 public:
  LocalHeaderReader(const ByteSource& src, const std::vector<ZipEntry*>& sorted, uint64_t limit)
      : src_(src), sorted_(sorted), limit_(limit) {}

  // Announces every window get() will read to the source, first to last.
  void announce() const {
    for (size_t i = 0; i < sorted_.size();) {
      const Window w = window(i, kLocalSize);
      if (w.end > w.begin) src_.advise(w.begin, w.end - w.begin, Advice::kWillNeed);
      i = w.last + 1;
    }
  }

  // `len` bytes from the local header of sorted entry `i`; the caller checked they end at or
  // before `limit`.
  std::span<const uint8_t> get(size_t i, size_t len) {
    const uint64_t at = sorted_[i]->local_header_offset;
    if (at < buf_at_ || at - buf_at_ > buf_.size() || buf_.size() - (at - buf_at_) < len) {
      fill(i, len);
    }
    return std::span<const uint8_t>(buf_).subspan(at - buf_at_, len);
  }

 private:
  static constexpr uint64_t kGap = 16 * 1024;
  static constexpr uint64_t kMaxWindow = 1024 * 1024;
  // Room for a header's name and extra field past its fixed part (aligned entries pad up to 4 KiB).
  static constexpr uint64_t kHeaderRoom = 8 * 1024;

  struct Window {
    uint64_t begin = 0;
    uint64_t end = 0;
    size_t last = 0;  // the last sorted entry whose header it holds
  };

  // The bytes read for sorted entry `i`'s header (`len` bytes of it at least) and the close
  // neighbours after it.
  Window window(size_t i, size_t len) const {
    const uint64_t at = sorted_[i]->local_header_offset;
    size_t last = i;
    while (last + 1 < sorted_.size()) {
      const uint64_t next = sorted_[last + 1]->local_header_offset;
      if (next < sorted_[last]->local_header_offset ||
          next - sorted_[last]->local_header_offset > kGap || next - at > kMaxWindow) {
        break;
      }
      ++last;
    }
    const uint64_t last_at = sorted_[last]->local_header_offset;
    const uint64_t end = std::max<uint64_t>(at + len, last_at + kHeaderRoom);
    return {std::min(at, limit_), std::min(end, limit_), last};
  }

  void fill(size_t i, size_t len) {
    const Window w = window(i, len);
    buf_at_ = w.begin;
    buf_.resize(w.end - w.begin);
    src_.read_at(w.begin, buf_);
  }

  const ByteSource& src_;
  const std::vector<ZipEntry*>& sorted_;
  const uint64_t limit_;
  std::vector<uint8_t> buf_;
  uint64_t buf_at_ = 0;
};

// Sorts positions into `entries` by name. Archives written front to back list their names in a
// few ascending runs (a package: its resources' data, then their indexes), so the runs are found
// and merged pairwise: O(n log runs) comparisons, O(n log n) at worst.
void sort_by_name(std::vector<uint32_t>& order, const std::vector<ZipEntry>& entries) {
  const auto less = [&](uint32_t a, uint32_t b) { return entries[a].name < entries[b].name; };
  std::vector<size_t> bounds{0};  // run i is [bounds[i], bounds[i + 1])
  for (size_t i = 1; i < order.size(); ++i) {
    if (less(order[i], order[i - 1])) bounds.push_back(i);
  }
  bounds.push_back(order.size());
  while (bounds.size() > 2) {
    std::vector<size_t> merged{0};
    size_t r = 0;
    for (; r + 2 < bounds.size(); r += 2) {
      std::inplace_merge(order.begin() + static_cast<long>(bounds[r]),
                         order.begin() + static_cast<long>(bounds[r + 1]),
                         order.begin() + static_cast<long>(bounds[r + 2]), less);
      merged.push_back(bounds[r + 2]);
    }
    if (r + 1 < bounds.size()) merged.push_back(bounds.back());  // an odd run out, kept as is
    bounds = std::move(merged);
  }
}

}  // namespace

CentralDirectoryBytes read_central_directory_bytes(const ByteSource& src, const ZipLimits& limits) {
  const std::string& file = src.name();
  const EndRecord end = read_end_record(src);
  if (end.cd_offset > end.cd_end || end.cd_size != end.cd_end - end.cd_offset) {
    throw corrupt(file, "central directory does not end where the end record begins");
  }
  if (end.cd_size > limits.max_central_directory)
    throw corrupt(file, "central directory too large");
  if (end.entries > limits.max_entries || end.entries > end.cd_size / kCentralSize) {
    throw corrupt(file, "absurd entry count " + std::to_string(end.entries));
  }
  CentralDirectoryBytes cd;
  cd.bytes.resize(end.cd_size);
  src.read_at(end.cd_offset, cd.bytes);
  cd.offset = end.cd_offset;
  cd.entries = end.entries;
  return cd;
}

ZipDirectory read_central_directory(const ByteSource& src, const ZipLimits& limits) {
  return parse_central_directory(read_central_directory_bytes(src, limits), src.name());
}

namespace {

// What an entry keeps of its central record `h` (its name and ZIP64 values aside).
ZipEntry central_entry(const uint8_t* h) {
  ZipEntry e;
  e.flags = load_u16(h + 8);
  e.method = load_u16(h + 10);
  e.crc32 = load_u32(h + 16);
  e.compressed_size = load_u32(h + 20);
  e.uncompressed_size = load_u32(h + 24);
  e.local_header_offset = load_u32(h + 42);
  e.dos_time = load_u16(h + 12);
  e.dos_date = load_u16(h + 14);
  return e;
}

// Applies the ZIP64 extra field of central record `h` to `e`, named already. Throws
// Error(kCorrupt) when the extra field does not parse.
void apply_central_zip64(ZipEntry& e, const uint8_t* h, const std::string& file) {
  const size_t name_len = load_u16(h + 28);
  const size_t extra_len = load_u16(h + 30);
  parse_extra(std::span(h + kCentralSize + name_len, extra_len),
              {&e.uncompressed_size, &e.compressed_size, &e.local_header_offset}, file, e.name);
}

}  // namespace

std::optional<ZipEntry> find_central_record(const CentralDirectoryBytes& cd, std::string_view name,
                                            const std::string& file) {
  const std::vector<uint8_t>& b = cd.bytes;
  size_t pos = 0;
  for (uint64_t n = 0; n < cd.entries; ++n) {
    if (b.size() - pos < kCentralSize || load_u32(&b[pos]) != kCentralSig) return std::nullopt;
    const uint8_t* h = &b[pos];
    const size_t name_len = load_u16(h + 28);
    const size_t extra_len = load_u16(h + 30);
    const size_t comment_len = load_u16(h + 32);
    if (b.size() - pos - kCentralSize < name_len + extra_len + comment_len) return std::nullopt;
    if (std::string_view(reinterpret_cast<const char*>(h + kCentralSize), name_len) == name) {
      ZipEntry e = central_entry(h);
      e.name = name;
      try {
        apply_central_zip64(e, h, file);
      } catch (const Error&) {
        return std::nullopt;
      }
      return e;
    }
    pos += kCentralSize + name_len + extra_len + comment_len;
  }
  return std::nullopt;
}

ZipDirectory parse_central_directory(const CentralDirectoryBytes& bytes, const std::string& file) {
  const std::vector<uint8_t>& cd = bytes.bytes;
  ZipDirectory dir;
  dir.cd_offset = bytes.offset;
  std::vector<ZipEntry>& entries = dir.entries;
  entries.reserve(bytes.entries);
  size_t pos = 0;
  for (uint64_t n = 0; n < bytes.entries; ++n) {
    if (cd.size() - pos < kCentralSize || load_u32(&cd[pos]) != kCentralSig) {
      throw corrupt(file, "bad central directory record #" + std::to_string(n));
    }
    const uint8_t* h = &cd[pos];
    const uint16_t made_by = load_u16(h + 4);
    ZipEntry e = central_entry(h);
    const size_t name_len = load_u16(h + 28);
    const size_t extra_len = load_u16(h + 30);
    const size_t comment_len = load_u16(h + 32);
    const uint16_t disk = load_u16(h + 34);
    const uint32_t external = load_u32(h + 38);
    if (cd.size() - pos - kCentralSize < name_len + extra_len + comment_len) {
      throw corrupt(file, "central directory record #" + std::to_string(n) + " overruns");
    }
    e.name.assign(reinterpret_cast<const char*>(h + kCentralSize), name_len);
    if (!is_normalized_path(e.name)) {
      throw corrupt(file, "bad entry name \"" + e.name.substr(0, 200) +
                              "\" (absolute, '..', NUL, backslash, empty part or not UTF-8)");
    }
    if (disk == k16) throw corrupt(file, e.name + ": multi-disk archives are not supported");
    if (disk != 0) throw corrupt(file, e.name + ": multi-disk archives are not supported");
    if ((e.flags & ~kAllowedFlags) != 0) {
      throw corrupt(file, e.name + ": unsupported flags (encryption or data descriptor)");
    }
    if ((made_by >> 8) == 3) {
      const uint32_t type = (external >> 16) & S_IFMT;
      if (type == S_IFLNK) throw corrupt(file, e.name + ": symlink entries are not allowed");
      if (type != 0 && type != S_IFREG) {
        throw corrupt(file, e.name + ": only regular file entries are allowed");
      }
    }
    // The fields the writer fixes take its values: an extractor applies attributes (a setuid
    // bit, an executable one) that the signed manifest does not state, and comments would be
    // bytes nobody signed.
    if (made_by != kMadeByUnix || external != kRegularFileAttrs) {
      throw corrupt(file, e.name + ": file attributes other than a plain 0644 file (made by 0x" +
                              hex16(made_by) + ", mode 0" + octal(external >> 16) + ")");
    }
    if (load_u16(h + 36) != 0) throw corrupt(file, e.name + ": internal attributes set");
    if (comment_len != 0) throw corrupt(file, e.name + ": entry comment (a package has none)");
    apply_central_zip64(e, h, file);
    const bool zip64 = extra_len != 0;
    if (load_u16(h + 6) != version_needed(e.method, zip64)) {
      throw corrupt(file,
                    e.name + ": unexpected \"version needed\" " + std::to_string(load_u16(h + 6)));
    }
    if (e.method == 0 && e.compressed_size != e.uncompressed_size) {
      throw corrupt(file, e.name + ": stored entry with different sizes");
    }
    entries.push_back(std::move(e));
    pos += kCentralSize + name_len + extra_len + comment_len;
  }
  if (pos != cd.size()) throw corrupt(file, "trailing bytes in central directory");
  // Names must be unique. Sorting keeps this O(n log n) whatever the names are (a hash set can
  // be flooded with colliding names).
  dir.by_name.resize(entries.size());
  for (uint32_t i = 0; i < dir.by_name.size(); ++i) dir.by_name[i] = i;
  sort_by_name(dir.by_name, entries);
  const auto dup = std::adjacent_find(
      dir.by_name.begin(), dir.by_name.end(),
      [&](uint32_t a, uint32_t b) { return entries[a].name == entries[b].name; });
  if (dup != dir.by_name.end()) {
    throw corrupt(file, "duplicate entry \"" + entries[*dup].name + "\"");
  }
  return dir;
}

namespace {

// Checks the local header of `e` (at least its fixed part and, when `header` holds them, its
// name and extra field) against its central record; returns where the entry's data begins.
// `header` holds the bytes from the local header on, up to `cd_offset` at most.
class LocalHeaderCheck {
 public:
  LocalHeaderCheck(const std::string& file, uint64_t cd_offset) : file_(file), limit_(cd_offset) {}

  // Throws unless `e`'s fixed local header part lies before the central directory.
  void check_bounds(const ZipEntry& e) const {
    if (e.local_header_offset > limit_ || limit_ - e.local_header_offset < kLocalSize) {
      throw corrupt(file_, e.name + ": local header out of bounds");
    }
  }
  // The length of the whole local header, from its fixed part.
  size_t length(const ZipEntry& e, std::span<const uint8_t> fixed) const {
    const uint8_t* h = fixed.data();
    const size_t name_len = load_u16(h + 26);
    const size_t extra_len = load_u16(h + 28);
    if (load_u32(h) != kLocalSig) throw corrupt(file_, e.name + ": bad local header signature");
    if (limit_ - e.local_header_offset - kLocalSize < name_len + extra_len) {
      throw corrupt(file_, e.name + ": local header out of bounds");
    }
    return kLocalSize + name_len + extra_len;
  }
  // Checks the whole local header against the central record; returns the data offset.
  uint64_t data_offset(const ZipEntry& e, std::span<const uint8_t> header) const {
    const uint8_t* h = header.data();
    const size_t name_len = load_u16(h + 26);
    uint64_t compressed = load_u32(h + 18);
    uint64_t uncompressed = load_u32(h + 22);
    parse_extra(header.subspan(kLocalSize + name_len), {&uncompressed, &compressed, nullptr}, file_,
                e.name, true);
    const uint16_t version = load_u16(h + 4);
    if (version != version_needed(e.method, false) && version != version_needed(e.method, true)) {
      throw corrupt(file_, e.name + ": unexpected \"version needed\" in its local header");
    }
    if (load_u16(h + 10) != e.dos_time || load_u16(h + 12) != e.dos_date) {
      throw corrupt(file_, e.name + ": local header time differs from the central directory's");
    }
    if (load_u16(h + 6) != e.flags || load_u16(h + 8) != e.method || load_u32(h + 14) != e.crc32 ||
        compressed != e.compressed_size || uncompressed != e.uncompressed_size ||
        std::string_view(reinterpret_cast<const char*>(h + kLocalSize), name_len) != e.name) {
      throw corrupt(file_, e.name + ": local header disagrees with central directory");
    }
    const uint64_t data = e.local_header_offset + header.size();
    if (e.compressed_size > limit_ - data)
      throw corrupt(file_, e.name + ": entry data out of bounds");
    return data;
  }

 private:
  const std::string& file_;
  const uint64_t limit_;
};

}  // namespace

uint64_t read_local_header(const ByteSource& src, const ZipEntry& e, uint64_t cd_offset) {
  const LocalHeaderCheck check(src.name(), cd_offset);
  check.check_bounds(e);
  std::vector<uint8_t> header(kLocalSize);
  src.read_at(e.local_header_offset, header);
  header.resize(check.length(e, header));
  src.read_at(e.local_header_offset + kLocalSize,
              std::span(header).subspan(kLocalSize, header.size() - kLocalSize));
  return check.data_offset(e, header);
}

void check_local_headers(const ByteSource& src, std::vector<ZipEntry>& entries,
                         uint64_t cd_offset) {
  const std::string& file = src.name();
  // Local headers, in file order: each must agree with its central record, and the entries must
  // tile [0, cd_offset) exactly (no overlaps, no unaccounted bytes).
  std::vector<ZipEntry*> by_offset;
  by_offset.reserve(entries.size());
  for (ZipEntry& e : entries) by_offset.push_back(&e);
  const auto in_file_order = [](const ZipEntry* a, const ZipEntry* b) {
    return a->local_header_offset < b->local_header_offset;
  };
  if (!std::is_sorted(by_offset.begin(), by_offset.end(), in_file_order)) {
    std::sort(by_offset.begin(), by_offset.end(), in_file_order);
  }
  LocalHeaderReader headers(src, by_offset, cd_offset);
  headers.announce();
  const LocalHeaderCheck check(file, cd_offset);
  uint64_t cursor = 0;
  for (size_t i = 0; i < by_offset.size(); ++i) {
    ZipEntry& e = *by_offset[i];
    check.check_bounds(e);
    if (e.local_header_offset < cursor) throw corrupt(file, e.name + ": overlaps another entry");
    if (e.local_header_offset > cursor) {
      throw corrupt(file, "unaccounted bytes before entry " + e.name);
    }
    const size_t length = check.length(e, headers.get(i, kLocalSize));
    e.data_offset = check.data_offset(e, headers.get(i, length));
    cursor = e.data_offset + e.compressed_size;
  }
  if (cursor != cd_offset) throw corrupt(file, "unaccounted bytes before central directory");
}

std::vector<ZipEntry> read_zip_directory(const ByteSource& src, const ZipLimits& limits) {
  ZipDirectory dir = read_central_directory(src, limits);
  check_local_headers(src, dir.entries, dir.cd_offset);
  return std::move(dir.entries);
}

}  // namespace torshpkg
