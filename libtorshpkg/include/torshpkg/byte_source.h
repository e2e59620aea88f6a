// Random-access bytes a package is read from: a file, or memory (tests, fuzzing).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

// What reads past the page cache need: the file offset and the memory both at a multiple of this
// many bytes, and room in memory for the length rounded up to it.
inline constexpr size_t kUncachedAlignment = 4096;
// `size` rounded up to a multiple of kUncachedAlignment: the room a read past the page cache
// may fill.
inline constexpr size_t uncached_room(size_t size) {
  return (size + kUncachedAlignment - 1) / kUncachedAlignment * kUncachedAlignment;
}

// How a read is meant. Sources that cannot honour an intent read as usual.
struct ReadOptions {
  // Past the page cache where the source can (a file opened for direct I/O): `offset` and
  // `out.data()` must then be multiples of kUncachedAlignment and the memory must have room for
  // out.size() rounded up to it (those bytes beyond out.size() may be overwritten).
  bool uncached = false;
  // Which of the source's copies to read (see ByteSource::copies): 0, its first choice; 1 to
  // copies() - 1, the others in its order. A package asks for another copy of bytes that failed
  // their hash. Sources with one copy ignore it.
  uint32_t copy = 0;
};

// What a reader tells a source about the reads to come.
enum class Advice {
  // [offset, offset + length) will be read soon: a file starts reading it from disk.
  kWillNeed,
  // Reads will be exactly what is needed, and runs announced with kWillNeed: a file stops
  // reading ahead on its own (which for a random read fetches megabytes nobody asked for).
  // Offset and length are ignored.
  kPlanned,
};

// Random-access bytes. Implementations are safe to call from many threads at once.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  // The name used in error messages (the file's path).
  virtual const std::string& name() const = 0;
  // Fills `out` with the bytes at [offset, offset + out.size()). Throws Error(kCorrupt) when the
  // range passes the end and Error(kIo) when the read fails.
  virtual void read_at(uint64_t offset, std::span<uint8_t> out, ReadOptions options = {}) const = 0;
  // A hint; never fails; does nothing by default.
  virtual void advise(uint64_t /*offset*/, uint64_t /*length*/, Advice /*advice*/) const {}

  // Reads that start and end on multiples of this many bytes are the cheapest (a package
  // resource's chunk size); 0 when any size will do.
  uint64_t read_unit() const { return read_unit_; }
  // How many copies of the bytes the source can read from (a web origin and its mirrors); 1
  // for a file.
  uint32_t copies() const { return copies_; }

 protected:
  explicit ByteSource(uint64_t read_unit = 0, uint32_t copies = 1)
      : read_unit_(read_unit), copies_(copies) {}

 private:
  uint64_t read_unit_;
  uint32_t copies_;
};

// Opens `path` read-only. Throws Error(kNotFound / kIo), Error(kInvalidArgument) for anything but
// a regular file (a FIFO is refused without waiting for a writer).
std::shared_ptr<ByteSource> open_file_source(const std::string& path);
// The same for a descriptor opened elsewhere (for example by another user, passed over a
// socket); takes ownership of `fd`, closing it on failure. `name` is used in messages.
std::shared_ptr<ByteSource> file_source_from_fd(int fd, std::string name);
std::shared_ptr<ByteSource> memory_source(std::vector<uint8_t> bytes, std::string name);

}  // namespace torshpkg

#pragma GCC visibility pop
