// The ZIP container, read strictly: the end records, the central directory and the local
// headers, each checked against the others.
//
// Only what torshpkg packages use is accepted: no ZIP encryption, no data descriptors, no
// multi-disk archives, no directory or symlink entries, names that are normalized relative
// UTF-8 paths. See docs/FORMAT.md, "ZIP layout".
#pragma once

#include <cstdint>
#include <optional>
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

}  // namespace torshpkg
