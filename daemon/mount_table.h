// The packages torshpkgd has mounted, reconciled against the config on start and on reload.
// Thread-safe: control requests are served on threads of their own and reloads run on a worker
// thread, while the main thread keeps answering systemd. The table's lock is never held across
// slow work (pulls, key derivation, mounting): a mount is prepared unlocked and then committed.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "config.h"
#include "event_log.h"
#include "mount_access.h"
#include "package_fs.h"
#include "remote_source.h"
#include "requester.h"
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
  fs::MountAccess access;
  uid_t requested_by = 0;
  bool from_config = true;
  fs::FsStats stats;
  // A lazy http(s):// mount: what it has fetched, and from where.
  struct Remote {
    std::string first_choice;  // the URL read from first (a mirror, or the origin)
    uint64_t requests = 0;
    uint64_t bytes = 0;
    uint64_t retries = 0;
    uint64_t other_copies = 0;  // reads of another copy after bytes failed their hash
    uint64_t failovers = 0;     // reads sent to the next copy after the first choice failed
  };
  std::optional<Remote> remote;
};

// A config entry that is not mounted, and why (or that it is being mounted now).
struct PendingMount {
  std::string package;
  std::string mountpoint;
  std::string error;  // empty while it is being mounted
};

// What a mount is decided by, besides its entry: the daemon's policy.
struct MountContext {
  std::string trusted_keys_dir;
  std::string mountpoint_root;       // config entries only; empty: never create mount points
  std::string registry_credentials;  // docker-style config.json for oci:// pulls
  uint32_t pull_timeout_s = 30;
  std::string disk_cache;  // for lazy remote mounts; empty: none
  uint64_t disk_cache_bytes = 0;

  static MountContext of(const DaemonConfig& config);
};

// What the mounts share, as `torshpkg status` shows it.
struct SharedUsage {
  uint64_t memory_budget = 0;
  uint64_t memory_used = 0;  // decoded chunks of every mount, and those being decoded
  size_t decode_threads = 0;
  size_t decode_threads_running = 0;
  uint32_t idle_release_s = 0;
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
  // crashed daemon; several at a time, so a slow pull delays only its own), unmounts those no
  // longer listed or whose entry changed. A removed mount is detached at once; files still open
  // on it keep reading until closed. Never throws: failures are in the outcome and in status().
  Outcome apply(const DaemonConfig& config);

  // Mounts one entry now for `who`. Throws torshpkg::Error when refused (every other exception
  // is turned into one). Mounts made through the control socket (from_config false) are left
  // alone by apply(). A member (who.privileged false) mounts the package file, onto the folder
  // and with the secret its client opened and passed in `files`: never a path the daemon opens
  // for it, so what it mounts is what it can read. The folder must be its own and empty, a
  // secret file its own, the package signed by a key the daemon trusts, and the mount is owned
  // by the member.
  MountStatus mount(const MountEntry& entry, const MountContext& context, bool from_config,
                    const Requester& who, const PassedFiles& files);
  // Unmounts torshpkgd's mount on `mountpoint` for `who` (a member only its own). Returns false
  // when torshpkgd has none there. Refuses (Error(kInvalidArgument)) when something else is
  // mounted on top of it. Not lazy: fails with Error(kIo) while files are open (as umount
  // does). Lazy: detaches at once.
  bool unmount(const std::string& mountpoint, bool lazy, const Requester& who);

  // Detaches every mount and waits up to `grace` for open files to close; then ends the
  // connections of the mounts still busy (their readers get ENOTCONN). Mounts still being
  // prepared are taken down as they finish.
  void stop_all(std::chrono::milliseconds grace);

  // Forgets mounts whose session ended: unmounted from outside, or detached and closed.
  void reap();

  // Sets what the mounts share (memory_budget, decode_threads, idle_release_s), for the mounts
  // there are and those to come; apply() does it first.
  void set_limits(const DaemonConfig& config);
  // Mounts nobody has read for idle_release_s give their decoded chunks back.
  void release_idle();
  SharedUsage usage() const;

  std::vector<MountStatus> status() const;
  std::vector<PendingMount> pending() const;
  size_t size() const;
  // "3 mounted, 1 failed" style line for STATUS=.
  std::string summary() const;

 private:
  struct Mounted {
    MountEntry entry;
    MountContext context;
    std::unique_ptr<fs::PackageFs> fs;
    std::unique_ptr<fs::Session> session;  // destroyed before fs
    MountStatus status;
    std::shared_ptr<const distribution::RemoteSource> remote;  // a lazy http(s):// mount
    std::jthread prefetch;  // "prefetch": "all"; stopped and joined before fs goes
  };
  void unmount_entry(std::unique_ptr<Mounted> m, const Requester& who);

  EventLog& log_;
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Mounted>> mounts_;  // by canonical mount point
  std::set<std::string> preparing_;                         // canonical mount points
  std::map<std::string, PendingMount> config_pending_;      // by the entry's mount point
  std::vector<std::unique_ptr<Mounted>> draining_;          // detached, readers still open
  bool stopping_ = false;
  const std::shared_ptr<fs::SharedBudget> memory_ =
      std::make_shared<fs::SharedBudget>(kDefaultMemoryBudget);
  const std::shared_ptr<fs::ThreadLimit> threads_ =
      std::make_shared<fs::ThreadLimit>(kDefaultDecodeThreads);
  std::atomic<uint32_t> idle_release_s_{60};
};

// Clears a mount point a crashed server left behind ("Transport endpoint is not connected" on
// statfs). Returns true when it cleared one.
bool clear_stale_mountpoint(const std::string& mountpoint);

}  // namespace torshpkg::daemon
