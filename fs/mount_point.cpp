#include "mount_point.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/stat.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "torshpkg/error.h"
#include "torshpkg/file_io.h"

namespace torshpkg::fs {
namespace {

bool has_entries(int dir_fd) {
  const int dup = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) return false;
  DIR* d = ::fdopendir(dup);
  if (d == nullptr) {
    ::close(dup);
    return false;
  }
  bool found = false;
  while (const dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      found = true;
      break;
    }
  }
  ::closedir(d);
  return found;
}

// Makes `path` and its missing parents when it lies under `root` (both canonical in the part
// that exists); false when it does not lie there.
bool create_under(const std::string& path, const std::string& root) {
  if (root.empty()) return false;
  char resolved[PATH_MAX];
  if (::realpath(root.c_str(), resolved) == nullptr) return false;
  const std::filesystem::path target = std::filesystem::path(path).lexically_normal();
  const std::string base = resolved;
  const std::string t = target.string();
  if (t.size() <= base.size() || t.compare(0, base.size(), base) != 0 ||
      (base != "/" && t[base.size()] != '/')) {
    return false;
  }
  // One component at a time below the root, none of them followed if it is a symlink.
  int dir = ::open(base.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return false;
  bool ok = true;
  for (const auto& part : std::filesystem::path(t.substr(base.size()))) {
    const std::string name = part.string();
    if (name.empty() || name == "/") continue;
    if (name == "." || name == "..") {
      ok = false;
      break;
    }
    if (::mkdirat(dir, name.c_str(), 0755) != 0 && errno != EEXIST) {
      ok = false;
      break;
    }
    const int next = ::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    ::close(dir);
    dir = next;
    if (dir < 0) {
      ok = false;
      break;
    }
  }
  if (dir >= 0) ::close(dir);
  return ok;
}

}  // namespace

bool is_mount_root(int fd) {
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, &stx) == 0 &&
      (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0) {
    return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  }
  // Older kernels: a mount root is on another device than its parent (bind mounts of the same
  // file system aside).
  struct stat self {
  }, parent{};
  if (::fstat(fd, &self) != 0 || ::fstatat(fd, "..", &parent, 0) != 0) return false;
  return self.st_dev != parent.st_dev || self.st_ino == parent.st_ino;
}

MountPoint::~MountPoint() {
  if (fd_ >= 0) ::close(fd_);
}

MountPoint::MountPoint(MountPoint&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), device_(other.device_) {
  other.fd_ = -1;
}

std::string MountPoint::target() const {
  return "/proc/self/fd/" + std::to_string(fd_);
}

namespace {

// Absolute, with "." and ".." worked out and no trailing slash; nothing resolved.
std::string lexical_path(const std::string& given) {
  std::string path = std::filesystem::absolute(given).lexically_normal().string();
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

// `path` (lexical) with its parent resolved; nullopt when the parent does not resolve.
std::optional<std::string> with_resolved_parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string parent = slash == 0 ? "/" : path.substr(0, slash);
  char resolved[PATH_MAX];
  if (::realpath(parent.c_str(), resolved) == nullptr) return std::nullopt;
  const std::string base = resolved;
  return (base == "/" ? "" : base) + "/" + path.substr(slash + 1);
}

}  // namespace

bool is_dead_mount(const std::string& path) {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) != 0 && errno == ENOTCONN;
}

std::string canonical_mount_path(const std::string& dir) {
  const std::string path = lexical_path(dir);
  if (path == "/") return path;
  return with_resolved_parent(path).value_or(path);
}

MountPoint MountPoint::open(const std::string& given, const MountPointRules& rules) {
  if (given.empty()) throw invalid_argument("mount point: empty path");
  const std::string path = lexical_path(given);
  if (path == "/") throw invalid_argument("/: cannot mount on the root folder");
  const size_t slash = path.rfind('/');
  const std::string name = path.substr(slash + 1);
  std::optional<std::string> found = with_resolved_parent(path);
  if (!found && errno == ENOENT && create_under(path, rules.create_under)) {
    found = with_resolved_parent(path);
  }
  if (!found) {
    const std::string parent = slash == 0 ? "/" : path.substr(0, slash);
    if (rules.create_under.empty()) {
      throw not_found(parent, "no such folder (create the mount point first)");
    }
    throw not_found(parent, "no such folder, and the mount point is not under " +
                                rules.create_under + " where mount points are made");
  }
  const std::string canonical = *found;
  const std::string parent = canonical.substr(0, std::max<size_t>(canonical.rfind('/'), 1));
  UniqueFd parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (parent_fd.get() < 0) throw io_error(parent, "cannot open", errno);
  UniqueFd fd(
      ::openat(parent_fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0 && errno == ENOENT) {
    if (!create_under(canonical, rules.create_under)) {
      throw not_found(canonical, rules.create_under.empty()
                                     ? "no such folder (create the mount point first)"
                                     : "no such folder, and it is not under " + rules.create_under +
                                           " where mount points are made");
    }
    fd.reset(
        ::openat(parent_fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  }
  if (fd.get() < 0) {
    const int err = errno;
    struct stat st {};
    if (::fstatat(parent_fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISLNK(st.st_mode)) {
        throw invalid_argument(canonical +
                               ": the mount point is a symlink; give the folder it points to");
      }
      if (!S_ISDIR(st.st_mode)) throw invalid_argument(canonical + ": mount point is not a folder");
    }
    throw io_error(canonical, "cannot open the mount point", err);
  }
  return checked(canonical, fd.release(), rules);
}

MountPoint MountPoint::from_fd(int raw_fd, const MountPointRules& rules) {
  UniqueFd fd(raw_fd);
  char buf[PATH_MAX];
  const std::string self = "/proc/self/fd/" + std::to_string(raw_fd);
  const ssize_t n = ::readlink(self.c_str(), buf, sizeof buf - 1);
  if (n <= 0 || buf[0] != '/') throw invalid_argument("mount point: not a folder of this host");
  const std::string path(buf, static_cast<size_t>(n));
  struct stat by_fd {
  }, by_path{};
  if (::fstat(raw_fd, &by_fd) != 0 || !S_ISDIR(by_fd.st_mode)) {
    throw invalid_argument(path + ": mount point is not a folder");
  }
  if (::lstat(path.c_str(), &by_path) != 0 || by_path.st_dev != by_fd.st_dev ||
      by_path.st_ino != by_fd.st_ino) {
    throw invalid_argument(path + ": the mount point was moved or replaced");
  }
  return checked(path, fd.release(), rules);
}

MountPoint MountPoint::checked(std::string canonical, int raw_fd, const MountPointRules& rules) {
  UniqueFd fd(raw_fd);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw io_error(canonical, "cannot stat", errno);
  if (!S_ISDIR(st.st_mode)) throw invalid_argument(canonical + ": mount point is not a folder");
  if (rules.required_owner != static_cast<uid_t>(-1) && st.st_uid != rules.required_owner) {
    throw invalid_argument(canonical + ": the mount point belongs to another user (uid " +
                           std::to_string(st.st_uid) + "); give a folder of your own");
  }
  if (is_mount_root(fd.get())) {
    throw invalid_argument(canonical +
                           ": already mounted: something is mounted there (unmount it first)");
  }
  if (!rules.allow_nonempty && has_entries(fd.get())) {
    throw invalid_argument(canonical +
                           ": the mount point is not empty (its files would be hidden); give "
                           "--nonempty (-o nonempty) to mount over them");
  }
  return MountPoint(std::move(canonical), fd.release(), st.st_dev);
}

namespace {

// Octal escapes (\040 for a space) as the kernel writes them.
std::string unescape(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      out += static_cast<char>(std::stoi(field.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

}  // namespace

std::vector<MountInfo> read_mountinfo() {
  std::vector<MountInfo> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    MountInfo m;
    std::string dev, root, point, options, field;
    fields >> m.id >> m.parent >> dev >> root >> point >> options;
    while (fields >> field && field != "-") {
    }
    fields >> m.fstype >> m.source;
    m.point = unescape(point);
    m.source = unescape(m.source);
    out.push_back(std::move(m));
  }
  return out;
}

std::optional<MountInfo> top_mount_at(const std::string& path) {
  std::optional<MountInfo> top;
  for (MountInfo& m : read_mountinfo()) {
    if (m.point == path) top = std::move(m);
  }
  return top;
}

}  // namespace torshpkg::fs
