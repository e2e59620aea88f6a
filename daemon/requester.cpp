#include "requester.h"

#include <unistd.h>

#include <algorithm>

namespace torshpkg::daemon {

bool Requester::in_group(gid_t g) const {
  return g == gid || std::find(groups.begin(), groups.end(), g) != groups.end();
}

Requester daemon_requester() {
  Requester r;
  r.uid = ::geteuid();
  r.gid = ::getegid();
  r.pid = ::getpid();
  r.privileged = true;
  return r;
}

}  // namespace torshpkg::daemon
