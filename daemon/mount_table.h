// The packages torshpkgd has mounted, reconciled against the config on start and on reload.
// Not thread-safe: the daemon's main thread owns it (the mounts' own threads only serve reads
// and report through the EventLog).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "event_log.h"
#include "package_fs.h"
#include "session.h"

namespace torshpkg::daemon {

// One mount as `torshpkg status` shows it.
struct MountStatus {
  std::string package;  // name@version
  std::string path;     // package file
  std::string mountpoint;
  std::string signer;  // key id, empty when unsigned
  std::string digest;
  std::string since;  // UTC, RFC 3339
  fs::FsStats stats;
};

class MountTable {
 public:
  explicit MountTable(EventLog& log) : log_(log) {}
  ~MountTable();
  MountTable(const MountTable&) = delete;
  MountTable& operator=(const MountTable&) = delete;

  struct Outcome {
    size_t mounted = 0;                 // newly mounted
    size_t unmounted = 0;               // removed from the namespace
    std::vector<std::string> failures;  // one line each; the other mounts are not affected
  };
  // Mounts the config's entries that are not mounted (clearing stale mount points left by a
  // crashed daemon), unmounts those no longer listed or whose entry changed. A removed mount is
  // detached at once; files still open on it keep reading until closed.
  Outcome apply(const DaemonConfig& config);

  // Mounts one entry now. Throws torshpkg::Error when refused. Mounts made through the control
  // socket (from_config false) are left alone by apply().
  const MountStatus& mount(const MountEntry& entry, const std::string& trusted_keys_dir,
                           bool from_config);
  // Unmounts the mount on `mountpoint`; false when there is none. Not lazy: fails with
  // Error(kIo) while files are open (as umount does). Lazy: detaches at once.
  bool unmount(const std::string& mountpoint, bool lazy);

  // Detaches every mount and waits up to `grace` for open files to close; then ends the
  // connections of the mounts still busy (their readers get ENOTCONN).
  void stop_all(std::chrono::milliseconds grace);

  // Forgets mounts whose session ended: unmounted from outside, or detached and closed.
  void reap();

  std::vector<MountStatus> status() const;
  size_t size() const { return mounts_.size(); }
  // "3 mounted, 1 failed" style line for STATUS=.
  std::string summary(size_t failed) const;

 private:
  struct Mounted {
    MountEntry entry;
    std::string trusted_keys_dir;
    bool from_config = true;
    std::unique_ptr<fs::PackageFs> fs;
    std::unique_ptr<fs::Session> session;  // destroyed before fs
    MountStatus status;
  };
  void unmount_entry(std::unique_ptr<Mounted> m);

  EventLog& log_;
  std::map<std::string, std::unique_ptr<Mounted>> mounts_;  // by mountpoint
  std::vector<std::unique_ptr<Mounted>> draining_;          // detached, readers still open
};

// Clears a mount point a crashed server left behind ("Transport endpoint is not connected" on
// statfs).
// Returns true when it cleared one.
bool clear_stale_mountpoint(const std::string& mountpoint);

}  // namespace torshpkg::daemon
