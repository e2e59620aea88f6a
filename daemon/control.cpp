#include "control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <vector>

#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/strict_json.h"

namespace torshpkg::daemon {
namespace {

constexpr size_t kMaxRequest = 1 << 20;
constexpr int kClientTimeoutMs = 5000;
constexpr size_t kMaxClients = 64;

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

int64_t now_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// Descriptors received with a request, closed when the request is done.
struct ReceivedFds {
  std::vector<int> fds;
  ReceivedFds() = default;
  ReceivedFds(const ReceivedFds&) = delete;
  ReceivedFds& operator=(const ReceivedFds&) = delete;
  ~ReceivedFds() {
    for (const int fd : fds) ::close(fd);
  }
};

constexpr size_t kMaxFds = 4;

// Reads until a newline or EOF within one deadline for the whole request (a client trickling
// bytes gets no more time than one sending nothing), keeping the descriptors that come with it
// (at most kMaxFds); false on timeout, error or oversize.
bool read_request(int fd, std::string& out, ReceivedFds& received) {
  char buf[65536];
  const int64_t deadline = now_ms() + kClientTimeoutMs;
  for (;;) {
    const int64_t left = deadline - now_ms();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    iovec iov{buf, sizeof buf};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int passed = -1;
        std::memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
        received.fds.push_back(passed);  // closed with the request, kept or not
      }
    }
    if ((msg.msg_flags & MSG_CTRUNC) != 0 || received.fds.size() > kMaxFds) return false;
    if (n == 0) return !out.empty();
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxRequest) return false;
    if (out.find('\n') != std::string::npos) return true;
  }
}

// Who is at the other end, or nullopt when they may not use the socket.
std::optional<Requester> peer(int client, const std::optional<gid_t>& group) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(client, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return std::nullopt;
  Requester who;
  who.uid = cred.uid;
  who.gid = cred.gid;
  who.pid = cred.pid;
  who.privileged = cred.uid == 0 || cred.uid == ::geteuid();
  if (who.privileged) return who;
  std::vector<gid_t> groups(64);
  for (;;) {
    socklen_t bytes = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(client, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &bytes) == 0) {
      groups.resize(bytes / sizeof(gid_t));
      break;
    }
    if (errno != ERANGE || groups.size() >= 65536) return std::nullopt;
    groups.resize(std::max<size_t>(groups.size() * 2, bytes / sizeof(gid_t)));
  }
  who.groups = std::move(groups);
  if (!group) return std::nullopt;  // the socket is root's alone
  who.member = who.in_group(*group);
  return who;
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

Json::Value error_reply(const std::string& message, ErrorKind kind) {
  Json::Value v(Json::objectValue);
  v["ok"] = false;
  v["error"] = message;
  v["kind"] = std::string(to_token(kind));
  return v;
}

ControlServer::ControlServer(const std::string& path, std::optional<gid_t> group, Handler handler)
    : path_(path), group_(group), handler_(std::move(handler)) {
  const sockaddr_un addr = address_of(path);
  if (answers(path)) {
    throw Error(ErrorKind::kIo, path + ": another torshpkgd is already running");
  }
  ::unlink(path.c_str());  // a stale socket from a daemon that died
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) throw io_error(path, "cannot create the control socket", errno);
  const mode_t old = ::umask(0177);  // 0600 from the start: no window with wider access
  const int rc = ::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int bind_errno = errno;
  ::umask(old);
  int err = rc != 0 ? bind_errno : 0;
  // With a control group the socket is 0666 and the peer check above lets in only root and the
  // group's members (SO_PEERGROUPS): a group-owned 0660 socket would need CAP_CHOWN, which the
  // unit does not grant.
  if (err == 0 && group_ && ::chmod(path.c_str(), 0666) != 0) err = errno;
  if (err == 0 && ::listen(fd_, 64) != 0) err = errno;
  if (err != 0) {
    ::close(fd_);
    fd_ = -1;
    throw io_error(path, "cannot listen on the control socket", err);
  }
}

ControlServer::~ControlServer() {
  stop();
}

void ControlServer::stop() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(path_.c_str());
  }
  std::list<std::unique_ptr<Client>> clients;
  {
    std::lock_guard lock(mutex_);
    clients.swap(clients_);
  }
  for (auto& c : clients) c->thread.join();
}

void ControlServer::accept_clients() {
  {
    // Threads of connections already answered.
    std::lock_guard lock(mutex_);
    for (auto it = clients_.begin(); it != clients_.end();) {
      if ((*it)->done) {
        (*it)->thread.join();
        it = clients_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (;;) {
    const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;  // EAGAIN: none left
    if (active_ >= kMaxClients) {
      write_reply(client, error_reply("torshpkgd is busy: too many connections; try again",
                                      ErrorKind::kIo));
      ::close(client);
      continue;
    }
    auto c = std::make_unique<Client>();
    Client* raw = c.get();
    ++active_;
    try {
      c->thread = std::thread([this, client, raw] {
        serve(client);
        --active_;
        raw->done = true;
      });
    } catch (const std::system_error&) {
      --active_;
      write_reply(client, error_reply("torshpkgd is busy: cannot start a thread; try again",
                                      ErrorKind::kIo));
      ::close(client);
      continue;
    }
    std::lock_guard lock(mutex_);
    clients_.push_back(std::move(c));
  }
}

void ControlServer::serve(int client) {
  const UniqueFd closer(client);
  const std::optional<Requester> who = peer(client, group_);
  if (!who) {
    Json::Value reply = error_reply("permission denied: only root may control torshpkgd",
                                    ErrorKind::kInvalidArgument);
    reply["peer_refused"] = true;
    write_reply(client, reply);
    return;
  }
  std::string text;
  ReceivedFds fds;
  if (!read_request(client, text, fds)) return;
  if (text.find('\0') != std::string::npos) {
    write_reply(client,
                error_reply("bad request: it contains a NUL byte", ErrorKind::kInvalidArgument));
    return;
  }
  Json::Value request;
  try {
    request =
        parse_strict_json(text, 16, [](const std::string& why) { return invalid_argument(why); });
  } catch (const Error&) {
    request = Json::Value();  // answered below, as any request that is no object with "op"
  }
  if (!request.isObject() || !request["op"].isString()) {
    write_reply(client, error_reply("bad request: expected one JSON object with \"op\"",
                                    ErrorKind::kInvalidArgument));
    return;
  }
  if (!who->privileged && !who->member && request["op"].asString() != "status") {
    // Anyone who can reach the socket may ask for status; mounting is for root and the group.
    Json::Value reply = error_reply(
        "permission denied: only root and members of the control "
        "group may mount and unmount through torshpkgd",
        ErrorKind::kInvalidArgument);
    reply["peer_refused"] = true;
    write_reply(client, reply);
    return;
  }
  try {
    write_reply(client, handler_(request, *who, fds.fds));
  } catch (const Error& e) {
    write_reply(client, error_reply(e.what(), e.kind()));
  } catch (const std::exception& e) {
    write_reply(client, error_reply(e.what(), ErrorKind::kIo));
  }
}

}  // namespace torshpkg::daemon
