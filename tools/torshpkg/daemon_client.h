// The client side of torshpkgd's control socket (see daemon/control.h for the protocol).
#pragma once

#include <json/json.h>

#include <optional>
#include <string>
#include <vector>

namespace torshpkg::cli {

inline constexpr const char* kDefaultSocket = "/run/torshpkg/torshpkgd.sock";

// The socket to use: `option` when given, else $TORSHPKG_SOCKET, else the default.
std::string daemon_socket(const std::string& option);

// Sends one request. Returns nullopt when no daemon listens at `socket`, or when this user (not
// root) may not use it (the caller falls back to working alone); throws torshpkg::Error, with the
// kind the daemon named, for an error reply. `fds` go with the request (SCM_RIGHTS), for requests
// that name their positions.
// `not_served`, when given, is set when a daemon runs but does not serve this user.
std::optional<Json::Value> daemon_request(const std::string& socket, const Json::Value& request,
                                          const std::vector<int>& fds = {},
                                          bool* not_served = nullptr);

}  // namespace torshpkg::cli
