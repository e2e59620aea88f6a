#include "daemon_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "torshpkg/error.h"
#include "torshpkg/file_io.h"

namespace torshpkg::cli {
namespace {

constexpr int kReplyTimeoutMs = 120'000;  // a mount of an encrypted package runs Argon2id

}  // namespace

std::string daemon_socket(const std::string& option) {
  if (!option.empty()) return option;
  const char* env = std::getenv("TORSHPKG_SOCKET");
  return env != nullptr && *env != '\0' ? env : kDefaultSocket;
}

std::optional<Json::Value> daemon_request(const std::string& socket, const Json::Value& request,
                                          const std::vector<int>& fds, bool* not_served) {
  if (not_served != nullptr) *not_served = false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket.size() >= sizeof addr.sun_path) {
    throw Error(ErrorKind::kInvalidArgument, socket + ": socket path too long");
  }
  std::memcpy(addr.sun_path, socket.c_str(), socket.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw io_error(socket, "cannot create a socket", errno);
  const UniqueFd closer(fd);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == ENOENT || errno == ECONNREFUSED) return std::nullopt;  // no daemon
    // A user the daemon does not serve works alone, as that user.
    if (errno == EACCES && ::geteuid() != 0) {
      if (not_served != nullptr) *not_served = true;
      return std::nullopt;
    }
    throw io_error(socket, "cannot reach torshpkgd", errno);
  }
  Json::StreamWriterBuilder w;
  w["indentation"] = "";
  const std::string text = Json::writeString(w, request) + "\n";
  // The descriptors travel with the request's bytes (SCM_RIGHTS).
  iovec iov{const_cast<char*>(text.data()), text.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  if (::sendmsg(fd, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(text.size())) {
    throw io_error(socket, "cannot send to torshpkgd", errno);
  }
  std::string reply;
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, kReplyTimeoutMs);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) throw Error(ErrorKind::kIo, socket + ": torshpkgd did not answer");
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw io_error(socket, "cannot read from torshpkgd", errno);
    if (n == 0) break;
    reply.append(buf, static_cast<size_t>(n));
    if (reply.size() > (64u << 20)) throw Error(ErrorKind::kIo, socket + ": reply too large");
  }
  Json::Value v;
  std::string errors;
  const std::unique_ptr<Json::CharReader> reader(Json::CharReaderBuilder().newCharReader());
  if (!reader->parse(reply.data(), reply.data() + reply.size(), &v, &errors) || !v.isObject()) {
    throw Error(ErrorKind::kIo, socket + ": torshpkgd sent a reply that is not JSON");
  }
  // A daemon that does not serve this user (not root, not in its control group): work alone.
  if (!v["ok"].asBool() && v["peer_refused"].asBool() && ::geteuid() != 0) {
    if (not_served != nullptr) *not_served = true;
    return std::nullopt;
  }
  if (!v["ok"].asBool()) {
    // A kind this version does not know (a newer daemon's) is an I/O error here.
    throw Error(from_token(v["kind"].asString()).value_or(ErrorKind::kIo),
                "torshpkgd: " + v["error"].asString());
  }
  return v;
}

}  // namespace torshpkg::cli
