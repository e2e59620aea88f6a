// torshpkgd: mounts the packages its config lists and keeps them mounted, systemd style (runs in
// the foreground, reports through sd_notify, reloads on SIGHUP, stops on SIGTERM).
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "config.h"
#include "control.h"
#include "event_log.h"
#include "mount_table.h"
#include "requests.h"
#include "torshpkg/error.h"

namespace torshpkg::daemon {
namespace {

constexpr auto kStopGrace = std::chrono::seconds(10);

void notify(const std::string& state) {
  sd_notify(0, state.c_str());
}

uint64_t monotonic_usec() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

// The journal's and the socket's folders are normally made by tmpfiles.d; make them when they
// are missing.
void make_parent(const std::string& path, mode_t mode) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  ::mkdir(path.substr(0, slash).c_str(), mode);
}

// Whether users other than root can reach `path` (every folder above it searchable by others).
bool reachable_by_others(const std::string& path) {
  for (size_t slash = path.find('/', 1); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    struct stat st {};
    if (::stat(path.substr(0, slash).c_str(), &st) != 0 || (st.st_mode & S_IXOTH) == 0) {
      return false;
    }
  }
  return true;
}

std::optional<gid_t> control_group_of(const DaemonConfig& config) {
  if (config.control_group.empty()) return std::nullopt;
  fs::AccessRequest probe;
  probe.group = config.control_group;
  return fs::resolve_access(probe, 0, 0, false).gid;
}

// Slow work for the main loop: the initial mounts and each reload, one at a time, on a thread
// of its own; the loop keeps answering systemd and the socket meanwhile.
class Worker {
 public:
  explicit Worker(int wake_fd) : wake_fd_(wake_fd) {}
  ~Worker() { wait(); }
  bool running() const { return thread_.joinable(); }
  void start(std::function<void()> job) {
    wait();
    done_ = false;
    thread_ = std::thread([this, job = std::move(job)] {
      job();
      done_ = true;
      const uint64_t one = 1;
      (void)!::write(wake_fd_, &one, sizeof one);
    });
  }
  // Joins a finished job; true when one was joined.
  bool collect() {
    if (!thread_.joinable() || !done_) return false;
    thread_.join();
    return true;
  }
  void wait() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  int wake_fd_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

int run(const std::string& config_path) {
  DaemonConfig initial = load_config(config_path);
  // Signals arrive through a signalfd; every thread started from here on blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  for (const int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const int sigfd = ::signalfd(-1, &signals, SFD_CLOEXEC);
  if (sigfd < 0) throw Error(ErrorKind::kIo, std::string("signalfd: ") + std::strerror(errno));
  const int wakefd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wakefd < 0) throw Error(ErrorKind::kIo, std::string("eventfd: ") + std::strerror(errno));

  make_parent(initial.lineage_journal, 0750);
  make_parent(initial.control_socket, 0755);
  EventLog log(initial.lineage_journal);
  MountTable table(log);
  SharedConfig shared(initial);
  ControlServer control(
      initial.control_socket, control_group_of(initial),
      [&](const Json::Value& request, const Requester& who, const std::vector<int>& fds) {
        return handle_request(request, who, fds, table, shared, log);
      });

  uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
  // Wake four times per watchdog period (a ping is never more than a quarter of it late), and
  // every second to notice external unmounts.
  const int tick_ms =
      static_cast<int>(watchdog ? std::clamp<uint64_t>(watchdog_usec / 4000, 1, 1000) : 1000);

  Worker worker(wakefd);
  std::mutex outcome_mutex;
  MountTable::Outcome outcome;
  bool started = false;         // READY=1 sent
  bool reload_waiting = false;  // a SIGHUP came while the worker was busy
  const auto start_apply = [&](bool reload) {
    worker.start([&, reload] {
      MountTable::Outcome o;
      try {
        if (reload) {
          DaemonConfig next = load_config(config_path);
          o = table.apply(next);
          // The socket, its control group and the journal stay until a restart.
          const std::shared_ptr<const DaemonConfig> running = shared.get();
          next.control_socket = running->control_socket;
          next.control_group = running->control_group;
          next.lineage_journal = running->lineage_journal;
          shared.set(std::move(next));
          log.note(LOG_INFO, "reloaded: " + std::to_string(o.mounted) + " mounted, " +
                                 std::to_string(o.unmounted) + " unmounted, " +
                                 std::to_string(o.failures.size()) + " failed");
        } else {
          o = table.apply(*shared.get());
        }
      } catch (const std::exception& e) {
        log.note(LOG_ERR, std::string(reload ? "reload failed, keeping the running mounts: "
                                             : "the initial mounts failed: ") +
                              e.what());
      }
      for (const std::string& f : o.failures) log.note(LOG_ERR, "mount failed: " + f);
      std::lock_guard lock(outcome_mutex);
      outcome = std::move(o);
    });
  };
  if (!initial.control_group.empty() && !reachable_by_others(initial.control_socket)) {
    log.note(LOG_WARNING, initial.control_socket +
                              ": a folder above the control socket is not searchable by other "
                              "users, so the control group cannot reach it (chmod o+x it)");
  }
  start_apply(false);
  log.note(LOG_INFO, "starting: mounting " + std::to_string(initial.mounts.size()) +
                         " packages; control socket " + initial.control_socket);

  std::string status;
  for (;;) {
    pollfd fds[3] = {{sigfd, POLLIN, 0}, {control.fd(), POLLIN, 0}, {wakefd, POLLIN, 0}};
    const int ready = ::poll(fds, 3, tick_ms);
    if (watchdog) notify("WATCHDOG=1");
    if (!started) {
      // A long start (a pull, key derivation) must not hit systemd's start timeout.
      notify("EXTEND_TIMEOUT_USEC=" + std::to_string(10'000'000 + tick_ms * 1000ull));
    }
    if (ready > 0 && (fds[2].revents & POLLIN)) {
      uint64_t n = 0;
      (void)!::read(wakefd, &n, sizeof n);
    }
    if (worker.collect()) {
      status = table.summary();
      notify("READY=1\nSTATUS=" + status);
      if (!started) log.note(LOG_INFO, "ready: " + status);
      started = true;
      if (reload_waiting) {
        reload_waiting = false;
        notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec()));
        start_apply(true);
      }
    }
    int sig = 0;
    if (ready > 0 && (fds[0].revents & POLLIN)) {
      signalfd_siginfo info{};
      if (::read(sigfd, &info, sizeof info) == sizeof info) sig = static_cast<int>(info.ssi_signo);
    }
    if (sig == SIGHUP) {
      if (worker.running()) {
        reload_waiting = true;  // after the one in progress
      } else {
        notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec()));
        start_apply(true);
      }
    }
    if (sig == SIGTERM || sig == SIGINT) {
      notify("STOPPING=1\nSTATUS=unmounting " + std::to_string(table.size()) + " packages");
      log.note(LOG_INFO, "stopping");
      control.stop();
      table.stop_all(kStopGrace);
      worker.wait();
      table.stop_all(kStopGrace);  // what the worker finished meanwhile
      return 0;
    }
    if (ready > 0 && (fds[1].revents & POLLIN)) control.accept_clients();
    table.reap();
    table.release_idle();
    const std::string now = table.summary();
    if (now != status && started) {
      status = now;
      notify("STATUS=" + status);
    }
  }
}

}  // namespace
}  // namespace torshpkg::daemon

int main(int argc, char** argv) {
  CLI::App app("torshpkgd: mounts torshpkg packages and keeps them mounted");
  std::string config = "/etc/torshpkg/torshpkgd.json";
  bool check = false;
  app.add_option("--config", config, "Config file (default /etc/torshpkg/torshpkgd.json)");
  app.add_flag("--check", check, "Check the config file and exit");
  app.set_version_flag("--version", std::string("torshpkgd ") + TORSHPKG_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (check) {
      const auto c = torshpkg::daemon::load_config(config);
      std::cout << config << ": OK, " << c.mounts.size() << " mounts\n";
      return 0;
    }
    return torshpkg::daemon::run(config);
  } catch (const std::exception& e) {
    std::cerr << "torshpkgd: " << e.what() << "\n";
    sd_notifyf(0, "STATUS=failed: %s", e.what());
    return 1;
  }
}
