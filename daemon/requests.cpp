#include "requests.h"

#include <map>
#include <string>

#include "control.h"
#include "mount_access.h"
#include "torshpkg/error.h"

namespace torshpkg::daemon {
namespace {

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

Json::Value status_json(const MountTable& table, const EventLog& log) {
  Json::Value reply(Json::objectValue);
  reply["ok"] = true;
  // Events the lineage journal could not take (a full disk): in journald only.
  reply["journal_lost_events"] = Json::UInt64(log.lost());
  // What the mounts share: the memory budget and the decoding threads.
  const SharedUsage usage = table.usage();
  reply["memory_budget"] = Json::UInt64(usage.memory_budget);
  reply["memory_used"] = Json::UInt64(usage.memory_used);
  reply["decode_threads"] = Json::UInt64(usage.decode_threads);
  reply["decode_threads_running"] = Json::UInt64(usage.decode_threads_running);
  reply["idle_release_s"] = usage.idle_release_s;
  reply["mounts"] = Json::Value(Json::arrayValue);
  for (const MountStatus& m : table.status()) {
    Json::Value v(Json::objectValue);
    v["package"] = m.package;
    v["path"] = m.path;
    v["mountpoint"] = m.mountpoint;
    v["signer"] = m.signer.empty() ? Json::Value() : Json::Value(m.signer);
    v["digest"] = m.digest;
    v["mounted_since"] = m.since;
    v["owner_uid"] = m.access.uid;
    v["owner_gid"] = m.access.gid;
    v["mode"] = fs::mode_string(m.access.mode);
    v["requested_by_uid"] = m.requested_by;
    v["from_config"] = m.from_config;
    v["bytes_served"] = Json::UInt64(m.stats.bytes_served);
    const uint64_t lookups = m.stats.cache_hits + m.stats.cache_misses;
    v["cache_hits"] = Json::UInt64(m.stats.cache_hits);
    v["cache_misses"] = Json::UInt64(m.stats.cache_misses);
    v["cache_bytes"] = Json::UInt64(m.stats.cache_bytes);
    v["cache_capacity"] = Json::UInt64(m.stats.cache_capacity);
    v["cache_in_flight_bytes"] = Json::UInt64(m.stats.cache_in_flight_bytes);
    v["cache_hit_rate"] =
        lookups == 0 ? 0.0 : static_cast<double>(m.stats.cache_hits) / static_cast<double>(lookups);
    v["verification_failures"] = Json::UInt64(m.stats.read_failures);
    if (m.remote) {
      Json::Value r(Json::objectValue);
      r["first_choice"] = m.remote->first_choice;
      r["requests"] = Json::UInt64(m.remote->requests);
      r["bytes"] = Json::UInt64(m.remote->bytes);
      r["retries"] = Json::UInt64(m.remote->retries);
      r["other_copies"] = Json::UInt64(m.remote->other_copies);
      r["failovers"] = Json::UInt64(m.remote->failovers);
      v["remote"] = r;
    }
    reply["mounts"].append(v);
  }
  // Config entries not mounted: being mounted now, or failed (with the reason).
  reply["pending"] = Json::Value(Json::arrayValue);
  for (const PendingMount& p : table.pending()) {
    Json::Value v(Json::objectValue);
    v["package"] = p.package;
    v["mountpoint"] = p.mountpoint;
    v["state"] = p.error.empty() ? "mounting" : "failed";
    if (!p.error.empty()) v["error"] = p.error;
    reply["pending"].append(v);
  }
  return reply;
}

std::string request_text(const Json::Value& request, const char* key) {
  const Json::Value& v = request[key];
  if (v.isNull()) return "";
  if (!v.isString() || v.asString().size() > 4096) {
    throw Error(ErrorKind::kInvalidArgument, std::string(key) + ": expected a string");
  }
  return v.asString();
}

bool request_flag(const Json::Value& request, const char* key) {
  return request[key].isBool() && request[key].asBool();
}

// The passed descriptor a request names with `key` (a position), or -1.
int passed_fd(const Json::Value& request, const char* key, const std::vector<int>& fds) {
  const Json::Value& v = request[key];
  if (v.isNull()) return -1;
  if (!v.isUInt() || v.asUInt() >= fds.size()) {
    throw Error(ErrorKind::kInvalidArgument,
                std::string(key) + ": expected the position of a passed descriptor");
  }
  return fds[v.asUInt()];
}

// Journals a mount or unmount request refused before the table acted on it (the table journals
// what it does and refuses itself).
void record_refusal(EventLog& log, const std::string& event, const Json::Value& request,
                    const Requester& who, const std::string& error) {
  std::map<std::string, std::string> data = {
      {"mountpoint", request["mountpoint"].isString() ? request["mountpoint"].asString() : ""},
      {"requester_uid", std::to_string(who.uid)},
      {"requester_pid", std::to_string(who.pid)},
      {"error", error}};
  if (request["package"].isString()) data["path"] = request["package"].asString();
  log.record(event, data);
}

}  // namespace

Json::Value handle_request(const Json::Value& request, const Requester& who,
                           const std::vector<int>& fds, MountTable& table,
                           const SharedConfig& shared, EventLog& log) {
  const std::string op = request["op"].asString();
  if (op == "status") return status_json(table, log);
  const std::shared_ptr<const DaemonConfig> config = shared.get();
  if (op == "mount") {
    MountEntry e;
    PassedFiles files;
    try {
      e.package = absolute_path(request, "package", true);
      e.mountpoint = absolute_path(request, "mountpoint", true);
      e.password_file = absolute_path(request, "password_file", false);
      e.key_file = absolute_path(request, "key_file", false);
      e.allow_unsigned = request_flag(request, "allow_unsigned");
      e.buffered_reads = request_flag(request, "buffered_reads");
      e.nonempty = request_flag(request, "nonempty");
      e.require_key = request_text(request, "require_key");
      e.access.owner = request_text(request, "owner");
      e.access.group = request_text(request, "group");
      e.access.mode = request_text(request, "mode");
      e.access.umask = request_text(request, "umask");
      e.cache_bytes = request_number(request, "cache_bytes", e.cache_bytes, UINT64_MAX);
      e.kernel_read_ahead_kb = static_cast<uint32_t>(request_number(
          request, "kernel_readahead_kb", e.kernel_read_ahead_kb, fs::kMaxKernelReadAheadKb));
      if (!request["trusted_keys_dir"].isNull()) {
        // The daemon's configuration says which keys are trusted; a request may only narrow it.
        throw Error(ErrorKind::kInvalidArgument,
                    "trusted_keys_dir: torshpkgd applies its own trusted keys (" +
                        config->trusted_keys_dir +
                        "); give require_key to narrow them, or mount standalone");
      }
      if (!who.privileged && e.allow_unsigned) {
        throw Error(ErrorKind::kBadSignature,
                    e.package +
                        ": members of the control group may not mount unsigned packages "
                        "(torshpkgd's trust policy applies); ask root, or mount "
                        "standalone with --standalone --allow-unsigned");
      }
      if (!who.privileged && e.nonempty) {
        throw Error(ErrorKind::kInvalidArgument, "nonempty: members mount onto empty folders only");
      }
      // The kernel's readahead is the host's to tune: a member's mount gets the default.
      if (!who.privileged) e.kernel_read_ahead_kb = fs::kDefaultKernelReadAheadKb;
      files.package = passed_fd(request, "package_fd", fds);
      files.mountpoint = passed_fd(request, "mountpoint_fd", fds);
      files.secret = passed_fd(request, "secret_fd", fds);
    } catch (const Error& err) {
      record_refusal(log, "mount_refused", request, who, err.what());
      throw;
    }
    const MountStatus m = table.mount(e, MountContext::of(*config), false, who, files);
    Json::Value reply(Json::objectValue);
    reply["ok"] = true;
    reply["package"] = m.package;
    reply["signer"] = m.signer;
    reply["mountpoint"] = m.mountpoint;
    reply["mode"] = fs::mode_string(m.access.mode);
    reply["owner_uid"] = m.access.uid;
    reply["owner_gid"] = m.access.gid;
    return reply;
  }
  if (op == "umount") {
    const std::string point = absolute_path(request, "mountpoint", true);
    const bool lazy = request_flag(request, "lazy");
    bool found = false;
    try {
      found = table.unmount(point, lazy, who);
    } catch (const Error& err) {
      record_refusal(log, "umount_refused", request, who, err.what());
      throw;
    }
    if (!found) {
      return error_reply(point + ": torshpkgd has nothing mounted there", ErrorKind::kNotFound);
    }
    Json::Value reply(Json::objectValue);
    reply["ok"] = true;
    return reply;
  }
  return error_reply("unknown op '" + op + "'", ErrorKind::kInvalidArgument);
}

}  // namespace torshpkg::daemon
