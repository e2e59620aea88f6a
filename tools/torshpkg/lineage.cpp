// torshpkg lineage: read and check the lineage journal (log, verify, show, export).
#include <json/json.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "cli_util.h"
#include "commands.h"
#include "torshpkg/lineage_journal.h"
#include "torshpkg/printable.h"

namespace torshpkg::cli {
namespace {

std::string field(const JournalEvent& e, const std::string& key) {
  const auto it = e.data.find(key);
  return it == e.data.end() ? std::string() : it->second;
}

// One line per event: what happened, to which package, where.
std::string summary(const JournalEvent& e) {
  std::string s = field(e, "package");
  if (e.event == "derived") s += " " + field(e, "relation") + " " + field(e, "parent");
  if (!field(e, "mountpoint").empty()) s += " at " + field(e, "mountpoint");
  if (e.event == "opened") {
    s += " by " + field(e, "comm") + " (pid " + field(e, "pid") + ", uid " + field(e, "uid");
    if (!field(e, "unit").empty()) s += ", " + field(e, "unit");
    s += ")";
  }
  if (!field(e, "signer").empty()) s += " signed by " + field(e, "signer").substr(0, 16);
  if (!field(e, "error").empty()) s += ": " + field(e, "error");
  if (s.empty() || s[0] == ' ') s = field(e, "path") + s;
  return s;
}

Json::Value to_json(const JournalEvent& e) {
  Json::Value v(Json::objectValue);
  v["seq"] = Json::UInt64(e.seq);
  v["time"] = e.time;
  v["event"] = e.event;
  v["prev"] = e.prev;
  v["hash"] = e.hash;
  v["data"] = Json::Value(Json::objectValue);
  for (const auto& [k, val] : e.data) v["data"][k] = val;
  return v;
}

// The lineage graph from "derived" events: child package -> (relation, parent) edges.
struct Graph {
  std::map<std::string, std::set<std::pair<std::string, std::string>>> parents;   // child -> ...
  std::map<std::string, std::set<std::pair<std::string, std::string>>> children;  // parent -> ...
};

Graph graph_of(const std::vector<JournalEvent>& events) {
  Graph g;
  for (const JournalEvent& e : events) {
    if (e.event != "derived") continue;
    const std::string child = field(e, "package"), parent = field(e, "parent");
    g.parents[child].insert({field(e, "relation"), parent});
    g.children[parent].insert({field(e, "relation"), child});
  }
  return g;
}

// Whether a node ("name@version" or a free-form parent reference) is what `query` names.
bool matches(const std::string& node, const std::string& query) {
  return node == query || (query.find('@') == std::string::npos && node.rfind(query + "@", 0) == 0);
}

void walk(const std::map<std::string, std::set<std::pair<std::string, std::string>>>& edges,
          const std::string& from, const std::string& arrow, int depth,
          std::set<std::string>& seen) {
  const auto it = edges.find(from);
  if (it == edges.end()) return;
  for (const auto& [relation, to] : it->second) {
    std::cout << std::string(2 * depth, ' ') << arrow << " " << printable(relation) << " "
              << printable(to) << "\n";
    if (seen.insert(to).second) walk(edges, to, arrow, depth + 1, seen);
  }
}

std::string dot_quote(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

Action add_lineage_command(CLI::App& app) {
  struct Args {
    std::string journal = [] {
      const char* env = std::getenv("TORSHPKG_JOURNAL");
      return std::string(env != nullptr && *env != '\0' ? env : "/var/lib/torshpkg/lineage.jsonl");
    }();
    bool json = false;
    std::string name;
    bool dot = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("lineage", "Read and check the lineage journal");
  sub->require_subcommand(1);
  const std::string journal_help =
      "Journal file (default $TORSHPKG_JOURNAL, else /var/lib/torshpkg/lineage.jsonl)";
  CLI::App* log = sub->add_subcommand("log", "List the journal's events");
  log->add_option("--journal", a->journal, journal_help);
  log->add_flag("--json", a->json, "One JSON array of events");
  CLI::App* verify =
      sub->add_subcommand("verify", "Check the hash chain and head (exit 3 if broken)");
  verify->add_option("--journal", a->journal, journal_help);
  CLI::App* show = sub->add_subcommand("show", "Ancestors and descendants of a package");
  show->add_option("NAME", a->name, "NAME or NAME@VERSION")->required();
  show->add_option("--journal", a->journal, journal_help);
  CLI::App* exp = sub->add_subcommand("export", "The lineage graph for other tools");
  exp->add_flag("--dot", a->dot, "Graphviz dot (the only format so far)")->required();
  exp->add_option("--journal", a->journal, journal_help);

  return [a, log, verify, show] {
    const LineageJournal journal(a->journal);
    if (verify->parsed()) {
      const auto problems = journal.verify();
      const bool alarm = std::any_of(problems.begin(), problems.end(),
                                     [](const JournalProblem& p) { return p.alarm; });
      for (const JournalProblem& p : problems) {
        (p.alarm ? std::cerr : std::cout)
            << a->journal << (p.line > 0 ? ":" + std::to_string(p.line) : "") << ": " << p.reason
            << "\n";
      }
      if (!alarm) {
        std::cout << a->journal << ": intact, " << journal.read().size() << " events\n";
        return kExitOk;
      }
      return kExitIntegrity;
    }
    const auto events = journal.read();
    if (log->parsed()) {
      if (a->json) {
        Json::Value all(Json::arrayValue);
        for (const JournalEvent& e : events) all.append(to_json(e));
        Json::StreamWriterBuilder w;
        w["indentation"] = "  ";
        std::cout << Json::writeString(w, all) << "\n";
      } else {
        for (const JournalEvent& e : events) {
          // Journal fields (process names among them) are shown escaped; --json keeps them.
          std::cout << e.seq << "  " << printable(e.time) << "  " << printable(e.event) << "  "
                    << printable(summary(e)) << "\n";
        }
      }
      return kExitOk;
    }
    const Graph g = graph_of(events);
    if (show->parsed()) {
      std::set<std::string> nodes;
      for (const auto& [n, _] : g.parents) nodes.insert(n);
      for (const auto& [n, _] : g.children) nodes.insert(n);
      bool found = false;
      for (const std::string& n : nodes) {
        if (!matches(n, a->name)) continue;
        found = true;
        std::cout << printable(n) << "\n";
        std::set<std::string> seen = {n};
        walk(g.parents, n, "<-", 1, seen);
        seen = {n};
        walk(g.children, n, "->", 1, seen);
      }
      if (!found) throw Error(ErrorKind::kNotFound, a->name + ": no lineage in " + a->journal);
      return kExitOk;
    }
    std::cout << "digraph lineage {\n  rankdir=LR;\n";
    for (const auto& [child, edges] : g.parents) {
      for (const auto& [relation, parent] : edges) {
        std::cout << "  " << dot_quote(parent) << " -> " << dot_quote(child)
                  << " [label=" << dot_quote(relation) << "];\n";
      }
    }
    std::cout << "}\n";
    return kExitOk;
  };
}

}  // namespace torshpkg::cli
