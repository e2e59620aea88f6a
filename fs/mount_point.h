// The folder a package is mounted on, checked and held open from the check to the mount so
// that nobody can swap it (or a folder above it) in between.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace torshpkg::fs {

struct MountPointRules {
  // Mount over a folder that has files in it (they are hidden while mounted).
  bool allow_nonempty = false;
  // When the folder does not exist: created (with its missing parents, mode 0755) only when it
  // lies under this folder; empty: never created.
  std::string create_under;
  // The folder must belong to this user (checked on the opened folder); -1: anyone.
  uid_t required_owner = static_cast<uid_t>(-1);
};

class MountPoint {
 public:
  // Resolves `path` once: its parent to a canonical path (symlinks above it resolved), then the
  // last component opened without following a symlink. Refuses (Error(kInvalidArgument) or
  // kNotFound, naming the way out) a symlink, anything but a folder, a folder that is a mount
  // point already, and a folder with files in it unless allowed.
  static MountPoint open(const std::string& path, const MountPointRules& rules);
  // The same checks for a folder opened elsewhere (by a client with its own credentials): takes
  // ownership of `fd`; the path is what the kernel says the folder's is, and must still lead to
  // it. `create_under` does not apply.
  static MountPoint from_fd(int fd, const MountPointRules& rules);

  ~MountPoint();
  MountPoint(MountPoint&& other) noexcept;
  MountPoint& operator=(MountPoint&&) = delete;
  MountPoint(const MountPoint&) = delete;

  // The canonical path: what mount tables show and what unmounting names.
  const std::string& path() const { return path_; }
  // What mount(2) should be given: the opened folder itself (/proc/self/fd/N), so the mount
  // lands on the folder that was checked even if a path component changed since.
  std::string target() const;
  dev_t device() const { return device_; }
  int fd() const { return fd_; }

 private:
  static MountPoint checked(std::string canonical, int fd, const MountPointRules& rules);
  MountPoint(std::string path, int fd, dev_t device)
      : path_(std::move(path)), fd_(fd), device_(device) {}
  std::string path_;
  int fd_ = -1;
  dev_t device_ = 0;
};

// The path mount tables show for the folder `dir` names: absolute, its parent resolved, the last
// component kept (as MountPoint::open computes it, without checking anything).
std::string canonical_mount_path(const std::string& dir);

// Whether `path` is a FUSE mount whose server is gone ("Transport endpoint is not connected":
// statfs always reaches the server, where a stat may be answered from the kernel's cache).
bool is_dead_mount(const std::string& path);

// Whether the folder open as `fd` is the root of a mount.
bool is_mount_root(int fd);

// One line of /proc/self/mountinfo.
struct MountInfo {
  int id = 0;
  int parent = 0;
  std::string point;   // unescaped
  std::string fstype;  // "fuse.torshpkg", "tmpfs", ...
  std::string source;
};
std::vector<MountInfo> read_mountinfo();
// The mount on top at `path` (the last one mounted there), if any.
std::optional<MountInfo> top_mount_at(const std::string& path);

}  // namespace torshpkg::fs
