// Where a mount's package comes from: a file, the highest installed version of NAME@REQ in the
// entry's store, or an oci:// or http(s):// source pulled (digest checked, the host's mirrors
// tried) and installed into the store under the mount's trust policy.
#pragma once

#include <string>

#include "config.h"
#include "mount_table.h"

namespace torshpkg::daemon {

// Where a mount entry's package file is, and where it came from.
struct Located {
  std::string path;
  std::string source;  // the registry reference or URL pulled; empty otherwise
  std::string digest;  // "sha256:..." of what was pulled
};

// The file a mount entry names: its path; the highest installed version of NAME@REQ; or, for
// oci:// and http(s):// sources, the package pulled (digest checked) and installed into the
// store under the mount's trust policy.
Located locate(const MountEntry& entry, const MountContext& context);

}  // namespace torshpkg::daemon
