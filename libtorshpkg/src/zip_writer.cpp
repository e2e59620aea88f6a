#include "zip_writer.h"

#include <cstdio>
#include <ctime>

#include "little_endian.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "zip_format.h"

namespace torshpkg {

using namespace zip;

ZipWriter::ZipWriter(int fd, std::string name, uint32_t dos_time, uint16_t dos_date)
    : fd_(fd), file_name_(std::move(name)), dos_time_(dos_time), dos_date_(dos_date) {}

uint64_t ZipWriter::begin_entry(const std::string& name, uint16_t method, bool may_exceed_4gib,
                                uint32_t align) {
  const uint64_t start = offset_;
  std::vector<uint8_t> h;
  ByteWriter w(h);
  w.u32(kLocalSig);
  w.u16(version_needed(method, may_exceed_4gib));
  w.u16(kFlagUtf8);
  w.u16(method);
  w.u16(static_cast<uint16_t>(dos_time_));
  w.u16(dos_date_);
  w.u32(0);  // crc, patched
  w.u32(may_exceed_4gib ? k32 : 0);
  w.u32(may_exceed_4gib ? k32 : 0);
  size_t extra = may_exceed_4gib ? 20 : 0;
  size_t pad = 0;
  if (align > 1) {
    const uint64_t base = start + kLocalSize + name.size() + extra + 6;
    pad = static_cast<size_t>((align - base % align) % align);
    extra += 6 + pad;
  }
  w.u16(static_cast<uint16_t>(name.size()));
  w.u16(static_cast<uint16_t>(extra));
  w.text(name);
  if (may_exceed_4gib) {
    w.u16(kZip64ExtraId);
    w.u16(16);
    w.u64(0);
    w.u64(0);
  }
  if (align > 1) {
    w.u16(kAlignExtraId);
    w.u16(static_cast<uint16_t>(2 + pad));
    w.u16(static_cast<uint16_t>(align));
    w.zeros(pad);
  }
  write_all(fd_, h, file_name_);
  offset_ += h.size();
  entries_.push_back({name, method, kFlagUtf8, 0, 0, 0, start});
  open_entry_ = true;
  open_zip64_ = may_exceed_4gib;
  open_data_offset_ = offset_;
  return offset_;
}

void ZipWriter::write(std::span<const uint8_t> data) {
  write_all(fd_, data, file_name_);
  offset_ += data.size();
}

void ZipWriter::end_entry(uint32_t crc32, uint64_t uncompressed_size) {
  Pending& p = entries_.back();
  p.crc32 = crc32;
  p.compressed_size = offset_ - open_data_offset_;
  p.uncompressed_size = uncompressed_size;
  open_entry_ = false;
  if (!open_zip64_ && (p.compressed_size >= k32 || p.uncompressed_size >= k32)) {
    throw Error(ErrorKind::kInvalidArgument,
                file_name_ + ": " + p.name + " grew past 4 GiB without ZIP64 fields");
  }
  std::vector<uint8_t> fix;
  ByteWriter w(fix);
  w.u32(crc32);
  if (open_zip64_) {
    w.u32(k32);
    w.u32(k32);
  } else {
    w.u32(static_cast<uint32_t>(p.compressed_size));
    w.u32(static_cast<uint32_t>(p.uncompressed_size));
  }
  pwrite_all(fd_, fix, p.local_header_offset + 14, file_name_);
  if (open_zip64_) {
    fix.clear();
    w.u64(p.uncompressed_size);
    w.u64(p.compressed_size);
    pwrite_all(fd_, fix, p.local_header_offset + kLocalSize + p.name.size() + 4, file_name_);
  }
}

void ZipWriter::copy_entry(const ZipEntry& e, const ByteSource& source) {
  const uint64_t start = offset_;
  const uint64_t end = e.data_offset + e.compressed_size;
  std::vector<uint8_t> buf(
      static_cast<size_t>(std::min<uint64_t>(end - e.local_header_offset, 8u << 20)));
  for (uint64_t at = e.local_header_offset; at < end;) {
    const auto piece =
        std::span(buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), end - at)));
    source.read_at(at, piece);
    write(piece);
    at += piece.size();
  }
  entries_.push_back(
      {e.name, e.method, e.flags, e.crc32, e.compressed_size, e.uncompressed_size, start});
}

void ZipWriter::add_entry(const std::string& name, uint16_t method, std::span<const uint8_t> data,
                          uint32_t crc32, uint64_t uncompressed_size, uint32_t align) {
  begin_entry(name, method, false, align);
  write(data);
  end_entry(crc32, uncompressed_size);
}

void ZipWriter::finish() {
  const uint64_t cd_offset = offset_;
  std::vector<uint8_t> cd;
  ByteWriter w(cd);
  for (const Pending& p : entries_) {
    const bool big_u = p.uncompressed_size >= k32;
    const bool big_c = p.compressed_size >= k32;
    const bool big_o = p.local_header_offset >= k32;
    const size_t extra = (big_u + big_c + big_o) * 8;
    w.u32(kCentralSig);
    w.u16(kMadeByUnix);
    w.u16(version_needed(p.method, extra > 0));
    w.u16(p.flags);
    w.u16(p.method);
    w.u16(static_cast<uint16_t>(dos_time_));
    w.u16(dos_date_);
    w.u32(p.crc32);
    w.u32(big_c ? k32 : static_cast<uint32_t>(p.compressed_size));
    w.u32(big_u ? k32 : static_cast<uint32_t>(p.uncompressed_size));
    w.u16(static_cast<uint16_t>(p.name.size()));
    w.u16(static_cast<uint16_t>(extra > 0 ? extra + 4 : 0));
    w.u16(0);  // comment
    w.u16(0);  // disk
    w.u16(0);  // internal attributes
    w.u32(kRegularFileAttrs);
    w.u32(big_o ? k32 : static_cast<uint32_t>(p.local_header_offset));
    w.text(p.name);
    if (extra > 0) {
      w.u16(kZip64ExtraId);
      w.u16(static_cast<uint16_t>(extra));
      if (big_u) w.u64(p.uncompressed_size);
      if (big_c) w.u64(p.compressed_size);
      if (big_o) w.u64(p.local_header_offset);
    }
    if (cd.size() >= (8u << 20)) {
      write(cd);
      cd.clear();
    }
  }
  write(cd);
  cd.clear();
  const uint64_t cd_size = offset_ - cd_offset;
  const uint64_t count = entries_.size();
  const bool zip64 = count >= k16 || cd_size >= k32 || cd_offset >= k32;
  if (zip64) {
    const uint64_t z64_pos = offset_;
    w.u32(kZip64EocdSig);
    w.u64(kZip64EocdSize - 12);
    w.u16(kMadeByUnix);
    w.u16(45);
    w.u32(0);
    w.u32(0);
    w.u64(count);
    w.u64(count);
    w.u64(cd_size);
    w.u64(cd_offset);
    w.u32(kZip64LocatorSig);
    w.u32(0);
    w.u64(z64_pos);
    w.u32(1);
  }
  w.u32(kEocdSig);
  w.u16(0);
  w.u16(0);
  w.u16(zip64 ? k16 : static_cast<uint16_t>(count));
  w.u16(zip64 ? k16 : static_cast<uint16_t>(count));
  w.u32(zip64 ? k32 : static_cast<uint32_t>(cd_size));
  w.u32(zip64 ? k32 : static_cast<uint32_t>(cd_offset));
  w.u16(0);
  write(cd);
}

void dos_time_of(const std::string& created, uint32_t& dos_time, uint16_t& dos_date) {
  std::tm tm{};
  if (sscanf(created.c_str(), "%4d-%2d-%2dT%2d:%2d:%2dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
             &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6 ||
      tm.tm_year < 1980) {
    dos_time = 0;
    dos_date = (0 << 9) | (1 << 5) | 1;
    return;
  }
  const int year = std::min(tm.tm_year, 2107);
  dos_time = static_cast<uint32_t>((tm.tm_hour << 11) | (tm.tm_min << 5) | (tm.tm_sec / 2));
  dos_date = static_cast<uint16_t>(((year - 1980) << 9) | (tm.tm_mon << 5) | tm.tm_mday);
}

}  // namespace torshpkg
