#include "control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "torshpkg/error.h"
#include "torshpkg/strict_json.h"

namespace torshpkg::daemon {
namespace {

constexpr size_t kMaxRequest = 1 << 20;
constexpr int kClientTimeoutMs = 5000;

sockaddr_un address_of(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    throw Error(ErrorKind::kInvalidArgument, path + ": socket path too long");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// Whether a live server answers on `path`.
bool answers(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const sockaddr_un addr = address_of(path);
  const bool live = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return live;
}

// Reads until a newline or EOF within the deadline; false on timeout, error or oversize.
bool read_request(int fd, std::string& out) {
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, kClientTimeoutMs) <= 0) return false;
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return !out.empty();
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxRequest) return false;
    if (out.find('\n') != std::string::npos) return true;
  }
}

void write_reply(int fd, const Json::Value& reply) {
  Json::StreamWriterBuilder w;
  w["indentation"] = "";
  std::string text = Json::writeString(w, reply) + "\n";
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

}  // namespace

Json::Value error_reply(const std::string& message, const std::string& kind) {
  Json::Value v(Json::objectValue);
  v["ok"] = false;
  v["error"] = message;
  v["kind"] = kind;
  return v;
}

ControlServer::ControlServer(const std::string& path) : path_(path) {
  const sockaddr_un addr = address_of(path);
  if (answers(path)) {
    throw Error(ErrorKind::kIo, path + ": another torshpkgd is already running");
  }
  ::unlink(path.c_str());  // a stale socket from a daemon that died
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw io_error(path, "cannot create the control socket", errno);
  const mode_t old = ::umask(0177);  // 0600 from the start: no window with wider access
  const int rc = ::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int bind_errno = errno;
  ::umask(old);
  if (rc != 0 || ::listen(fd_, 16) != 0) {
    const int err = rc != 0 ? bind_errno : errno;
    ::close(fd_);
    throw io_error(path, "cannot listen on the control socket", err);
  }
}

ControlServer::~ControlServer() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
}

void ControlServer::serve_one(const Handler& handler) {
  const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (client < 0) return;
  const std::unique_ptr<int, void (*)(int*)> closer(new int(client), [](int* p) {
    ::close(*p);
    delete p;
  });
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(client, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
      (cred.uid != 0 && cred.uid != ::geteuid())) {
    write_reply(client, error_reply("permission denied: only root may control torshpkgd",
                                    std::string(to_string(ErrorKind::kInvalidArgument))));
    return;
  }
  std::string text;
  if (!read_request(client, text)) return;
  Json::Value request;
  std::string error;
  if (!parse_strict_json(text, 16, request, error) || !request.isObject() ||
      !request["op"].isString()) {
    write_reply(client, error_reply("bad request: expected one JSON object with \"op\"",
                                    std::string(to_string(ErrorKind::kInvalidArgument))));
    return;
  }
  try {
    write_reply(client, handler(request));
  } catch (const Error& e) {
    write_reply(client, error_reply(e.what(), std::string(to_string(e.kind()))));
  } catch (const std::exception& e) {
    write_reply(client, error_reply(e.what(), "I/O error"));
  }
}

}  // namespace torshpkg::daemon
