// The ZIP container: a strict reader of the central directory and local headers, and a writer
// that streams entries and patches their local headers afterwards.
//
// Only what torshpkg packages use is accepted: no ZIP encryption, no data descriptors, no
// multi-disk archives, no directory or symlink entries, names that are normalized relative
// UTF-8 paths. See docs/FORMAT.md, "ZIP layout".
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "torshpkg/byte_source.h"

namespace torshpkg {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;
  uint16_t flags = 0;
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_header_offset = 0;
  uint64_t data_offset = 0;  // first byte of the entry's data, after its local header
  uint16_t dos_time = 0;     // as the central record gives them (the local header must agree)
  uint16_t dos_date = 0;
};

struct ZipLimits {
  uint64_t max_entries = 4'000'000;
  uint64_t max_central_directory = 1ull << 30;
};

// The most bytes a local header can take: its fixed part, a name and an extra field.
inline constexpr uint64_t kZipLocalHeaderMax = 30 + 0xffff + 0xffff;

// An archive's central directory, checked on its own.
struct ZipDirectory {
  std::vector<ZipEntry> entries;  // in central-directory order; data_offset not known yet
  std::vector<uint32_t> by_name;  // positions in `entries`, sorted by name
  uint64_t cd_offset = 0;         // where the central directory begins: entries lie before it
};

// The central directory's bytes as the end records locate them, not parsed yet.
struct CentralDirectoryBytes {
  std::vector<uint8_t> bytes;
  uint64_t offset = 0;   // where the central directory begins
  uint64_t entries = 0;  // the record count the end records declare
};

// Reads the end records and the central directory and checks all that they alone decide: record
// layout, ZIP64 fields, flags, entry types, names (normalized and unique). Throws Error(kCorrupt)
// naming the source and the reason.
ZipDirectory read_central_directory(const ByteSource& source, const ZipLimits& limits = {});
// The same in two steps: the end records' checks and the read, then the records' checks.
CentralDirectoryBytes read_central_directory_bytes(const ByteSource& source,
                                                   const ZipLimits& limits = {});
ZipDirectory parse_central_directory(const CentralDirectoryBytes& cd, const std::string& file);
// The first record named `name`, found without checking the others (so that its entry can be
// read while they are checked); nullopt when there is none or the records before it, or it,
// are malformed. What it returns is only a guess until parse_central_directory has accepted the
// whole directory: names may repeat in a directory it would refuse.
std::optional<ZipEntry> find_central_record(const CentralDirectoryBytes& cd, std::string_view name,
                                            const std::string& file);

// Checks every entry's local header against its central record and that the entries tile the
// bytes before the central directory exactly; sets each entry's data_offset. Headers are read
// in file order, close neighbours in one read, all of them announced to the source
// (Advice::kWillNeed) first so that on a cold cache the disk reads them at once. Throws
// Error(kCorrupt).
void check_local_headers(const ByteSource& source, std::vector<ZipEntry>& entries,
                         uint64_t cd_offset);

// Reads and checks one entry's local header as check_local_headers does (but not the tiling,
// which needs all of them); returns where the entry's data begins.
uint64_t read_local_header(const ByteSource& source, const ZipEntry& entry, uint64_t cd_offset);

// Both steps: the archive's entries with every structural check done.
std::vector<ZipEntry> read_zip_directory(const ByteSource& source, const ZipLimits& limits = {});

// Whether `path` is a normalized relative UTF-8 path: components separated by single '/', none
// empty, "." or "..", no NUL, backslash or control characters, at most 4096 bytes.
bool is_normalized_path(std::string_view path);
bool is_valid_utf8(std::string_view text);

// Writes a ZIP archive to a file descriptor, front to back. Not thread-safe.
class ZipWriter {
 public:
  ZipWriter(int fd, std::string name, uint32_t dos_time, uint16_t dos_date);

  // Starts an entry and returns the offset its data begins at. Sizes and CRC are patched in by
  // end_entry. `may_exceed_4gib` reserves ZIP64 fields in the local header. `align` > 1 pads the
  // local header's extra field so the data starts at a multiple of `align`.
  uint64_t begin_entry(const std::string& name, uint16_t method, bool may_exceed_4gib,
                       uint32_t align);
  void write(std::span<const uint8_t> data);
  void end_entry(uint32_t crc32, uint64_t uncompressed_size);
  // Copies an entry of another archive verbatim (local header and data).
  void copy_entry(const ZipEntry& entry, const ByteSource& source);
  // Writes a small entry in one step.
  void add_entry(const std::string& name, uint16_t method, std::span<const uint8_t> data,
                 uint32_t crc32, uint64_t uncompressed_size, uint32_t align = 1);
  // Writes the central directory and end records (ZIP64 ones when needed).
  void finish();

  uint64_t offset() const { return offset_; }

 private:
  struct Pending {
    std::string name;
    uint16_t method;
    uint16_t flags;
    uint32_t crc32;
    uint64_t compressed_size;
    uint64_t uncompressed_size;
    uint64_t local_header_offset;
  };

  int fd_;
  std::string file_name_;
  uint32_t dos_time_;
  uint16_t dos_date_;
  uint64_t offset_ = 0;
  std::vector<Pending> entries_;
  bool open_entry_ = false;
  bool open_zip64_ = false;
  uint64_t open_data_offset_ = 0;
};

// MS-DOS time and date of an RFC 3339 UTC time ("2026-01-31T12:00:00Z"); 1980-01-01 when the
// time cannot be represented.
void dos_time_of(const std::string& created, uint32_t& dos_time, uint16_t& dos_date);

uint32_t crc32_of(std::span<const uint8_t> data, uint32_t crc = 0);
uint32_t combine_crc32(uint32_t crc1, uint32_t crc2, uint64_t len2);

}  // namespace torshpkg
