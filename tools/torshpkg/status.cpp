// torshpkg status: the mounted packages, torshpkgd's and standalone ones.
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <string>

#include "cli_util.h"
#include "commands.h"
#include "daemon_client.h"
#include "mount_point.h"
#include "torshpkg/printable.h"

namespace torshpkg::cli {

Action add_status_command(CLI::App& app) {
  struct Args {
    bool json = false;
    std::string socket;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub =
      app.add_subcommand("status", "List mounted packages (torshpkgd's and standalone)");
  sub->add_flag("--json", a->json, "One JSON object: {\"daemon\": bool, \"mounts\": [...]}");
  sub->add_option("--socket", a->socket, "torshpkgd's control socket");
  return [a] {
    Json::Value request(Json::objectValue);
    request["op"] = "status";
    bool not_served = false;
    const auto reply = daemon_request(daemon_socket(a->socket), request, {}, &not_served);
    Json::Value mounts = reply ? (*reply)["mounts"] : Json::Value(Json::arrayValue);
    std::set<std::string> known;
    for (const Json::Value& m : mounts) {
      known.insert(m["mountpoint"].asString());
    }
    if (reply) {
      // A config mount the daemon is finishing may be in the mount table already.
      for (const Json::Value& p : (*reply)["pending"]) known.insert(p["mountpoint"].asString());
    }
    // Standalone mounts: fuse.torshpkg entries the daemon does not hold.
    std::ifstream in("/proc/self/mounts");
    std::string source, point, type;
    std::string rest;
    while (in >> source >> point >> type && std::getline(in, rest)) {
      if (type != "fuse.torshpkg" || known.count(point)) continue;
      Json::Value m(Json::objectValue);
      m["path"] = source;
      m["mountpoint"] = point;
      m["standalone"] = true;
      m["alive"] = !fs::is_dead_mount(point);
      mounts.append(m);
    }
    if (a->json) {
      Json::Value out(Json::objectValue);
      out["daemon"] = reply.has_value();
      if (not_served) out["daemon_not_serving_you"] = true;
      if (reply) {
        for (const char* key : {"journal_lost_events", "memory_budget", "memory_used",
                                "decode_threads", "decode_threads_running", "idle_release_s"}) {
          out[key] = (*reply)[key];
        }
      }
      out["mounts"] = mounts;
      // The daemon's config entries not mounted: being mounted, or failed and why.
      out["pending"] = reply ? (*reply)["pending"] : Json::Value(Json::arrayValue);
      Json::StreamWriterBuilder w;
      w["indentation"] = "  ";
      std::cout << Json::writeString(w, out) << "\n";
      return kExitOk;
    }
    std::cout << (reply        ? "torshpkgd: running"
                  : not_served ? "torshpkgd: running, but its socket is not open to this user"
                               : "torshpkgd: not running")
              << "\n";
    if (reply) {
      const Json::Value& r = *reply;
      std::cout << "memory: " << human_bytes(r["memory_used"].asUInt64()) << " of "
                << human_bytes(r["memory_budget"].asUInt64()) << " for all mounts, decode threads "
                << r["decode_threads_running"].asUInt64() << " of "
                << r["decode_threads"].asUInt64() << "\n";
    }
    if (reply && (*reply)["journal_lost_events"].asUInt64() > 0) {
      std::cout << "lineage journal: " << (*reply)["journal_lost_events"].asUInt64()
                << " events could not be written (in journald only)\n";
    }
    if (reply) {
      for (const Json::Value& p : (*reply)["pending"]) {
        std::cout << printable(p["mountpoint"].asString()) << "  "
                  << printable(p["package"].asString()) << "  ("
                  << (p["state"].asString() == "failed"
                          ? "failed: " + printable(p["error"].asString())
                          : std::string("mounting"))
                  << ")\n";
      }
    }
    for (const Json::Value& m : mounts) {
      if (m["standalone"].asBool()) {
        std::cout << printable(m["mountpoint"].asString()) << "  "
                  << printable(m["path"].asString())
                  << (m["alive"].asBool() ? "  (standalone)"
                                          : "  (standalone, dead: its process is gone; `torshpkg "
                                            "umount " +
                                                m["mountpoint"].asString() + "` clears it)")
                  << "\n";
        continue;
      }
      char rate[32];
      std::snprintf(rate, sizeof rate, "%.1f%%", 100.0 * m["cache_hit_rate"].asDouble());
      std::cout << printable(m["mountpoint"].asString()) << "  "
                << printable(m["package"].asString()) << "  " << printable(m["path"].asString())
                << "\n    signer "
                << (m["signer"].isNull() ? std::string("(unsigned)")
                                         : m["signer"].asString().substr(0, 16))
                << ", since " << m["mounted_since"].asString() << ", served "
                << human_bytes(m["bytes_served"].asUInt64()) << ", cache "
                << human_bytes(m["cache_bytes"].asUInt64()) << " of "
                << human_bytes(m["cache_capacity"].asUInt64()) << " (hits " << rate << ")"
                << ", verification failures " << m["verification_failures"].asUInt64() << "\n";
      if (m.isMember("remote")) {
        const Json::Value& r = m["remote"];
        std::cout << "    fetched " << human_bytes(r["bytes"].asUInt64()) << " in "
                  << r["requests"].asUInt64() << " requests from "
                  << printable(r["first_choice"].asString()) << " (retries "
                  << r["retries"].asUInt64() << ", other copies " << r["other_copies"].asUInt64()
                  << ", failovers " << r["failovers"].asUInt64() << ")\n";
      }
    }
    return kExitOk;
  };
}

}  // namespace torshpkg::cli
