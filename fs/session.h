// One mounted package: a FUSE session served by its own threads. `torshpkg mount` runs one per
// process; torshpkgd runs many in one process.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mount_point.h"
#include "package_fs.h"

struct fuse_session;

namespace torshpkg::fs {

// Thread-safe. The PackageFs must outlive the session.
class Session {
 public:
  // Mounts `fs` on the checked folder `point` (read-only, FUSE low-level; as root onto the opened
  // folder itself, otherwise through fusermount3 by path) and serves it on background threads.
  // Returns once the kernel's INIT exchange is done and the mount answers; then raises the
  // mount's kernel readahead (FsOptions::kernel_read_ahead_kb). Throws Error(kIo) naming the
  // mount point when it cannot mount. Signals are not handled here: the caller owns them.
  static std::unique_ptr<Session> start(PackageFs& fs, const MountPoint& point,
                                        const std::vector<std::string>& fuse_options);
  // Detaches, then waits for the loop to end (aborting the connection when it does not end
  // within a few seconds).
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Removes the mount from the namespace at once (a lazy unmount): files still open keep
  // reading until they are closed, then the loop ends. Idempotent. Only this session's mount is
  // touched: when the mount point shows another file system (something mounted on top), nothing
  // is unmounted and this returns false.
  bool detach();
  // Whether the mount point shows this session's mount (not something mounted over it).
  bool on_top() const;
  // Ends the connection now: open files get ENOTCONN and the loop ends. Needs root (the fusectl
  // filesystem, mounted on demand). Returns false when the connection could not be reached.
  bool abort();
  // Whether the loop has ended: unmounted from outside, or detached and every file closed.
  bool ended() const;
  // Waits until ended() or `timeout` passes; returns ended().
  bool wait_for(std::chrono::milliseconds timeout) const;

  const std::string& mountpoint() const { return mountpoint_; }
  PackageFs& filesystem() const { return fs_; }
  dev_t device() const { return device_; }

 private:
  Session(PackageFs& fs, std::string mountpoint) : fs_(fs), mountpoint_(std::move(mountpoint)) {}
  void run();

  PackageFs& fs_;
  const std::string mountpoint_;
  struct DestroySession {
    void operator()(fuse_session* s) const;
  };
  std::unique_ptr<fuse_session, DestroySession> session_;  // destroyed after the loop ends
  dev_t device_ = 0;
  mutable std::mutex mutex_;
  mutable std::condition_variable ended_cv_;
  bool ended_ = false;
  bool detached_ = false;
  std::thread loop_;
};

// The standalone server (`torshpkg mount`): mounts `fs` on `mountpoint` and serves it until
// unmounted from outside or sent SIGINT, SIGTERM or SIGHUP (then detaches, gives open files a few
// seconds, and ends the connection). `ready` is called once the kernel has finished
// its INIT exchange and the mount answers, or with an error message when mounting failed;
// returns the process exit status.
int serve(PackageFs& fs, const MountPoint& point, const std::vector<std::string>& fuse_options,
          const std::function<void(const std::string& error)>& ready);

}  // namespace torshpkg::fs
