// The lineage journal: an append-only JSON-lines file of what happened to packages on a host
// (created, signed, derived from, mounted, unmounted, mount refused, chunk verification failed,
// opened by a process).
//
// Every line is one event whose "prev" is the SHA-256 (hex) of the line before it (64 zeros for
// the first), so an edited, deleted or reordered event breaks the chain. A head file beside the
// journal (PATH + ".head") records the sequence number and hash of the last event, so removing
// events from the end is detected too. The chain has no secret: it detects edits, it does not
// stop someone who can rewrite both files (journald keeps the independent copy).
//
// Appends are serialised across processes with flock and fsync'd (line, then head) before
// append() returns, so an event is durable before the action it records is acknowledged.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "torshpkg/package.h"

namespace torshpkg {

struct JournalEvent {
  uint64_t seq = 0;                         // 1, 2, 3, ...
  std::string time;                         // UTC, RFC 3339 with milliseconds
  std::string event;                        // "mounted", "unmounted", ...
  std::string prev;                         // SHA-256 of the previous line
  std::map<std::string, std::string> data;  // the event's fields
  std::string line;                         // the exact line (without its newline)
  std::string hash;                         // SHA-256 of `line`
};

// One problem `verify` found.
struct JournalProblem {
  uint64_t line = 0;  // 1-based line number; 0 for the head file
  std::string reason;
};

// The journald MESSAGE_ID (32 hex digits) of an event kind, as systemd/torshpkg.catalog lists
// them; empty for an unknown kind.
std::string_view journal_message_id(std::string_view event);

// The journald fields of an event: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER=`identifier`,
// MESSAGE_ID, TORSHPKG_EVENT, TORSHPKG_SEQ and TORSHPKG_<FIELD> for each data field (upper-cased,
// other characters as '_'). The caller sends them (sd_journal_sendv).
std::vector<std::string> journal_fields(const JournalEvent& event, std::string_view identifier,
                                        const std::string& message, int priority);

// The fields every event about a package carries: package (name@version), digest
// ("sha256:" + manifest digest) and path (the package file, as given).
std::map<std::string, std::string> package_event_fields(const Package& package,
                                                        const std::string& path);

class LineageJournal {
 public:
  // Lines longer than this are refused on append and on read.
  static constexpr size_t kMaxLine = 64 * 1024;

  explicit LineageJournal(std::string path);

  const std::string& path() const { return path_; }

  // Appends an event, creating the journal (0640) and its folder's head file when absent.
  // Throws Error(kIo) when it cannot write, Error(kInvalidArgument) for an empty event name or a
  // line over kMaxLine. Thread- and process-safe.
  JournalEvent append(std::string_view event, const std::map<std::string, std::string>& data);

  // Every event in order. A missing journal reads as empty. Throws Error(kCorrupt) naming the
  // line for one that is not an event.
  std::vector<JournalEvent> read() const;

  // Checks the chain (sequence numbers, prev hashes) and the head file; returns every problem,
  // empty when the journal is intact.
  std::vector<JournalProblem> verify() const;

 private:
  std::string path_;
};

}  // namespace torshpkg
