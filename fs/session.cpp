#include "session.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fuse_ops.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"

namespace torshpkg::fs {
namespace {

constexpr int kMaxThreads = 16;
constexpr auto kAbortAfter = std::chrono::seconds(5);

bool write_file(const std::string& path, const std::string& value) {
  const UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  return fd && ::write(fd.get(), value.data(), value.size()) == static_cast<ssize_t>(value.size());
}

// Raises the mount's kernel readahead, which also sets how large a sequential reader's requests
// get. Best effort: needs root, and an older kernel may not have the file.
void set_kernel_read_ahead(dev_t dev, uint32_t kb) {
  if (kb == 0) return;
  write_file("/sys/class/bdi/" + std::to_string(major(dev)) + ":" + std::to_string(minor(dev)) +
                 "/read_ahead_kb",
             std::to_string(kb));
}

// Runs a command without a shell; true when it exits 0.
bool run_quietly(const std::vector<const char*>& argv) {
  const pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDWR);
    if (null >= 0) {
      ::dup2(null, STDOUT_FILENO);
      ::dup2(null, STDERR_FILENO);
    }
    std::vector<const char*> args = argv;
    args.push_back(nullptr);
    ::execvp(args[0], const_cast<char* const*>(args.data()));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

std::unique_ptr<Session> Session::start(PackageFs& fs, const MountPoint& point,
                                        const std::vector<std::string>& fuse_options) {
  const std::string& mountpoint = point.path();
  std::unique_ptr<Session> s(new Session(fs, mountpoint));
  std::vector<std::string> argv_store = {"torshpkg"};
  for (const std::string& o : fuse_options) {
    argv_store.push_back("-o");
    argv_store.push_back(o);
  }
  std::vector<char*> argv;
  for (std::string& a : argv_store) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  const fuse_lowlevel_ops& ops = lowlevel_ops();
  s->session_.reset(fuse_session_new(&args, &ops, sizeof ops, &fs));
  fuse_opt_free_args(&args);
  if (s->session_ == nullptr) {
    throw Error(ErrorKind::kIo, mountpoint + ": cannot create the FUSE session (bad -o option?)");
  }
  // Root mounts onto the folder that was checked, held open; fusermount3 (for other users) does
  // its own checks of the path it is given.
  const std::string target = ::getuid() == 0 ? point.target() : mountpoint;
  if (fuse_session_mount(s->session_.get(), target.c_str()) != 0) {
    throw Error(ErrorKind::kIo, mountpoint + ": cannot mount (is /dev/fuse there?)");
  }
  try {
    s->loop_ = std::thread([raw = s.get()] { raw->run(); });
  } catch (const std::system_error& e) {
    s->detach();  // mounted, with no loop to serve it: unmounted before the session goes
    throw Error(ErrorKind::kIo, mountpoint + ": cannot start the FUSE loop: " + e.what());
  }
  // A stat of the mount point waits until the loop has answered the kernel's INIT.
  struct stat st {};
  if (::stat(mountpoint.c_str(), &st) != 0 || s->ended() || st.st_dev == point.device()) {
    const int err = s->ended() || st.st_dev == point.device() ? ENOTCONN : errno;
    s->detach();
    s->abort();
    throw Error(ErrorKind::kIo, mountpoint + ": the mount did not come up: " + std::strerror(err));
  }
  s->device_ = st.st_dev;
  set_kernel_read_ahead(st.st_dev, fs.options().kernel_read_ahead_kb);
  return s;
}

void Session::DestroySession::operator()(fuse_session* s) const {
  fuse_session_destroy(s);
}

void Session::run() {
  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(config, kMaxThreads);
  if (fs_.options().fuse_idle_threads >= 0) {
    fuse_loop_cfg_set_idle_threads(config, static_cast<unsigned>(fs_.options().fuse_idle_threads));
  }
  fuse_session_loop_mt(session_.get(), config);
  fuse_loop_cfg_destroy(config);
  std::lock_guard lock(mutex_);
  ended_ = true;
  ended_cv_.notify_all();
}

Session::~Session() {
  if (!loop_.joinable()) return;
  detach();
  if (!wait_for(kAbortAfter)) abort();
  loop_.join();
}

bool Session::on_top() const {
  struct stat st {};
  return device_ != 0 && ::stat(mountpoint_.c_str(), &st) == 0 && st.st_dev == device_;
}

bool Session::detach() {
  {
    std::lock_guard lock(mutex_);
    if (detached_ || ended_) return true;
    if (device_ != 0 && !on_top()) return false;  // never unmount what covers this mount
    detached_ = true;
  }
  // Our own lazy unmount rather than fuse_session_unmount, which would change the session's
  // state under the running loop. The loop ends when the kernel drops the connection.
  if (::umount2(mountpoint_.c_str(), MNT_DETACH) != 0 && errno == EPERM) {
    run_quietly({"fusermount3", "-u", "-z", mountpoint_.c_str()});
  }
  return true;
}

bool Session::abort() {
  if (ended()) return true;
  if (device_ == 0) return false;
  const std::string connections = "/sys/fs/fuse/connections";
  const std::string abort_file = connections + "/" + std::to_string(minor(device_)) + "/abort";
  if (::access(abort_file.c_str(), W_OK) != 0) {
    ::mount("fusectl", connections.c_str(), "fusectl", 0, nullptr);  // not mounted yet
  }
  return write_file(abort_file, "1");
}

bool Session::ended() const {
  std::lock_guard lock(mutex_);
  return ended_;
}

bool Session::wait_for(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return ended_cv_.wait_for(lock, timeout, [this] { return ended_; });
}

int serve(PackageFs& fs, const MountPoint& point, const std::vector<std::string>& fuse_options,
          const std::function<void(const std::string& error)>& ready) {
  // Signals are taken synchronously by this thread; the session's threads inherit the mask.
  sigset_t stop;
  sigemptyset(&stop);
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop, sig);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  std::unique_ptr<Session> session;
  try {
    session = Session::start(fs, point, fuse_options);
  } catch (const Error& e) {
    ready(e.what());
    return 1;
  }
  ready("");
  // Serve until unmounted from outside or signalled; then detach, let open files finish for a
  // few seconds, and end the connection.
  const timespec tick{0, 100'000'000};
  while (!session->ended()) {
    if (::sigtimedwait(&stop, nullptr, &tick) > 0) break;
  }
  session.reset();
  return 0;
}

}  // namespace torshpkg::fs
