// Where torshpkgd records what happens to packages: the lineage journal (durable, hash-chained),
// journald (structured fields and a MESSAGE_ID per event kind, see systemd/torshpkg.catalog) and
// stderr. Thread-safe.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "torshpkg/lineage_journal.h"
#include "torshpkg/package.h"

namespace torshpkg::daemon {

class EventLog {
 public:
  explicit EventLog(const std::string& journal_path);

  // Records an event in the journal (fsync'd before returning), then mirrors it to journald and
  // stderr. When the journal cannot be written (a full disk) the event goes to journald and
  // stderr only, is counted in lost(), and false is returned: nothing waits on the journal.
  bool record(const std::string& event, const std::map<std::string, std::string>& data,
              pid_t object_pid = 0);
  // Events that could not be written to the journal since the start.
  uint64_t lost() const { return lost_; }
  // A line for journald and stderr only (daemon start, reload, errors that are no event).
  void note(int priority, const std::string& message);

  // The package's own lineage records, as "derived" events, once per package digest over the
  // journal's lifetime.
  void record_lineage(const Package& package);

 private:
  void mirror(const JournalEvent* event, int priority, const std::string& message,
              pid_t object_pid);

  LineageJournal journal_;
  std::mutex mutex_;
  std::atomic<uint64_t> lost_{0};
  std::set<std::string> lineage_recorded_;  // package digests whose lineage is in the journal
};

// The systemd unit a process belongs to, from /proc/PID/cgroup; empty when none.
std::string unit_of(pid_t pid);
// The process's command name (/proc/PID/comm); empty when gone.
std::string comm_of(pid_t pid);

}  // namespace torshpkg::daemon
