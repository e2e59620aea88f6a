// torshpkgd's control socket: a Unix stream socket taking one JSON request per connection and
// answering one JSON reply, for `torshpkg mount/umount/status`. The socket is 0600 root's, or,
// with a control group, 0666. Peers are checked with SO_PEERCRED and SO_PEERGROUPS, before the
// daemon reads anything from them:
// root (or the daemon's own user) is privileged; members of the control group are served under
// the member rules (see MountTable::mount); anyone else is refused.
//
// Requests:  {"op": "status"}
//            {"op": "mount", "package": ABS, "mountpoint": ABS, "allow_unsigned": bool,
//             "password_file": ABS, "key_file": ABS, "require_key": ID, "owner": USER,
//             "group": GROUP, "mode": "0440", "umask": "0077", "nonempty": bool, ...}
//            {"op": "umount", "mountpoint": ABS, "lazy": bool}
// A member of the control group passes the package file, the mount point folder and any secret
// file as descriptors it opened itself (SCM_RIGHTS, with the request's first bytes), and names
// their positions: "package_fd": 0, "mountpoint_fd": 1, "secret_fd": 2. The paths are then
// only for messages.
// Replies:   {"ok": true, ...} or {"ok": false, "error": "one line", "kind": TOKEN}, TOKEN one of
//            error.h's kind tokens ("corrupt", "bad_signature", "wrong_key", ...)
//
// This file is the transport (socket, peer checks, passed descriptors, replies); each op is
// decoded, checked and answered by handle_request (requests.h).
//
// Each connection is served on a thread of its own, so a slow mount or a client that sends
// nothing delays only itself (a client has 5 s to send its request).
#pragma once

#include <json/json.h>
#include <sys/types.h>

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "requester.h"
#include "torshpkg/error.h"

namespace torshpkg::daemon {

class ControlServer {
 public:
  // `fds`: the descriptors passed with the request (SCM_RIGHTS), in order; closed afterwards.
  using Handler = std::function<Json::Value(const Json::Value& request, const Requester& who,
                                            const std::vector<int>& fds)>;

  // Binds `path` (replacing a stale socket file; refusing when a live daemon answers there),
  // open to `group`'s members when given. Throws Error(kIo). `handler` answers every request,
  // on the connection's own thread: it must be thread-safe.
  ControlServer(const std::string& path, std::optional<gid_t> group, Handler handler);
  // Stops accepting and waits for the connections being served.
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  int fd() const { return fd_; }
  // Accepts the waiting connections (the socket is non-blocking) and starts serving each on a
  // thread (bounded: 64 at once, more get a "busy" reply; a 1 MiB request, 5 s to send it).
  // Never throws; a bad client gets an error reply or is dropped.
  void accept_clients();
  // Stops accepting and waits for the connections being served. Idempotent.
  void stop();

 private:
  struct Client {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  void serve(int client);

  std::string path_;
  std::optional<gid_t> group_;
  Handler handler_;
  int fd_ = -1;
  std::mutex mutex_;
  std::list<std::unique_ptr<Client>> clients_;
  std::atomic<size_t> active_{0};
};

// The reply for an error of kind `kind`: its token (error.h: "corrupt", "bad_signature", ...).
Json::Value error_reply(const std::string& message, ErrorKind kind);

}  // namespace torshpkg::daemon
