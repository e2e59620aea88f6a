// Who sent a control request, and the files a member passed with it.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace torshpkg::daemon {

struct Requester {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  std::vector<gid_t> groups;  // supplementary groups
  // Root (or the daemon's own user): the daemon's full powers. Otherwise a member of the
  // config's control_group, held to the rules in docs/ARCHITECTURE.md.
  bool privileged = true;
  bool member = false;  // of the control group

  bool in_group(gid_t g) const;
};

// The daemon itself, for mounts its config lists.
Requester daemon_requester();

// Descriptors a member's client opened with its own credentials and passed with its request
// (SCM_RIGHTS): what it could open, it may read; the daemon never opens a member's paths
// itself. -1 when not passed; owned by the caller.
struct PassedFiles {
  int package = -1;     // the package file
  int mountpoint = -1;  // the folder to mount on
  int secret = -1;      // the password or key file, when the request names one
};

}  // namespace torshpkg::daemon
