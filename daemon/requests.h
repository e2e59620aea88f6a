// The control protocol's requests (control.h gives the wire format): each op's fields decoded
// and checked, the op carried out on the mount table, and its reply.
#pragma once

#include <json/json.h>

#include <memory>
#include <mutex>
#include <vector>

#include "config.h"
#include "event_log.h"
#include "mount_table.h"
#include "requester.h"

namespace torshpkg::daemon {

// The daemon's policy, shared between the main thread (which replaces it on reload) and the
// threads answering requests.
class SharedConfig {
 public:
  explicit SharedConfig(DaemonConfig config)
      : config_(std::make_shared<const DaemonConfig>(std::move(config))) {}
  std::shared_ptr<const DaemonConfig> get() const {
    std::lock_guard lock(mutex_);
    return config_;
  }
  void set(DaemonConfig config) {
    auto next = std::make_shared<const DaemonConfig>(std::move(config));
    std::lock_guard lock(mutex_);
    config_ = std::move(next);
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const DaemonConfig> config_;
};

// Answers one control request, on the connection's own thread: {"ok": true, ...}, or an
// error_reply (control.h) naming what is wrong. `fds` are the descriptors the request passed.
Json::Value handle_request(const Json::Value& request, const Requester& who,
                           const std::vector<int>& fds, MountTable& table,
                           const SharedConfig& shared, EventLog& log);

}  // namespace torshpkg::daemon
