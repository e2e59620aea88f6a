#include "torshpkg/lineage_journal.h"

#include <fcntl.h>
#include <json/json.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "file_io.h"
#include "torshpkg/error.h"
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
  Json::Value v;
  std::string error;
  if (!parse_strict_json(line, 8, v, error)) throw bad("not JSON: " + error);
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

std::vector<std::string> split_lines(const std::string& text, const std::string& name) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = text.find('\n', start);
    if (end == std::string::npos) {
      throw corrupt(name, "line " + std::to_string(lines.size() + 1) +
                              ": unterminated (an interrupted write?)");
    }
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// The last complete event of an open journal, read from its tail: (seq, hash), or (0, zeros).
std::pair<uint64_t, std::string> last_event(int fd, const std::string& name) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw io_error(name, "cannot stat", errno);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size == 0) return {0, kZeroHash};
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
  if (tail.back() != '\n') throw corrupt(name, "the last line is unterminated");
  const size_t begin = tail.rfind('\n', tail.size() - 2);
  if (begin == std::string::npos && want < size) throw corrupt(name, "the last line is too long");
  const std::string line =
      tail.substr(begin == std::string::npos ? 0 : begin + 1,
                  tail.size() - 1 - (begin == std::string::npos ? 0 : begin + 1));
  const JournalEvent e = parse_line(line, 0, name);
  return {e.seq, e.hash};
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
    fields.push_back(name + "=" + value);
  }
  return fields;
}

LineageJournal::LineageJournal(std::string path) : path_(std::move(path)) {}

JournalEvent LineageJournal::append(std::string_view event,
                                    const std::map<std::string, std::string>& data) {
  if (event.empty()) throw invalid_argument("a journal event needs a name");
  UniqueFd fd(::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!fd) throw io_error(path_, "cannot open the lineage journal", errno);
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) throw io_error(path_, "cannot lock the lineage journal", errno);
  }
  const auto [seq, prev] = last_event(fd.get(), path_);
  Json::Value v(Json::objectValue);
  v["seq"] = Json::UInt64(seq + 1);
  v["time"] = now_utc();
  v["event"] = std::string(event);
  v["prev"] = prev;
  v["data"] = Json::Value(Json::objectValue);
  for (const auto& [key, value] : data) v["data"][key] = value;
  Json::StreamWriterBuilder writer;
  writer["indentation"] = "";
  writer["emitUTF8"] = true;
  const std::string line = Json::writeString(writer, v);
  if (line.size() > kMaxLine) throw invalid_argument("journal event too large");
  write_all(fd.get(), line + "\n", path_);
  if (::fsync(fd.get()) != 0) throw io_error(path_, "cannot fsync", errno);
  JournalEvent e = parse_line(line, seq + 1, path_);
  // The head file, replaced atomically while the journal is still locked.
  AtomicFile head(path_ + ".head");
  write_all(head.fd(), std::to_string(e.seq) + " " + e.hash + "\n", path_ + ".head");
  head.commit();
  return e;
}

std::vector<JournalEvent> LineageJournal::read() const {
  UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return {};
    throw io_error(path_, "cannot open the lineage journal", errno);
  }
  std::vector<JournalEvent> events;
  uint64_t number = 0;
  for (const std::string& line : split_lines(read_all_fd(fd.get(), path_), path_)) {
    events.push_back(parse_line(line, ++number, path_));
  }
  return events;
}

std::vector<JournalProblem> LineageJournal::verify() const {
  std::vector<JournalProblem> problems;
  std::vector<JournalEvent> events;
  try {
    events = read();
  } catch (const Error& e) {
    return {{0, e.what()}};
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
    prev = e.hash;
  }
  const std::string head_path = path_ + ".head";
  UniqueFd head(::open(head_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!head) {
    if (!events.empty() || errno != ENOENT) {
      problems.push_back({0, head_path + ": missing (the journal's head cannot be checked)"});
    }
    return problems;
  }
  const std::string text = read_all_fd(head.get(), head_path);
  unsigned long long seq = 0;
  char hash[65] = {};
  if (std::sscanf(text.c_str(), "%llu %64s", &seq, hash) != 2) {
    problems.push_back({0, head_path + ": unreadable"});
  } else if (seq != events.size()) {
    problems.push_back({0, head_path + ": records event " + std::to_string(seq) +
                               " but the journal ends at event " + std::to_string(events.size()) +
                               " (events removed from the end?)"});
  } else if ((events.empty() ? kZeroHash : events.back().hash) != hash) {
    problems.push_back({0, head_path + ": does not match the last event (edited?)"});
  }
  return problems;
}

}  // namespace torshpkg
