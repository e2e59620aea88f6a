#include "torshpkg/lineage_journal.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

#include "test_util.h"
#include "torshpkg/error.h"

namespace torshpkg {
namespace {

using testing::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void spit(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  return text;
}

LineageJournal three_events(const TempDir& dir) {
  LineageJournal j(dir / "lineage.jsonl");
  j.append("created", {{"package", "a@1.0.0"}});
  j.append("mounted", {{"package", "a@1.0.0"}, {"mountpoint", "/run/models/a"}});
  j.append("unmounted", {{"package", "a@1.0.0"}});
  return j;
}

TEST(LineageJournal, AppendsChainedEventsAndReadsThemBack) {
  TempDir dir;
  const LineageJournal j = three_events(dir);
  const auto events = j.read();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].seq, 1u);
  EXPECT_EQ(events[0].prev, std::string(64, '0'));
  EXPECT_EQ(events[1].prev, events[0].hash);
  EXPECT_EQ(events[2].prev, events[1].hash);
  EXPECT_EQ(events[1].event, "mounted");
  EXPECT_EQ(events[1].data.at("mountpoint"), "/run/models/a");
  EXPECT_EQ(events[0].time.size(), 24u);  // 2026-11-28T21:00:00.123Z
  EXPECT_TRUE(j.verify().empty());
  EXPECT_EQ(lines_of(slurp(j.path())).size(), 3u);
}

bool has_alarm(const std::vector<JournalProblem>& found) {
  return std::any_of(found.begin(), found.end(), [](const JournalProblem& p) { return p.alarm; });
}

TEST(LineageJournal, MissingJournalIsEmptyAndIntact) {
  TempDir dir;
  const LineageJournal j(dir / "none.jsonl");
  EXPECT_TRUE(j.read().empty());
  EXPECT_TRUE(j.verify().empty());
}

TEST(LineageJournal, DetectsAnEditedEvent) {
  TempDir dir;
  const LineageJournal j = three_events(dir);
  auto lines = lines_of(slurp(j.path()));
  const size_t at = lines[1].find("/run/models/a");
  lines[1].replace(at, 13, "/run/models/b");
  spit(j.path(), joined(lines));
  const auto problems = j.verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].line, 3u);  // the next line no longer chains to it
}

TEST(LineageJournal, DetectsADeletedEvent) {
  TempDir dir;
  const LineageJournal j = three_events(dir);
  auto lines = lines_of(slurp(j.path()));
  lines.erase(lines.begin() + 1);
  spit(j.path(), joined(lines));
  const auto problems = j.verify();
  ASSERT_FALSE(problems.empty());
  EXPECT_EQ(problems[0].line, 2u);
}

TEST(LineageJournal, DetectsReorderedEvents) {
  TempDir dir;
  const LineageJournal j = three_events(dir);
  auto lines = lines_of(slurp(j.path()));
  std::swap(lines[0], lines[1]);
  spit(j.path(), joined(lines));
  const auto problems = j.verify();
  ASSERT_FALSE(problems.empty());
  EXPECT_EQ(problems[0].line, 1u);
}

TEST(LineageJournal, DetectsEventsRemovedFromTheEnd) {
  TempDir dir;
  const LineageJournal j = three_events(dir);
  auto lines = lines_of(slurp(j.path()));
  lines.pop_back();
  spit(j.path(), joined(lines));
  const auto problems = j.verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].line, 0u);  // only the head file knows
  EXPECT_NE(problems[0].reason.find("removed from the end"), std::string::npos);
}

TEST(LineageJournal, RefusesLinesThatAreNotEvents) {
  TempDir dir;
  const LineageJournal j = three_events(dir);
  const std::string good = slurp(j.path());
  for (const std::string& bad :
       {std::string("not json\n"), std::string("{\"seq\":1}\n"), std::string("[1,2]\n"),
        std::string("{\"seq\":1,\"time\":\"t\",\"event\":\"e\",\"prev\":\"p\",\"data\":{},"
                    "\"extra\":1}\n"),
        std::string("{\"seq\":1,\"time\":\"t\",\"event\":\"e\",\"prev\":\"p\",\"data\":{\"k\":1}}"
                    "\n")}) {
    spit(j.path(), good + bad);
    EXPECT_EQ(testing::kind_of([&] { j.read(); }), ErrorKind::kCorrupt) << bad;
    EXPECT_TRUE(has_alarm(j.verify())) << bad;
  }
}

TEST(LineageJournal, ATornTailIsCutAtTheNextAppendAndRecorded) {
  TempDir dir;
  LineageJournal j = three_events(dir);
  const std::string good = slurp(j.path());
  // A crash in the middle of an append: part of a line, no newline.
  const std::string torn = "{\"seq\":4,\"time\":\"2026-";
  spit(j.path(), good + torn);
  EXPECT_EQ(j.read().size(), 3u);  // not an event
  auto found = j.verify();
  EXPECT_FALSE(has_alarm(found));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_NE(found[0].reason.find(std::to_string(torn.size()) + " bytes"), std::string::npos)
      << found[0].reason;
  const JournalEvent e = j.append("mounted", {{"mountpoint", "/m"}});
  EXPECT_EQ(e.seq, 5u);
  const auto events = j.read();
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[3].event, "recovered");
  EXPECT_EQ(events[3].data.at("bytes_dropped"), std::to_string(torn.size()));
  found = j.verify();
  EXPECT_FALSE(has_alarm(found));
  ASSERT_EQ(found.size(), 1u);  // the recovery, named
  EXPECT_EQ(found[0].line, 4u);
  EXPECT_EQ(slurp(j.path()).find("\"time\":\"2026-{"), std::string::npos);
}

TEST(LineageJournal, TruncationIsCaughtAtTheNextAppendAndNotCoveredByIt) {
  TempDir dir;
  LineageJournal j = three_events(dir);
  auto lines = lines_of(slurp(j.path()));
  lines.pop_back();
  spit(j.path(), joined(lines));
  j.append("opened", {});
  const auto events = j.read();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[2].event, "journal_damaged");
  EXPECT_NE(events[2].data.at("reason").find("removed from the end"), std::string::npos);
  j.append("opened", {});  // and later events do not hide it
  const auto found = j.verify();
  ASSERT_TRUE(has_alarm(found));
  EXPECT_EQ(found[0].line, 3u);
}

TEST(LineageJournal, AHeadOneEventBehindIsACrashNotDamage) {
  TempDir dir;
  LineageJournal j = three_events(dir);
  const std::string head = slurp(j.path() + ".head");
  j.append("opened", {});
  spit(j.path() + ".head", head);  // the crash came between the event's fsync and its head
  const auto found = j.verify();
  EXPECT_FALSE(has_alarm(found));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_NE(found[0].reason.find("one event behind"), std::string::npos);
  j.append("opened", {});
  EXPECT_TRUE(j.verify().empty());
  EXPECT_EQ(j.read().size(), 5u);  // no "journal_damaged"
}

TEST(LineageJournal, AFailedAppendLeavesNothingBehind) {
  TempDir dir;
  LineageJournal j = three_events(dir);
  const std::string before = slurp(j.path());
  // A full disk, as the file size limit makes it: the write stops part way.
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{before.size() + 20, before.size() + 20};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    try {
      j.append("mounted", {{"mountpoint", std::string(500, 'm')}});
    } catch (const Error& e) {
      ::_exit(e.kind() == ErrorKind::kIo ? 0 : 2);
    }
    ::_exit(1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(slurp(j.path()), before);  // cut back: no torn line
  EXPECT_TRUE(j.verify().empty());
  EXPECT_EQ(j.append("mounted", {}).seq, 4u);
}

TEST(LineageJournal, ConcurrentAppendersFromManyProcessesKeepOneChain) {
  TempDir dir;
  const std::string path = dir / "lineage.jsonl";
  std::vector<pid_t> children;
  for (int p = 0; p < 4; ++p) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      LineageJournal j(path);
      for (int i = 0; i < 25; ++i) j.append("opened", {{"pid", std::to_string(::getpid())}});
      ::_exit(0);
    }
    children.push_back(pid);
  }
  for (const pid_t pid : children) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  const LineageJournal j(path);
  EXPECT_EQ(j.read().size(), 100u);
  EXPECT_TRUE(j.verify().empty());
}

TEST(LineageJournal, JournaldFieldsNameTheEventAndItsData) {
  TempDir dir;
  LineageJournal j(dir / "lineage.jsonl");
  const JournalEvent e =
      j.append("mounted", {{"package", "a@1.0.0"}, {"provenance.source-url", "https://x"}});
  const auto fields = journal_fields(e, "torshpkgd", "mounted a@1.0.0", 6);
  const auto has = [&](const std::string& f) {
    return std::find(fields.begin(), fields.end(), f) != fields.end();
  };
  EXPECT_TRUE(has("MESSAGE=mounted a@1.0.0"));
  EXPECT_TRUE(has("PRIORITY=6"));
  EXPECT_TRUE(has("SYSLOG_IDENTIFIER=torshpkgd"));
  EXPECT_TRUE(has("TORSHPKG_EVENT=mounted"));
  EXPECT_TRUE(has("TORSHPKG_SEQ=1"));
  EXPECT_TRUE(has("MESSAGE_ID=f30a73e1236e402f9c0dae3b5ce62bfd"));
  EXPECT_TRUE(has("TORSHPKG_PACKAGE=a@1.0.0"));
  EXPECT_TRUE(has("TORSHPKG_PROVENANCE_SOURCE_URL=https://x"));
  EXPECT_EQ(journal_message_id("nonsense"), "");
  for (const char* kind : {"created", "signed", "derived", "mounted", "unmounted", "mount_refused",
                           "verification_failed", "opened"}) {
    EXPECT_EQ(journal_message_id(kind).size(), 32u) << kind;
  }
}

TEST(LineageJournal, RefusesEmptyNamesAndHugeEvents) {
  TempDir dir;
  LineageJournal j(dir / "lineage.jsonl");
  EXPECT_EQ(testing::kind_of([&] { j.append("", {}); }), ErrorKind::kInvalidArgument);
  EXPECT_EQ(testing::kind_of([&] {
              j.append("x", {{"big", std::string(70'000, 'a')}});
            }),
            ErrorKind::kInvalidArgument);
  EXPECT_TRUE(j.read().empty());
}

}  // namespace
}  // namespace torshpkg
