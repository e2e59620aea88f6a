// Who may read a mount: its owner, group and mode, from what the user asked and the package.
// Shared by `torshpkg mount`, the mount helper (through it) and torshpkgd.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace torshpkg::fs {

struct MountAccess {
  uid_t uid = 0;
  gid_t gid = 0;
  // The read bits of files; folders and executable resources get the matching x bits too.
  mode_t mode = 0444;
};

// What was asked for; each empty when not given.
struct AccessRequest {
  std::string owner;  // USER or UID, optionally followed by :GROUP or :GID
  std::string group;  // GROUP or GID
  std::string mode;   // octal: 0440 (x bits are ignored: they follow the read bits)
  std::string umask;  // octal: 0077 takes those bits from 0444 (the mount helper's way)

  bool operator==(const AccessRequest&) const = default;
};

// The access of a mount asked for by the user (asker_uid, asker_gid). The defaults: owned by the
// asker; readable by the owner only (0400) when the mount holds a secret (an encrypted
// package), by everyone (0444) otherwise. A group named by name or an owner named by name gives
// the group (the owner's primary group when only the owner is named). Throws
// Error(kInvalidArgument) naming the bad value: unknown users and groups, a mode that is not
// octal or sets write or special bits, mode together with umask.
MountAccess resolve_access(const AccessRequest& request, uid_t asker_uid, gid_t asker_gid,
                           bool secret);

// Parses an octal mode for a mount ("0440", "440"); throws Error(kInvalidArgument).
mode_t parse_mount_mode(const std::string& text, const std::string& what);

// Whether users other than the one mounting must be let in by the kernel (allow_other): the mode
// grants the group or others, or the files belong to someone else.
bool needs_allow_other(const MountAccess& access, uid_t mounter);

// Whether /etc/fuse.conf lets users other than root mount with allow_other (user_allow_other).
bool fuse_allows_other_for_users();

// The FUSE options every torshpkg mount gets: read-only, default permissions (the kernel checks
// the mode above), 1 MiB reads, fsname = `package_path` (give it absolute: mount tables show
// it), subtype torshpkg; allow_other when needs_allow_other says so, for a user other than root
// only where /etc/fuse.conf allows it (otherwise only that user can read the mount).
std::vector<std::string> standard_fuse_options(const std::string& package_path,
                                               const MountAccess& access);

// The mode as four octal digits, for status reports.
std::string mode_string(mode_t mode);

}  // namespace torshpkg::fs
