// torshpkgd's control socket: a Unix stream socket (0600, root) taking one JSON request per
// connection and answering one JSON reply, for `torshpkg mount/umount/status`. Peers are checked
// with SO_PEERCRED: only root (or the daemon's own user) may control the daemon.
//
// Requests:  {"op": "status"}
//            {"op": "mount", "package": ABS, "mountpoint": ABS, "allow_unsigned": bool,
//             "password_file": ABS, "key_file": ABS, "trusted_keys_dir": ABS}
//            {"op": "umount", "mountpoint": ABS}
// Replies:   {"ok": true, ...} or {"ok": false, "error": "one line", "kind": "bad_signature"}
#pragma once

#include <json/json.h>

#include <functional>
#include <string>

namespace torshpkg::daemon {

class ControlServer {
 public:
  using Handler = std::function<Json::Value(const Json::Value& request)>;

  // Binds `path` (replacing a stale socket file; refusing when a live daemon answers there).
  // Throws Error(kIo).
  explicit ControlServer(const std::string& path);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  int fd() const { return fd_; }
  // Accepts one connection and answers it with `handler` (bounded: a 1 MiB request, 5 s to
  // send it). Never throws; a bad client gets an error reply or is dropped.
  void serve_one(const Handler& handler);

 private:
  std::string path_;
  int fd_ = -1;
};

// The reply for an error of kind `kind` (error.h's names: "corrupt", "bad_signature", ...).
Json::Value error_reply(const std::string& message, const std::string& kind);

}  // namespace torshpkg::daemon
