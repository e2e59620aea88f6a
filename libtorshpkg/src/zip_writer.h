// The ZIP container, written: entries streamed front to back with their local headers patched
// afterwards, then the central directory and end records (ZIP64 ones when needed).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "torshpkg/byte_source.h"
#include "zip_reader.h"

namespace torshpkg {

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

}  // namespace torshpkg
