// torshpkgd: mounts the packages its config lists and keeps them mounted, systemd style (runs in
// the foreground, reports through sd_notify, reloads on SIGHUP, stops on SIGTERM).
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "config.h"
#include "control.h"
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

std::string absolute_path(const Json::Value& request, const char* key, bool required) {
  const Json::Value& v = request[key];
  if (v.isNull() && !required) return "";
  if (!v.isString() || v.asString().empty() || v.asString()[0] != '/') {
    throw Error(ErrorKind::kInvalidArgument, std::string(key) + ": expected an absolute path");
  }
  return v.asString();
}

// A whole number from 0 to `max`, or `fallback` when the request does not carry `key`.
uint64_t request_number(const Json::Value& request, const char* key, uint64_t fallback,
                        uint64_t max) {
  const Json::Value& v = request[key];
  if (v.isNull()) return fallback;
  if (!v.isUInt64() || v.asUInt64() > max) {
    throw Error(ErrorKind::kInvalidArgument,
                std::string(key) + ": expected a whole number from 0 to " + std::to_string(max));
  }
  return v.asUInt64();
}

Json::Value status_json(const MountTable& table) {
  Json::Value reply(Json::objectValue);
  reply["ok"] = true;
  reply["mounts"] = Json::Value(Json::arrayValue);
  for (const MountStatus& m : table.status()) {
    Json::Value v(Json::objectValue);
    v["package"] = m.package;
    v["path"] = m.path;
    v["mountpoint"] = m.mountpoint;
    v["signer"] = m.signer.empty() ? Json::Value() : Json::Value(m.signer);
    v["digest"] = m.digest;
    v["mounted_since"] = m.since;
    v["bytes_served"] = Json::UInt64(m.stats.bytes_served);
    const uint64_t lookups = m.stats.cache_hits + m.stats.cache_misses;
    v["cache_hits"] = Json::UInt64(m.stats.cache_hits);
    v["cache_misses"] = Json::UInt64(m.stats.cache_misses);
    v["cache_bytes"] = Json::UInt64(m.stats.cache_bytes);
    v["cache_capacity"] = Json::UInt64(m.stats.cache_capacity);
    v["cache_hit_rate"] =
        lookups == 0 ? 0.0 : static_cast<double>(m.stats.cache_hits) / static_cast<double>(lookups);
    v["verification_failures"] = Json::UInt64(m.stats.read_failures);
    reply["mounts"].append(v);
  }
  return reply;
}

// Answers one control request. Runs on the main thread, like everything touching the table.
Json::Value handle(const Json::Value& request, MountTable& table, const DaemonConfig& config) {
  const std::string op = request["op"].asString();
  if (op == "status") return status_json(table);
  if (op == "mount") {
    MountEntry e;
    e.package = absolute_path(request, "package", true);
    e.mountpoint = absolute_path(request, "mountpoint", true);
    e.password_file = absolute_path(request, "password_file", false);
    e.key_file = absolute_path(request, "key_file", false);
    e.allow_unsigned = request["allow_unsigned"].isBool() && request["allow_unsigned"].asBool();
    e.buffered_reads = request["buffered_reads"].isBool() && request["buffered_reads"].asBool();
    e.cache_bytes = request_number(request, "cache_bytes", e.cache_bytes, UINT64_MAX);
    e.kernel_read_ahead_kb = static_cast<uint32_t>(request_number(
        request, "kernel_readahead_kb", e.kernel_read_ahead_kb, fs::kMaxKernelReadAheadKb));
    std::string trusted = absolute_path(request, "trusted_keys_dir", false);
    if (trusted.empty()) trusted = config.trusted_keys_dir;
    const MountStatus& m = table.mount(e, trusted, false);
    Json::Value reply(Json::objectValue);
    reply["ok"] = true;
    reply["package"] = m.package;
    reply["signer"] = m.signer;
    return reply;
  }
  if (op == "umount") {
    const std::string point = absolute_path(request, "mountpoint", true);
    const bool lazy = request["lazy"].isBool() && request["lazy"].asBool();
    if (!table.unmount(point, lazy)) {
      return error_reply(point + ": torshpkgd has nothing mounted there",
                         std::string(to_string(ErrorKind::kNotFound)));
    }
    Json::Value reply(Json::objectValue);
    reply["ok"] = true;
    return reply;
  }
  return error_reply("unknown op '" + op + "'",
                     std::string(to_string(ErrorKind::kInvalidArgument)));
}

int run(const std::string& config_path) {
  DaemonConfig config = load_config(config_path);
  // Signals arrive through a signalfd; every thread started from here on blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  for (const int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const int sigfd = ::signalfd(-1, &signals, SFD_CLOEXEC);
  if (sigfd < 0) throw Error(ErrorKind::kIo, std::string("signalfd: ") + std::strerror(errno));

  make_parent(config.lineage_journal);
  make_parent(config.control_socket);
  EventLog log(config.lineage_journal);
  ControlServer control(config.control_socket);
  MountTable table(log);
  MountTable::Outcome outcome = table.apply(config);
  size_t failed = outcome.failures.size();
  std::string status = table.summary(failed);
  notify("READY=1\nSTATUS=" + status);
  log.note(LOG_INFO, "ready: " + status + "; control socket " + config.control_socket);

  uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
  // Wake at least twice per watchdog period, and every second to notice external unmounts.
  const int tick_ms =
      static_cast<int>(watchdog ? std::clamp<uint64_t>(watchdog_usec / 2000, 1, 1000) : 1000);
  for (;;) {
    pollfd fds[2] = {{sigfd, POLLIN, 0}, {control.fd(), POLLIN, 0}};
    const int ready = ::poll(fds, 2, tick_ms);
    if (watchdog) notify("WATCHDOG=1");
    int sig = 0;
    if (ready > 0 && (fds[0].revents & POLLIN)) {
      signalfd_siginfo info{};
      if (::read(sigfd, &info, sizeof info) == sizeof info) sig = static_cast<int>(info.ssi_signo);
    }
    if (sig == SIGHUP) {
      notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec()));
      try {
        DaemonConfig next = load_config(config_path);
        outcome = table.apply(next);
        config.mounts = next.mounts;  // sockets and the journal stay until a restart
        config.trusted_keys_dir = next.trusted_keys_dir;
        failed = outcome.failures.size();
        log.note(LOG_INFO, "reloaded: " + std::to_string(outcome.mounted) + " mounted, " +
                               std::to_string(outcome.unmounted) + " unmounted, " +
                               std::to_string(failed) + " failed");
      } catch (const Error& e) {
        log.note(LOG_ERR, std::string("reload failed, keeping the running mounts: ") + e.what());
      }
      status = table.summary(failed);
      notify("READY=1\nSTATUS=" + status);
      continue;
    }
    if (sig == SIGTERM || sig == SIGINT) {
      notify("STOPPING=1\nSTATUS=unmounting " + std::to_string(table.size()) + " packages");
      log.note(LOG_INFO, "stopping");
      table.stop_all(kStopGrace);
      return 0;
    }
    if (ready > 0 && (fds[1].revents & POLLIN)) {
      control.serve_one([&](const Json::Value& request) { return handle(request, table, config); });
    }
    table.reap();
    const std::string now = table.summary(failed);
    if (now != status) {
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
  } catch (const torshpkg::Error& e) {
    std::cerr << "torshpkgd: " << e.what() << "\n";
    sd_notifyf(0, "STATUS=failed: %s", e.what());
    return 1;
  }
}
