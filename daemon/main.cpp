// torshpkgd: mounts the packages its config lists and keeps them mounted, systemd style (runs in
// the foreground, reports through sd_notify, reloads on SIGHUP, stops on SIGTERM).
#include <signal.h>
#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>

#include "config.h"
#include "event_log.h"
#include "mount_table.h"
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

// The journal's folder is normally made by tmpfiles.d; make it when it is missing.
void make_parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  ::mkdir(path.substr(0, slash).c_str(), 0750);
}

int run(const std::string& config_path) {
  DaemonConfig config = load_config(config_path);
  // Signals are taken synchronously below; every thread started from here on blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  for (const int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  make_parent(config.lineage_journal);
  EventLog log(config.lineage_journal);
  MountTable table(log);
  MountTable::Outcome outcome = table.apply(config);
  size_t failed = outcome.failures.size();
  std::string status = table.summary(failed);
  notify("READY=1\nSTATUS=" + status);
  log.note(LOG_INFO, "ready: " + status);

  uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
  // Wake at least twice per watchdog period, and every second to notice external unmounts.
  const uint64_t tick_usec =
      watchdog ? std::min<uint64_t>(watchdog_usec / 2, 1'000'000) : 1'000'000;
  const timespec tick{static_cast<time_t>(tick_usec / 1'000'000),
                      static_cast<long>(tick_usec % 1'000'000) * 1000};
  for (;;) {
    const int sig = ::sigtimedwait(&signals, nullptr, &tick);
    if (watchdog) notify("WATCHDOG=1");
    if (sig == SIGHUP) {
      notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec()));
      try {
        config = load_config(config_path);
        outcome = table.apply(config);
        failed = outcome.failures.size();
        log.note(LOG_INFO, "reloaded: " + std::to_string(outcome.mounted) + " mounted, " +
                               std::to_string(outcome.unmounted) + " unmounted, " +
                               std::to_string(failed) + " failed");
      } catch (const Error& e) {
        log.note(LOG_ERR, std::string("reload failed, keeping the running mounts: ") + e.what());
      }
      status = table.summary(failed);
      notify("READY=1\nSTATUS=" + status);
    } else if (sig == SIGTERM || sig == SIGINT) {
      notify("STOPPING=1\nSTATUS=unmounting " + std::to_string(table.size()) + " packages");
      log.note(LOG_INFO, "stopping");
      table.stop_all(kStopGrace);
      return 0;
    } else {
      table.reap();
      const std::string now = table.summary(failed);
      if (now != status) {
        status = now;
        notify("STATUS=" + status);
      }
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
  } catch (const torshpkg::Error& e) {
    std::cerr << "torshpkgd: " << e.what() << "\n";
    sd_notifyf(0, "STATUS=failed: %s", e.what());
    return 1;
  }
}
