// torshpkgd's configuration: a JSON file naming the control socket, the lineage journal, the
// trusted keys and the packages to mount. Every key is optional except each mount's package and
// mountpoint; unknown keys and wrong types are errors that name the key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mount_access.h"
#include "package_fs.h"

namespace torshpkg::daemon {

struct MountEntry {
  // Absolute path of the .torshpkg file; NAME@REQ: the highest matching version in `store`,
  // resolved when the entry is mounted; or oci://REF or an http(s):// URL: pulled into `store`
  // (digest checked, installed under the trust policy), then mounted.
  std::string package;
  std::string store;          // the store for a NAME@REQ package; empty for a path
  std::string mountpoint;     // absolute path of an empty folder (see mountpoint_root)
  std::string password_file;  // empty: none
  std::string key_file;       // empty: none
  bool allow_unsigned = false;
  // For a remote source: accept it giving an older version, or another package, than it gave
  // before (otherwise a rollback or substitution is refused).
  bool allow_downgrade = false;
  // For an http(s):// or oci:// source: mount it without downloading it (range requests, every
  // chunk verified as it is read), instead of pulling it into the store first.
  bool lazy = false;
  // For a lazy entry: fetch the whole package into the disk cache in the background.
  bool prefetch_all = false;
  std::string require_key;  // only a signature by this trusted key counts; empty: any
  // Who may read it: owner (default root), group, mode (default 0400 for an encrypted package,
  // 0444 otherwise), as `torshpkg mount --owner --group --mode`.
  fs::AccessRequest access;
  bool nonempty = false;  // mount over a folder with files in it
  // Also mount the package's dependencies, resolved in `store`, beside the mountpoint
  // (<parent>/<dependency name>). A path or NAME@REQ package only.
  bool with_deps = false;
  // Read stored chunks through the page cache too (fs::FsOptions::direct_reads off).
  bool buffered_reads = false;
  // Bytes of decoded chunks the mount keeps, and the kernel's readahead for it in KiB (0: the
  // kernel's own), as `torshpkg mount --cache-size` and `--kernel-readahead`.
  uint64_t cache_bytes = fs::kDefaultCacheBytes;
  uint32_t kernel_read_ahead_kb = fs::kDefaultKernelReadAheadKb;

  bool operator==(const MountEntry&) const = default;
};

inline constexpr uint64_t kDefaultMemoryBudget = 1ull << 30;
inline constexpr uint32_t kDefaultDecodeThreads = 64;

struct DaemonConfig {
  std::string control_socket = "/run/torshpkg/torshpkgd.sock";
  std::string lineage_journal = "/var/lib/torshpkg/lineage.jsonl";
  std::string trusted_keys_dir = "/etc/torshpkg/trusted-keys";
  std::string store = "/var/lib/torshpkg/store";
  // Members of this group (a name or a number) may mount and unmount through the control
  // socket, under the rules in docs/ARCHITECTURE.md; empty: only root.
  std::string control_group;
  // Missing mount points of config entries are made only under this folder; empty: never.
  std::string mountpoint_root;
  // Docker-style credentials for oci:// pulls ({"auths": {...}}); empty: none.
  std::string registry_credentials;
  // A pull that moves under 1 byte/s for this long is given up (and retried).
  uint32_t pull_timeout_s = 30;
  // Where lazy remote mounts keep the chunks they have verified (shared by mounts and
  // versions), and how much of it; "" keeps none.
  std::string disk_cache = "/var/cache/torshpkg/chunks";
  uint64_t disk_cache_bytes = 10ull << 30;
  // What all mounts share: bytes of decoded chunks (each mount also stays within its own
  // cache_size; the least recently used mounts give way first), and threads decoding ahead of
  // readers. A mount nobody has read for idle_release_s gives its chunks back (0: never).
  uint64_t memory_budget = kDefaultMemoryBudget;
  uint32_t decode_threads = kDefaultDecodeThreads;
  uint32_t idle_release_s = 60;
  std::vector<MountEntry> mounts;
};

// Reads and checks a config file. Throws Error(kNotFound/kIo) when it cannot be read and
// Error(kInvalidArgument) naming the file and key for anything malformed: not strict JSON,
// unknown keys, wrong types, relative paths, two mounts on one mountpoint.
DaemonConfig load_config(const std::string& path);
// The same for config text already in memory; `name` is used in messages.
DaemonConfig parse_config(const std::string& text, const std::string& name);

}  // namespace torshpkg::daemon
