// ZIP archives written by other tools (torch.save, torch.package, numpy.savez): a bounds-checked
// reader of the central directory that accepts what those writers produce (data descriptors,
// ZIP64 records, directory entries, stored and deflated members) and reads members by name.
//
// Opening reads only the end records and the central directory; every member's local header is
// read to find where its data starts, and every member must lie before the central directory.
// Immutable after construction; safe to use from many threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "torshpkg/byte_source.h"

namespace torshpkg::convert {

struct SourceZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 stored, 8 deflated; anything else fails when read
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t size = 0;
  uint64_t data_offset = 0;  // in the archive
  bool directory() const { return !name.empty() && name.back() == '/'; }
};

class SourceZip {
 public:
  // Throws Error(kCorrupt) naming the archive for anything malformed or out of bounds, and
  // Error(kUnsupported) for encrypted or multi-disk archives.
  explicit SourceZip(std::shared_ptr<const ByteSource> source);

  const std::string& name() const { return source_->name(); }
  const ByteSource& source() const { return *source_; }
  std::shared_ptr<const ByteSource> shared_source() const { return source_; }
  const std::vector<SourceZipEntry>& entries() const { return entries_; }
  // nullptr when absent.
  const SourceZipEntry* find(std::string_view member) const;

  // Bytes [offset, offset + out.size()) of a member's plain data: read in place for a stored
  // member; a deflated one is inflated from its start (bounded by `max_inflate`; a Stream reads
  // front to back without starting over). Throws Error(kCorrupt) past the member's end.
  void read(const SourceZipEntry& entry, uint64_t offset, std::span<uint8_t> out,
            uint64_t max_inflate = kMaxInflate) const;
  // The whole member, its CRC-32 checked. Throws Error(kInvalidArgument) when it is larger than
  // `max_bytes`.
  std::vector<uint8_t> read_all(const SourceZipEntry& entry,
                                uint64_t max_bytes = kMaxInflate) const;

  static constexpr uint64_t kMaxInflate = 16ull << 30;

  // A deflated member inflated into an unnamed temporary file (in the system's temporary
  // folder, gone when the last reader lets go), its CRC-32 checked: for readers that gather its
  // bytes out of order without holding them all in memory. Reads are pread()s.
  class Spilled {
   public:
    Spilled(const SourceZip& zip, const SourceZipEntry& entry);
    ~Spilled();
    Spilled(const Spilled&) = delete;
    Spilled& operator=(const Spilled&) = delete;
    void read(uint64_t offset, std::span<uint8_t> out) const;

   private:
    std::string name_;
    uint64_t size_ = 0;
    int fd_ = -1;
  };

  // A deflated member read front to back in bounded memory: each read continues the inflate
  // where the last one stopped (a read before that point starts over from the member's start).
  // Not thread-safe; the SourceZip must outlive it.
  class Stream {
   public:
    Stream(const SourceZip& zip, const SourceZipEntry& entry);
    ~Stream();
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    // Bytes [offset, offset + out.size()); throws Error(kCorrupt) past the end or for bad data.
    void read(uint64_t offset, std::span<uint8_t> out);

   private:
    void restart();
    void inflate_to(uint8_t* out, size_t n);
    const SourceZip& zip_;
    SourceZipEntry entry_;
    struct State;
    std::unique_ptr<State> state_;
    uint64_t position_ = 0;  // plain bytes produced so far
  };

 private:
  std::shared_ptr<const ByteSource> source_;
  std::vector<SourceZipEntry> entries_;
};

// A reader of a member's bytes for one consumer: a stored member read in place; a deflated one
// through a Stream when the consumer reads front to back (`in_order`), else spilled once into a
// temporary file. Either way memory stays bounded whatever the member inflates to. Keeps `zip`
// alive.
std::function<void(uint64_t offset, std::span<uint8_t> out)> member_reader(
    std::shared_ptr<const SourceZip> zip, const SourceZipEntry& entry, bool in_order);

}  // namespace torshpkg::convert
