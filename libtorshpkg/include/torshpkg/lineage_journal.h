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
// append() returns, so an event is durable before the action it records is acknowledged. An
// append lands whole or not at all: when the write or the head update fails (a full disk) the
// journal is cut back to where it was. Every append first cuts a torn tail (an interrupted
// write: a crash) back to the last complete event and records a "recovered" event naming the
// bytes dropped, and checks the head: a journal cut short or edited at its end gets a
// "journal_damaged" event at once, which verify reports, so later events never cover it. A
// head one event behind its journal is what a crash between the two fsyncs leaves: not damage.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "torshpkg/package.h"

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

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

// One thing `verify` found: a problem (alarm), or a recovery it names (not an alarm: an
// interrupted write cut back, a head one event behind after a crash).
struct JournalProblem {
  uint64_t line = 0;  // 1-based line number; 0 for the head file
  std::string reason;
  bool alarm = true;
};

// The journald MESSAGE_ID (32 hex digits) of an event kind, as systemd/torshpkg.catalog lists
// them; empty for an unknown kind.
std::string_view journal_message_id(std::string_view event);

// The journald fields of an event: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER=`identifier`,
// MESSAGE_ID, TORSHPKG_EVENT, TORSHPKG_SEQ and TORSHPKG_<FIELD> for each data field (upper-cased,
// other characters as '_'), the values escaped as in logs (torshpkg/printable.h). The caller
// sends them (sd_journal_sendv).
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

  // What append does first, alone: cuts a torn tail and records it, records damage the head
  // shows. True when it recorded something. For a daemon's start.
  bool recover();

  // Every complete event in order (an interrupted write at the end is not one). A missing
  // journal reads as empty. Throws Error(kCorrupt) naming the line for one that is not an event.
  std::vector<JournalEvent> read() const;

  // Checks the chain (sequence numbers, prev hashes), recorded damage and the head file; returns
  // every problem and recovery (JournalProblem::alarm tells them apart): no alarm means intact.
  std::vector<JournalProblem> verify() const;

 private:
  // Recovers, then appends `event` unless it is empty; the last event written, if any.
  std::optional<JournalEvent> write(std::string_view event,
                                    const std::map<std::string, std::string>& data);
  std::string path_;
};

}  // namespace torshpkg

#pragma GCC visibility pop
