#include "torshpkg/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "torshpkg/byte_source.h"
#include "torshpkg/error.h"

namespace torshpkg {

void pread_exact(int fd, std::span<uint8_t> out, uint64_t offset, const std::string& name) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n =
        ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw io_error(name, "read failed", errno);
    }
    if (n == 0) throw corrupt(name, "unexpected end of file");
    done += static_cast<size_t>(n);
  }
}

void write_all(int fd, std::span<const uint8_t> data, const std::string& name) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw io_error(name, "write failed", errno);
    }
    done += static_cast<size_t>(n);
  }
}

void pwrite_all(int fd, std::span<const uint8_t> data, uint64_t offset, const std::string& name) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n =
        ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw io_error(name, "write failed", errno);
    }
    done += static_cast<size_t>(n);
  }
}

std::string read_to_end(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw io_error("pipe", "cannot create", errno);
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

UniqueFd open_read(const std::string& path) {
  // O_NONBLOCK: opening a FIFO (or a device) never waits for a writer; only regular files pass
  // the check below, and for them the flag changes nothing, but it is cleared all the same.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) throw not_found(path, "no such file");
    throw io_error(path, "cannot open", errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw io_error(path, "cannot stat", errno);
  if (S_ISDIR(st.st_mode)) throw invalid_argument(path + ": is a folder, not a file");
  if (!S_ISREG(st.st_mode)) throw invalid_argument(path + ": not a regular file");
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    throw io_error(path, "cannot open", errno);
  }
  return fd;
}

AtomicFile::AtomicFile(const std::string& dest) : dest_(dest) {
  const size_t slash = dest.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : dest.substr(0, slash + 1);
  const std::string base = slash == std::string::npos ? dest : dest.substr(slash + 1);
  path_ = dir + "." + base + ".tmp-XXXXXX";
  fd_.reset(::mkstemp(path_.data()));
  if (!fd_) throw io_error(dest, "cannot create temporary file", errno);
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd_.get(), 0666 & ~mask);
}

AtomicFile::~AtomicFile() {
  if (!committed_) ::unlink(path_.c_str());
}

void AtomicFile::commit() {
  if (::fsync(fd_.get()) != 0) throw io_error(dest_, "fsync failed", errno);
  if (::rename(path_.c_str(), dest_.c_str()) != 0) {
    throw io_error(dest_, "cannot rename into place", errno);
  }
  committed_ = true;
  const size_t slash = dest_.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : dest_.substr(0, slash + 1);
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd) ::fsync(dir_fd.get());
}

namespace {

class FileSource final : public ByteSource {
 public:
  FileSource(UniqueFd fd, uint64_t size, std::string name)
      : fd_(std::move(fd)), size_(size), name_(std::move(name)) {}
  ~FileSource() override {
    if (map_ != nullptr) ::munmap(map_, size_);
  }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  uint64_t size() const override { return size_; }
  const std::string& name() const override { return name_; }
  void read_at(uint64_t offset, std::span<uint8_t> out, ReadOptions options) const override {
    if (offset > size_ || out.size() > size_ - offset) {
      throw corrupt(name_, "read past end of file");
    }
    if (!options.uncached || !read_direct(offset, out)) pread_exact(fd_.get(), out, offset, name_);
  }
  void advise(uint64_t offset, uint64_t length, Advice advice) const override {
    if (advice == Advice::kPlanned) {
      ::posix_fadvise(fd_.get(), 0, 0, POSIX_FADV_RANDOM);
    } else {
      ::posix_fadvise(fd_.get(), static_cast<off_t>(offset), static_cast<off_t>(length),
                      POSIX_FADV_WILLNEED);
    }
  }

 private:
  // Reads with direct I/O; false when the file cannot be (nothing was read).
  bool read_direct(uint64_t offset, std::span<uint8_t> out) const {
    std::call_once(direct_once_, [this] {
      // The same file opened again, for direct I/O (not every file system allows it), and
      // mapped, never touched, so that mincore tells which of its pages the page cache holds.
      const std::string self = "/proc/self/fd/" + std::to_string(fd_.get());
      direct_fd_.reset(::open(self.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
      void* map =
          size_ > 0 ? ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_.get(), 0) : MAP_FAILED;
      map_ = map == MAP_FAILED ? nullptr : map;
    });
    if (!direct_fd_ || direct_refused_) return false;
    if (out.empty() || cached(offset, out.size())) {
      // A direct read would fetch from the disk what is in memory already.
      pread_exact(fd_.get(), out, offset, name_);
      return true;
    }
    const size_t room = uncached_room(out.size());
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(direct_fd_.get(), out.data() + done, room - done,
                                static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EINVAL && done == 0) {  // an alignment the device refuses: buffered from now
          direct_refused_ = true;
          return false;
        }
        throw io_error(name_, "read failed", errno);
      }
      // A direct read ends short only at the end of the file, which the check above excludes.
      if (n == 0) throw corrupt(name_, "unexpected end of file");
      done += static_cast<size_t>(n);
    }
    return true;
  }

  // Whether the page cache holds every page of [offset, offset + length).
  bool cached(uint64_t offset, size_t length) const {
    if (map_ == nullptr) return false;
    static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t begin = offset / page * page;
    const size_t pages = static_cast<size_t>((offset + length - begin + page - 1) / page);
    thread_local std::vector<unsigned char> resident;
    resident.resize(pages);
    if (::mincore(static_cast<uint8_t*>(map_) + begin, offset + length - begin, resident.data()) !=
        0) {
      return false;
    }
    return std::all_of(resident.begin(), resident.end(), [](unsigned char r) { return r & 1; });
  }

  UniqueFd fd_;
  uint64_t size_;
  std::string name_;
  mutable std::once_flag direct_once_;
  mutable UniqueFd direct_fd_;
  mutable std::atomic<bool> direct_refused_{false};
  mutable void* map_ = nullptr;
};

class MemorySource final : public ByteSource {
 public:
  MemorySource(std::vector<uint8_t> bytes, std::string name)
      : bytes_(std::move(bytes)), name_(std::move(name)) {}
  uint64_t size() const override { return bytes_.size(); }
  const std::string& name() const override { return name_; }
  void read_at(uint64_t offset, std::span<uint8_t> out, ReadOptions) const override {
    if (offset > bytes_.size() || out.size() > bytes_.size() - offset) {
      throw corrupt(name_, "read past end of file");
    }
    std::copy_n(bytes_.begin() + static_cast<ptrdiff_t>(offset), out.size(), out.begin());
  }

 private:
  std::vector<uint8_t> bytes_;
  std::string name_;
};

}  // namespace

std::shared_ptr<ByteSource> open_file_source(const std::string& path) {
  UniqueFd fd = open_read(path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw io_error(path, "cannot stat", errno);
  return std::make_shared<FileSource>(std::move(fd), static_cast<uint64_t>(st.st_size), path);
}

std::shared_ptr<ByteSource> file_source_from_fd(int raw_fd, std::string name) {
  UniqueFd fd(raw_fd);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw io_error(name, "cannot stat", errno);
  if (!S_ISREG(st.st_mode)) throw invalid_argument(name + ": not a regular file");
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || (flags & O_ACCMODE) == O_WRONLY) {
    throw invalid_argument(name + ": not open for reading");
  }
  if ((flags & O_NONBLOCK) != 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  return std::make_shared<FileSource>(std::move(fd), static_cast<uint64_t>(st.st_size),
                                      std::move(name));
}

std::shared_ptr<ByteSource> fd_source(UniqueFd fd, uint64_t size, std::string name) {
  return std::make_shared<FileSource>(std::move(fd), size, std::move(name));
}

std::shared_ptr<ByteSource> memory_source(std::vector<uint8_t> bytes, std::string name) {
  return std::make_shared<MemorySource>(std::move(bytes), std::move(name));
}

}  // namespace torshpkg
