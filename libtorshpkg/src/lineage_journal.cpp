#include "torshpkg/lineage_journal.h"

#include <fcntl.h>
#include <json/json.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/printable.h"
#include "torshpkg/sha256.h"
#include "torshpkg/strict_json.h"

namespace torshpkg {
namespace {

const std::string kZeroHash(64, '0');

std::string now_utc() {
  const auto now = std::chrono::system_clock::now();
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const time_t secs = static_cast<time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[96];  // room for any int the format could print
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

std::string read_all_fd(int fd, const std::string& name) {
  std::string text;
  char buf[65536];
  uint64_t offset = 0;
  for (;;) {
    const ssize_t n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw io_error(name, "cannot read", errno);
    if (n == 0) return text;
    text.append(buf, static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
}

void write_all(int fd, std::string_view bytes, const std::string& name) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw io_error(name, "cannot write", errno);
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

// Parses one line into an event; throws Error(kCorrupt) naming the line.
JournalEvent parse_line(const std::string& line, uint64_t number, const std::string& name) {
  const auto bad = [&](const std::string& why) {
    return corrupt(name, "line " + std::to_string(number) + ": " + why);
  };
  if (line.size() > LineageJournal::kMaxLine) throw bad("longer than the limit");
  const Json::Value v =
      parse_strict_json(line, 8, [&](const std::string& why) { return bad("not JSON: " + why); });
  if (!v.isObject()) throw bad("not an object");
  for (const std::string& key : v.getMemberNames()) {
    if (key != "seq" && key != "time" && key != "event" && key != "prev" && key != "data") {
      throw bad("unknown key '" + key + "'");
    }
  }
  if (!v["seq"].isUInt64() || !v["time"].isString() || !v["event"].isString() ||
      !v["prev"].isString() || !v["data"].isObject()) {
    throw bad("seq, time, event, prev and data must all be present with their types");
  }
  JournalEvent e;
  e.seq = v["seq"].asUInt64();
  e.time = v["time"].asString();
  e.event = v["event"].asString();
  e.prev = v["prev"].asString();
  for (const std::string& key : v["data"].getMemberNames()) {
    if (!v["data"][key].isString()) throw bad("data." + key + " is not a string");
    e.data[key] = v["data"][key].asString();
  }
  e.line = line;
  e.hash = to_hex(sha256(std::string_view(line)));
  return e;
}

// The complete lines of a journal's text; `torn` gets the bytes after the last newline (an
// interrupted append), which are not an event.
std::vector<std::string> split_lines(const std::string& text, uint64_t* torn = nullptr) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    if (end == std::string::npos) break;
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  if (torn != nullptr) *torn = text.size() - start;
  return lines;
}

// The size of an open journal up to the end of its last complete line.
uint64_t complete_size(int fd, const std::string& name) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw io_error(name, "cannot stat", errno);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  uint64_t end = size;
  char buf[4096];
  while (end > 0) {
    const uint64_t from = end > sizeof buf ? end - sizeof buf : 0;
    const ssize_t n = ::pread(fd, buf, end - from, static_cast<off_t>(from));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw io_error(name, "cannot read", n < 0 ? errno : EIO);
    for (ssize_t i = n; i-- > 0;) {
      if (buf[i] == '\n') return from + static_cast<uint64_t>(i) + 1;
    }
    end = from;
  }
  return 0;
}

// The last complete event of an open journal that ends with a newline: (seq, hash, prev), or
// (0, zeros, zeros). A last line that is not an event (edited) counts by its position and
// hash, so that appending goes on (verify reports the line).
struct LastEvent {
  uint64_t seq = 0;
  std::string hash = kZeroHash;
  std::string prev = kZeroHash;
};

LastEvent last_event(int fd, const std::string& name, uint64_t size) {
  if (size == 0) return {};
  const uint64_t want = std::min<uint64_t>(size, LineageJournal::kMaxLine + 2);
  std::string tail(want, '\0');
  uint64_t done = 0;
  while (done < want) {
    const ssize_t n =
        ::pread(fd, tail.data() + done, want - done, static_cast<off_t>(size - want + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw io_error(name, "cannot read", n < 0 ? errno : EIO);
    done += static_cast<uint64_t>(n);
  }
  const size_t begin = tail.rfind('\n', tail.size() - 2);
  const std::string line =
      tail.substr(begin == std::string::npos ? 0 : begin + 1,
                  tail.size() - 1 - (begin == std::string::npos ? 0 : begin + 1));
  try {
    if (begin == std::string::npos && want < size) throw corrupt(name, "last line too long");
    const JournalEvent e = parse_line(line, 0, name);
    return {e.seq, e.hash, e.prev};
  } catch (const Error&) {
    const std::string all = read_all_fd(fd, name);
    const uint64_t lines = static_cast<uint64_t>(std::count(all.begin(), all.end(), '\n'));
    return {lines, to_hex(sha256(std::string_view(line))), kZeroHash};
  }
}

struct Head {
  bool present = false;
  uint64_t seq = 0;
  std::string hash;
};

Head read_head(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return {};
    throw io_error(path, "cannot open", errno);
  }
  const std::string text = read_all_fd(fd.get(), path);
  unsigned long long seq = 0;
  char hash[65] = {};
  Head h;
  h.present = true;
  if (std::sscanf(text.c_str(), "%llu %64s", &seq, hash) == 2) {
    h.seq = seq;
    h.hash = hash;
  }
  return h;
}

// What the head says of a journal whose last event is `last`: empty when it agrees, or is one
// event behind it (a crash between writing an event and its head); otherwise why not.
std::string head_disagreement(const Head& head, const LastEvent& last) {
  if (!head.present) {
    return last.seq == 0 ? "" : "the head file is missing while the journal holds events";
  }
  if (head.hash.empty()) return "the head file is unreadable";
  if (head.seq == last.seq && head.hash == last.hash) return "";
  if (head.seq + 1 == last.seq && head.hash == last.prev) return "";
  if (head.seq > last.seq) {
    return "the head records event " + std::to_string(head.seq) + " but the journal ends at " +
           std::to_string(last.seq) + " (events removed from the end)";
  }
  return "the head (event " + std::to_string(head.seq) +
         ") does not match the journal's end (edited or removed events)";
}

}  // namespace

std::map<std::string, std::string> package_event_fields(const Package& package,
                                                        const std::string& path) {
  return {{"package", package.manifest().name + "@" + package.manifest().version},
          {"digest", "sha256:" + package.manifest_digest()},
          {"path", path}};
}

std::string_view journal_message_id(std::string_view event) {
  static const std::map<std::string_view, std::string_view> ids = {
      {"created", "6fc10fbd3112481ab77573e18cf6d39e"},
      {"signed", "d91e8053512c4e9aba4dc9ffb5415a17"},
      {"derived", "5c3f70fd22dc46fd821956f838eb3103"},
      {"mounted", "f30a73e1236e402f9c0dae3b5ce62bfd"},
      {"unmounted", "e506e31da409411c83ff8379e57195b9"},
      {"mount_refused", "8acdce4a694744108ca95446407e6812"},
      {"umount_refused", "4d59d9e9b7964bb1b7df07ef6708789c"},
      {"verification_failed", "c4f9a46d2f2e4d9a8b2fe3cf8394e12d"},
      {"opened", "e0aa9237ce044082afa3493f0999003a"},
  };
  const auto it = ids.find(event);
  return it == ids.end() ? std::string_view() : it->second;
}

std::vector<std::string> journal_fields(const JournalEvent& event, std::string_view identifier,
                                        const std::string& message, int priority) {
  std::vector<std::string> fields = {"MESSAGE=" + message, "PRIORITY=" + std::to_string(priority),
                                     "SYSLOG_IDENTIFIER=" + std::string(identifier),
                                     "TORSHPKG_EVENT=" + event.event,
                                     "TORSHPKG_SEQ=" + std::to_string(event.seq)};
  const std::string_view id = journal_message_id(event.event);
  if (!id.empty()) fields.push_back("MESSAGE_ID=" + std::string(id));
  for (const auto& [key, value] : event.data) {
    std::string name = "TORSHPKG_";
    for (const char c : key) {
      const bool keep = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      name += c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : keep ? c : '_';
    }
    fields.push_back(name + "=" + printable(value));  // as in logs: escaped
  }
  return fields;
}

LineageJournal::LineageJournal(std::string path) : path_(std::move(path)) {}

namespace {

std::string event_line(std::string_view event, const std::map<std::string, std::string>& data,
                       uint64_t seq, const std::string& prev) {
  Json::Value v(Json::objectValue);
  v["seq"] = Json::UInt64(seq);
  v["time"] = now_utc();
  v["event"] = std::string(event);
  v["prev"] = prev;
  v["data"] = Json::Value(Json::objectValue);
  for (const auto& [key, value] : data) v["data"][key] = value;
  Json::StreamWriterBuilder writer;
  writer["indentation"] = "";
  writer["emitUTF8"] = true;
  return Json::writeString(writer, v);
}

}  // namespace

JournalEvent LineageJournal::append(std::string_view event,
                                    const std::map<std::string, std::string>& data) {
  if (event.empty()) throw invalid_argument("a journal event needs a name");
  return *write(event, data);
}

bool LineageJournal::recover() {
  return write("", {}).has_value();
}

std::optional<JournalEvent> LineageJournal::write(std::string_view event,
                                                  const std::map<std::string, std::string>& data) {
  UniqueFd fd(::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!fd) throw io_error(path_, "cannot open the lineage journal", errno);
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) throw io_error(path_, "cannot lock the lineage journal", errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw io_error(path_, "cannot stat", errno);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  // 1. A torn tail (a crash or a full disk in the middle of an append) is cut back to the last
  // complete event, and the cut is recorded below.
  const uint64_t complete = complete_size(fd.get(), path_);
  if (complete < size) {
    if (::ftruncate(fd.get(), static_cast<off_t>(complete)) != 0 || ::fsync(fd.get()) != 0) {
      throw io_error(path_, "cannot cut the interrupted write at the journal's end", errno);
    }
  }
  const uint64_t torn = size - complete;
  // 2. The head is checked on every append: a journal cut short or edited at its end is
  // recorded now, not covered by the events that follow.
  LastEvent last = last_event(fd.get(), path_, complete);
  const std::string damage = head_disagreement(read_head(path_ + ".head"), last);
  std::vector<std::pair<std::string, std::map<std::string, std::string>>> lines;
  if (!damage.empty()) lines.push_back({"journal_damaged", {{"reason", damage}}});
  if (torn > 0) {
    lines.push_back({"recovered",
                     {{"bytes_dropped", std::to_string(torn)},
                      {"reason", "an unterminated last line (an interrupted write)"}}});
  }
  if (!event.empty()) lines.push_back({std::string(event), data});
  if (lines.empty()) return std::nullopt;
  // 3. Each line lands whole or not at all, with its head: a failed write or head update cuts
  // the journal back to where it was, so the head is never more than one event behind (what a
  // crash between the two leaves).
  JournalEvent written;
  uint64_t at = complete;
  for (const auto& [name, fields] : lines) {
    const std::string line = event_line(name, fields, last.seq + 1, last.hash);
    if (line.size() > kMaxLine) throw invalid_argument("journal event too large");
    written = parse_line(line, last.seq + 1, path_);
    try {
      write_all(fd.get(), line + "\n", path_);
      if (::fsync(fd.get()) != 0) throw io_error(path_, "cannot fsync", errno);
      // The head file, replaced atomically while the journal is still locked.
      AtomicFile head(path_ + ".head");
      write_all(head.fd(), std::to_string(written.seq) + " " + written.hash + "\n",
                path_ + ".head");
      head.commit();
    } catch (...) {
      if (::ftruncate(fd.get(), static_cast<off_t>(at)) == 0) ::fsync(fd.get());
      throw;
    }
    at += line.size() + 1;
    last = {written.seq, written.hash, written.prev};
  }
  return written;
}

std::vector<JournalEvent> LineageJournal::read() const {
  UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return {};
    throw io_error(path_, "cannot open the lineage journal", errno);
  }
  std::vector<JournalEvent> events;
  uint64_t number = 0;
  for (const std::string& line : split_lines(read_all_fd(fd.get(), path_))) {
    events.push_back(parse_line(line, ++number, path_));
  }
  return events;
}

std::vector<JournalProblem> LineageJournal::verify() const {
  std::vector<JournalProblem> problems;
  std::vector<JournalEvent> events;
  uint64_t torn = 0;
  try {
    UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd && errno != ENOENT) throw io_error(path_, "cannot open the lineage journal", errno);
    if (fd) {
      uint64_t number = 0;
      for (const std::string& line : split_lines(read_all_fd(fd.get(), path_), &torn)) {
        events.push_back(parse_line(line, ++number, path_));
      }
    }
  } catch (const Error& e) {
    return {{0, e.what(), true}};
  }
  std::string prev = kZeroHash;
  for (size_t i = 0; i < events.size(); ++i) {
    const JournalEvent& e = events[i];
    if (e.seq != i + 1) {
      problems.push_back({i + 1, "sequence number " + std::to_string(e.seq) + ", expected " +
                                     std::to_string(i + 1) + " (an event deleted or moved?)"});
    }
    if (e.prev != prev) {
      problems.push_back({i + 1,
                          "does not chain to the line before it (that line edited, "
                          "deleted or moved?)"});
    }
    if (e.event == "journal_damaged") {
      const auto it = e.data.find("reason");
      problems.push_back(
          {i + 1, "the journal was found damaged before this event: " +
                      (it == e.data.end() ? std::string("(no reason)") : it->second)});
    }
    if (e.event == "recovered") {
      const auto it = e.data.find("bytes_dropped");
      problems.push_back({i + 1,
                          "recovered: an interrupted write of " +
                              (it == e.data.end() ? std::string("?") : it->second) +
                              " bytes was cut before this event",
                          false});
    }
    prev = e.hash;
  }
  if (torn > 0) {
    problems.push_back({events.size() + 1,
                        "an interrupted write left " + std::to_string(torn) +
                            " bytes after the last event (the next append cuts them)",
                        false});
  }
  const std::string head_path = path_ + ".head";
  Head head;
  try {
    head = read_head(head_path);
  } catch (const Error& e) {
    problems.push_back({0, e.what()});
    return problems;
  }
  LastEvent last;
  if (!events.empty()) last = {events.back().seq, events.back().hash, events.back().prev};
  const std::string disagreement = head_disagreement(head, last);
  if (!disagreement.empty()) {
    problems.push_back({0, head_path + ": " + disagreement});
  } else if (head.present && head.seq + 1 == last.seq) {
    problems.push_back({0,
                        head_path + ": one event behind (a crash between writing an event and "
                                    "its head; the next append brings it up to date)",
                        false});
  }
  return problems;
}

}  // namespace torshpkg
