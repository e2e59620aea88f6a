// The one way to own a file descriptor (UniqueFd), whole-buffer I/O that retries short
// reads/writes and EINTR, files that appear whole or not at all (AtomicFile), and temporary
// paths removed unless kept (TempPath).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Each throws Error(kIo) naming `name` on failure; pread_exact throws Error(kCorrupt) when the
// file ends before the buffer is full.
void pread_exact(int fd, std::span<uint8_t> out, uint64_t offset, const std::string& name);
void write_all(int fd, std::span<const uint8_t> data, const std::string& name);
void pwrite_all(int fd, std::span<const uint8_t> data, uint64_t offset, const std::string& name);

// Everything read from `fd` until end of file (a pipe: until every writer closed it); stops at
// the first error other than EINTR.
std::string read_to_end(int fd);

// Wraps an open descriptor of `size` bytes as a ByteSource named `name`.
std::shared_ptr<class ByteSource> fd_source(UniqueFd fd, uint64_t size, std::string name);

// A file written beside `dest` under a temporary name and renamed over `dest` only by commit();
// destroyed without commit, it removes itself. Not thread-safe.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& dest);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  int fd() const { return fd_.get(); }
  // fsyncs the file, renames it into place and fsyncs the folder.
  void commit();

 private:
  std::string dest_;
  std::string path_;
  UniqueFd fd_;
  bool committed_ = false;
};

// Both ends of a pipe, close-on-exec.
struct Pipe {
  UniqueFd read;
  UniqueFd write;
};
// Throws Error(kIo).
Pipe make_pipe();

// A path removed (unlinked) when this goes, unless keep() was called: a temporary file being
// filled that is renamed into place only once it is whole.
class TempPath {
 public:
  explicit TempPath(std::string path) : path_(std::move(path)) {}
  ~TempPath() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  TempPath(const TempPath&) = delete;
  TempPath& operator=(const TempPath&) = delete;

  const std::string& path() const { return path_; }
  void keep() { path_.clear(); }

 private:
  std::string path_;
};

// Opens a regular file for reading without ever blocking (a FIFO or device path is refused, not
// waited on); throws kNotFound when absent, kInvalidArgument when not a regular file, kIo
// otherwise.
UniqueFd open_read(const std::string& path);

}  // namespace torshpkg

#pragma GCC visibility pop
