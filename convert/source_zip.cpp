#include "source_zip.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <set>

#include "torshpkg/error.h"

namespace torshpkg::convert {
namespace {

constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint32_t kZip64EocdSig = 0x06064b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint64_t kMaxCentralDirectory = 1ull << 30;
constexpr uint64_t kMaxEntries = 4'000'000;

uint16_t u16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | p[1] << 8);
}
uint32_t u32(const uint8_t* p) {
  return u16(p) | static_cast<uint32_t>(u16(p + 2)) << 16;
}
uint64_t u64(const uint8_t* p) {
  return u32(p) | static_cast<uint64_t>(u32(p + 4)) << 32;
}

std::vector<uint8_t> read_range(const ByteSource& s, uint64_t offset, uint64_t size) {
  if (offset > s.size() || size > s.size() - offset) {
    throw corrupt(s.name(), "ZIP structure points past the end of the file");
  }
  std::vector<uint8_t> out(static_cast<size_t>(size));
  s.read_at(offset, out);
  return out;
}

struct EndRecord {
  uint64_t entries = 0;
  uint64_t cd_size = 0;
  uint64_t cd_offset = 0;
  uint64_t end = 0;  // where the central directory must end (the first end record)
};

EndRecord read_end_records(const ByteSource& s) {
  const uint64_t size = s.size();
  if (size < 22) throw corrupt(s.name(), "not a ZIP archive (too short)");
  const uint64_t tail_len = std::min<uint64_t>(size, 22 + 65535);
  const std::vector<uint8_t> tail = read_range(s, size - tail_len, tail_len);
  for (size_t i = tail.size() - 22 + 1; i-- > 0;) {
    const uint8_t* p = tail.data() + i;
    if (u32(p) != kEocdSig || i + 22 + u16(p + 20) > tail.size()) continue;
    const uint64_t eocd = size - tail_len + i;
    if (u16(p + 4) != 0 && u16(p + 4) != 0xFFFF) throw unsupported(s.name(), "multi-disk ZIP");
    EndRecord r{u16(p + 10), u32(p + 12), u32(p + 16), eocd};
    if (r.entries == 0xFFFF || r.cd_size == 0xFFFFFFFF || r.cd_offset == 0xFFFFFFFF) {
      if (eocd < 20) throw corrupt(s.name(), "ZIP64 locator missing");
      const auto loc = read_range(s, eocd - 20, 20);
      if (u32(loc.data()) != kZip64LocatorSig) throw corrupt(s.name(), "ZIP64 locator missing");
      const uint64_t at = u64(loc.data() + 8);
      if (at > eocd - 20) throw corrupt(s.name(), "ZIP64 end record out of place");
      const auto z = read_range(s, at, 56);
      if (u32(z.data()) != kZip64EocdSig) throw corrupt(s.name(), "bad ZIP64 end record");
      r = {u64(z.data() + 32), u64(z.data() + 40), u64(z.data() + 48), at};
    }
    return r;
  }
  throw corrupt(s.name(), "not a ZIP archive (no end of central directory record)");
}

// The ZIP64 extended information of a central record fills the fields that overflowed.
void apply_zip64_extra(const uint8_t* extra, size_t len, SourceZipEntry& e, uint64_t& local,
                       const std::string& archive) {
  for (size_t at = 0; at + 4 <= len;) {
    const uint16_t id = u16(extra + at);
    const uint16_t n = u16(extra + at + 2);
    if (at + 4 + n > len) throw corrupt(archive, "truncated extra field in " + e.name);
    if (id == 0x0001) {
      const uint8_t* p = extra + at + 4;
      size_t left = n;
      const auto take = [&](uint64_t& field) {
        if (left < 8) throw corrupt(archive, "short ZIP64 field in " + e.name);
        field = u64(p);
        p += 8;
        left -= 8;
      };
      if (e.size == 0xFFFFFFFF) take(e.size);
      if (e.compressed_size == 0xFFFFFFFF) take(e.compressed_size);
      if (local == 0xFFFFFFFF) take(local);
    }
    at += 4 + n;
  }
}

}  // namespace

SourceZip::SourceZip(std::shared_ptr<const ByteSource> source) : source_(std::move(source)) {
  const ByteSource& s = *source_;
  const EndRecord end = read_end_records(s);
  if (end.cd_size > kMaxCentralDirectory || end.entries > kMaxEntries) {
    throw corrupt(s.name(), "ZIP central directory too large");
  }
  if (end.cd_offset > end.end || end.cd_size > end.end - end.cd_offset) {
    throw corrupt(s.name(), "ZIP central directory out of bounds");
  }
  const std::vector<uint8_t> cd = read_range(s, end.cd_offset, end.cd_size);
  std::set<std::string_view> names;
  size_t at = 0;
  entries_.reserve(static_cast<size_t>(end.entries));
  for (uint64_t i = 0; i < end.entries; ++i) {
    if (at + 46 > cd.size() || u32(cd.data() + at) != kCentralSig) {
      throw corrupt(s.name(), "bad ZIP central directory record " + std::to_string(i));
    }
    const uint8_t* p = cd.data() + at;
    const size_t name_len = u16(p + 28), extra_len = u16(p + 30), comment_len = u16(p + 32);
    if (at + 46 + name_len + extra_len + comment_len > cd.size()) {
      throw corrupt(s.name(), "truncated ZIP central directory record " + std::to_string(i));
    }
    SourceZipEntry e;
    e.name.assign(reinterpret_cast<const char*>(p + 46), name_len);
    if (u16(p + 8) & 0x0001) throw unsupported(s.name(), "encrypted ZIP member " + e.name);
    e.method = u16(p + 10);
    e.crc32 = u32(p + 16);
    e.compressed_size = u32(p + 20);
    e.size = u32(p + 24);
    uint64_t local = u32(p + 42);
    apply_zip64_extra(p + 46 + name_len, extra_len, e, local, s.name());
    at += 46 + name_len + extra_len + comment_len;

    const auto lh = read_range(s, local, 30);
    if (u32(lh.data()) != kLocalSig) throw corrupt(s.name(), "bad local header of " + e.name);
    e.data_offset = local + 30 + u16(lh.data() + 26) + u16(lh.data() + 28);
    if (e.data_offset > end.cd_offset || e.compressed_size > end.cd_offset - e.data_offset) {
      throw corrupt(s.name(), "member " + e.name + " runs into the central directory");
    }
    if (e.method == 0 && e.compressed_size != e.size) {
      throw corrupt(s.name(), "stored member " + e.name + " has two sizes");
    }
    entries_.push_back(std::move(e));
  }
  for (const SourceZipEntry& e : entries_) {
    if (!names.insert(e.name).second) {
      throw corrupt(s.name(), "ZIP member " + e.name + " appears twice");
    }
  }
}

const SourceZipEntry* SourceZip::find(std::string_view member) const {
  for (const SourceZipEntry& e : entries_) {
    if (e.name == member) return &e;
  }
  return nullptr;
}

void SourceZip::read(const SourceZipEntry& e, uint64_t offset, std::span<uint8_t> out,
                     uint64_t max_inflate) const {
  if (offset > e.size || out.size() > e.size - offset) {
    throw corrupt(name(), "read past the end of member " + e.name);
  }
  if (out.empty()) return;
  if (e.method == 0) {
    source_->read_at(e.data_offset + offset, out);
    return;
  }
  if (offset + out.size() > max_inflate) {
    throw invalid_argument(name() + ": member " + e.name + " is too large to inflate");
  }
  Stream(*this, e).read(offset, out);  // from the member's start
}

std::vector<uint8_t> SourceZip::read_all(const SourceZipEntry& e, uint64_t max_bytes) const {
  if (e.size > max_bytes) {
    throw invalid_argument(name() + ": member " + e.name + " is " + std::to_string(e.size) +
                           " bytes, over the limit of " + std::to_string(max_bytes));
  }
  std::vector<uint8_t> out;
  if (e.method != 0) {
    // The declared size is what the member says, not what it holds: memory grows with the bytes
    // that really inflate (a few hundred bytes of deflate cannot make gigabytes), and a member
    // that inflates short fails before it could ask for more. The stream checks the CRC-32.
    Stream stream(*this, e);
    while (out.size() < e.size) {
      const size_t at = out.size();
      out.resize(at + static_cast<size_t>(std::min<uint64_t>(1 << 20, e.size - at)));
      stream.read(at, std::span(out).subspan(at));
    }
    return out;
  }
  out.resize(static_cast<size_t>(e.size));  // stored: its bytes are in the file
  read(e, 0, out, max_bytes);
  uLong crc = crc32(0, nullptr, 0);
  for (size_t at = 0; at < out.size();) {
    const size_t n = std::min<size_t>(out.size() - at, 1u << 30);
    crc = crc32(crc, out.data() + at, static_cast<uInt>(n));
    at += n;
  }
  if (static_cast<uint32_t>(crc) != e.crc32) throw corrupt(name(), "CRC mismatch in " + e.name);
  return out;
}

struct SourceZip::Stream::State {
  z_stream z{};
  bool initialised = false;
  std::vector<uint8_t> in = std::vector<uint8_t>(1 << 20);
  uint64_t read_in = 0;
  uLong crc = crc32(0, nullptr, 0);  // of the plain bytes so far: checked at the end
  ~State() {
    if (initialised) inflateEnd(&z);
  }
};

SourceZip::Stream::Stream(const SourceZip& zip, const SourceZipEntry& entry)
    : zip_(zip), entry_(entry) {
  if (entry_.method != 8) {
    throw unsupported(zip_.name(), "member " + entry_.name + " uses ZIP method " +
                                       std::to_string(entry_.method) +
                                       " (only stored and deflated are read)");
  }
  restart();
}

SourceZip::Stream::~Stream() = default;

void SourceZip::Stream::restart() {
  state_ = std::make_unique<State>();
  if (inflateInit2(&state_->z, -MAX_WBITS) != Z_OK) throw corrupt(zip_.name(), "zlib init failed");
  state_->initialised = true;
  position_ = 0;
}

void SourceZip::Stream::inflate_to(uint8_t* out, size_t n) {
  z_stream& z = state_->z;
  while (n > 0) {
    const size_t take = z.avail_in != 0
                            ? 0
                            : static_cast<size_t>(std::min<uint64_t>(
                                  state_->in.size(), entry_.compressed_size - state_->read_in));
    if (take > 0) {
      zip_.source_->read_at(entry_.data_offset + state_->read_in,
                            std::span(state_->in.data(), take));
      state_->read_in += take;
      z.next_in = state_->in.data();
      z.avail_in = static_cast<uInt>(take);
    }
    // With the input used up, zlib may still hold output: inflate again before giving up.
    const size_t room = std::min<size_t>(n, 1u << 30);
    z.next_out = out;
    z.avail_out = static_cast<uInt>(room);
    const int rc = ::inflate(&z, Z_NO_FLUSH);
    const size_t made = room - z.avail_out;
    state_->crc = crc32(state_->crc, out, static_cast<uInt>(made));
    out += made;
    n -= made;
    position_ += made;
    if (position_ == entry_.size && static_cast<uint32_t>(state_->crc) != entry_.crc32) {
      throw corrupt(zip_.name(), "CRC mismatch in " + entry_.name);
    }
    if ((rc == Z_STREAM_END ||
         (made == 0 && z.avail_in == 0 && state_->read_in == entry_.compressed_size)) &&
        n > 0) {
      throw corrupt(zip_.name(), "member " + entry_.name + " inflates short");
    }
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      throw corrupt(zip_.name(), "bad deflate data in " + entry_.name);
    }
  }
}

void SourceZip::Stream::read(uint64_t offset, std::span<uint8_t> out) {
  if (offset > entry_.size || out.size() > entry_.size - offset) {
    throw corrupt(zip_.name(), "read past the end of member " + entry_.name);
  }
  if (offset < position_) restart();
  std::vector<uint8_t> skip;
  while (position_ < offset) {
    skip.resize(static_cast<size_t>(std::min<uint64_t>(1 << 20, offset - position_)));
    inflate_to(skip.data(), skip.size());
  }
  inflate_to(out.data(), out.size());
}

SourceZip::Spilled::Spilled(const SourceZip& zip, const SourceZipEntry& entry)
    : name_(zip.name() + ":" + entry.name), size_(entry.size) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd_ < 0) throw io_error(dir, "cannot create a temporary file", errno);
  try {
    Stream stream(zip, entry);
    std::vector<uint8_t> buf(1 << 20);
    for (uint64_t at = 0; at < size_;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size_ - at));
      stream.read(at, std::span(buf.data(), n));
      for (size_t done = 0; done < n;) {
        const ssize_t w = ::pwrite(fd_, buf.data() + done, n - done, static_cast<off_t>(at + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) throw io_error(dir, "cannot write a temporary file", w < 0 ? errno : EIO);
        done += static_cast<size_t>(w);
      }
      at += n;
    }
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SourceZip::Spilled::~Spilled() {
  ::close(fd_);
}

void SourceZip::Spilled::read(uint64_t offset, std::span<uint8_t> out) const {
  if (offset > size_ || out.size() > size_ - offset) {
    throw corrupt(name_, "read past the end of the member");
  }
  for (size_t done = 0; done < out.size();) {
    const ssize_t n =
        ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw io_error(name_, "cannot read the inflated member back", n < 0 ? errno : EIO);
    done += static_cast<size_t>(n);
  }
}

std::function<void(uint64_t, std::span<uint8_t>)> member_reader(
    std::shared_ptr<const SourceZip> zip, const SourceZipEntry& entry, bool in_order) {
  if (entry.method == 0) {
    return [zip, entry](uint64_t offset, std::span<uint8_t> out) { zip->read(entry, offset, out); };
  }
  if (in_order) {
    auto stream = std::make_shared<SourceZip::Stream>(*zip, entry);
    return [zip, stream](uint64_t offset, std::span<uint8_t> out) { stream->read(offset, out); };
  }
  auto spilled = std::make_shared<SourceZip::Spilled>(*zip, entry);
  return [spilled](uint64_t offset, std::span<uint8_t> out) { spilled->read(offset, out); };
}

}  // namespace torshpkg::convert
