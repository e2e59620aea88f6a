#include "event_log.h"

#include <syslog.h>
#include <systemd/sd-journal.h>

#include <cstdio>
#include <fstream>
#include <vector>

#include "torshpkg/error.h"
#include "torshpkg/printable.h"

namespace torshpkg::daemon {
namespace {

std::string describe(const std::string& kind, const std::map<std::string, std::string>& data) {
  const auto get = [&](const char* key) {
    const auto it = data.find(key);
    return it == data.end() ? std::string() : it->second;
  };
  if (kind == "mounted") return "mounted " + get("package") + " on " + get("mountpoint");
  if (kind == "unmounted") return "unmounted " + get("package") + " from " + get("mountpoint");
  if (kind == "mount_refused") {
    return "refused to mount " + get("path") + " on " + get("mountpoint") + ": " + get("error");
  }
  if (kind == "umount_refused") {
    return "refused to unmount " + get("mountpoint") + ": " + get("error");
  }
  if (kind == "verification_failed") {
    return "chunk verification failed in " + get("package") + ": " + get("error");
  }
  if (kind == "opened") {
    return get("comm") + " (pid " + get("pid") + ") opened " + get("package") + " at " +
           get("mountpoint");
  }
  if (kind == "derived") {
    return get("package") + " " + get("relation") + " " + get("parent");
  }
  return kind + " " + get("package");
}

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

EventLog::EventLog(const std::string& journal_path) : journal_(journal_path) {
  // A journal in any state never stops the daemon: a torn tail is cut and recorded, damage is
  // recorded (lineage verify reports it), and events that cannot be written are counted.
  try {
    if (journal_.recover()) {
      note(LOG_WARNING, journal_path + ": recovered (see `torshpkg lineage verify`)");
    }
  } catch (const std::exception& e) {
    note(LOG_ERR, journal_path + ": cannot check the lineage journal: " + e.what());
  }
  try {
    for (const JournalEvent& e : journal_.read()) {
      if (e.event == "derived" && e.data.count("digest"))
        lineage_recorded_.insert(e.data.at("digest"));
    }
  } catch (const std::exception& e) {
    note(LOG_ERR, journal_path + ": cannot read the lineage journal: " + e.what());
  }
}

bool EventLog::record(const std::string& event, const std::map<std::string, std::string>& data,
                      pid_t object_pid) {
  JournalEvent written;
  std::string failure;
  {
    std::lock_guard lock(mutex_);
    try {
      written = journal_.append(event, data);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  const bool bad =
      event == "mount_refused" || event == "umount_refused" || event == "verification_failed";
  if (!failure.empty()) {
    ++lost_;
    mirror(nullptr, LOG_ERR,
           describe(event, data) + " (not in the lineage journal: " + failure + ")", object_pid);
    return false;
  }
  mirror(&written, bad ? LOG_ERR : LOG_INFO, describe(event, data), object_pid);
  return true;
}

void EventLog::note(int priority, const std::string& message) {
  mirror(nullptr, priority, message, 0);
}

void EventLog::record_lineage(const Package& package) {
  const std::string digest = "sha256:" + package.manifest_digest();
  {
    std::lock_guard lock(mutex_);
    if (lineage_recorded_.count(digest)) return;
  }
  const auto base = package_event_fields(package, "");
  for (const LineageRecord& r : package.manifest().lineage) {
    auto data = base;
    data.erase("path");
    data["relation"] = r.relation;
    data["parent"] = r.parent;
    if (!r.description.empty()) data["description"] = r.description;
    for (const auto& [key, value] : r.provenance) data["provenance." + key] = value;
    record("derived", data);
  }
  std::lock_guard lock(mutex_);
  lineage_recorded_.insert(digest);
}

void EventLog::mirror(const JournalEvent* event, int priority, const std::string& message,
                      pid_t object_pid) {
  // Names from packages and other processes are shown escaped in logs (the lineage journal
  // keeps them exact).
  const std::string shown = printable(message);
  std::fprintf(stderr, "torshpkgd: %s\n", shown.c_str());
  std::vector<std::string> fields =
      event != nullptr
          ? journal_fields(*event, "torshpkgd", shown, priority)
          : std::vector<std::string>{"MESSAGE=" + shown, "PRIORITY=" + std::to_string(priority),
                                     "SYSLOG_IDENTIFIER=torshpkgd"};
  if (object_pid > 0) fields.push_back("OBJECT_PID=" + std::to_string(object_pid));
  std::vector<iovec> iov;
  for (std::string& f : fields) iov.push_back({f.data(), f.size()});
  // Best effort: without journald (no socket) the journal file and stderr still have it.
  sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
}

std::string unit_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  std::string line, unit;
  while (std::getline(in, line)) {
    // "0::/system.slice/serving.service" (v2) or "N:name=systemd:/..." (v1)
    size_t start = line.rfind(':');
    if (start == std::string::npos) continue;
    const std::string path = line.substr(start + 1);
    size_t from = 0;
    while (from < path.size()) {
      size_t end = path.find('/', from);
      if (end == std::string::npos) end = path.size();
      const std::string part = path.substr(from, end - from);
      if (part.size() > 8 && (part.ends_with(".service") || part.ends_with(".scope"))) unit = part;
      from = end + 1;
    }
    if (!unit.empty()) return unit;
  }
  return unit;
}

std::string comm_of(pid_t pid) {
  return first_line("/proc/" + std::to_string(pid) + "/comm");
}

}  // namespace torshpkg::daemon
