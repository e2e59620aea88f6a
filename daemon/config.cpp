#include "config.h"

#include <json/json.h>

#include <fstream>
#include <memory>
#include <set>

#include "oci.h"
#include "torshpkg/byte_size.h"
#include "torshpkg/error.h"
#include "torshpkg/store.h"
#include "torshpkg/strict_json.h"

namespace torshpkg::daemon {
namespace {

constexpr size_t kMaxConfigBytes = 1 << 20;
constexpr size_t kMaxMounts = 4096;

class Checker {
 public:
  explicit Checker(std::string name) : name_(std::move(name)) {}

  [[noreturn]] void fail(const std::string& where, const std::string& why) const {
    throw Error(ErrorKind::kInvalidArgument, name_ + ": " + where + ": " + why);
  }

  void only_keys(const Json::Value& object, const std::string& where,
                 const std::set<std::string>& allowed) const {
    for (const std::string& key : object.getMemberNames()) {
      if (!allowed.count(key)) fail(where.empty() ? key : where + "." + key, "unknown key");
    }
  }

  // An absolute path, or the default when the key is absent; null counts as absent.
  std::string path(const Json::Value& object, const std::string& key, const std::string& where,
                   const std::string& fallback) const {
    const std::string at = where.empty() ? key : where + "." + key;
    if (!object.isMember(key) || object[key].isNull()) return fallback;
    if (!object[key].isString()) fail(at, "must be a string (a path)");
    const std::string value = object[key].asString();
    if (value.empty() || value[0] != '/') fail(at, "must be an absolute path, got '" + value + "'");
    if (value.find('\0') != std::string::npos) fail(at, "contains a NUL byte");
    return value;
  }

  bool flag(const Json::Value& object, const std::string& key, const std::string& where) const {
    if (!object.isMember(key) || object[key].isNull()) return false;
    if (!object[key].isBool()) fail(where + "." + key, "must be true or false");
    return object[key].asBool();
  }

  // A byte count: a whole number, or a string such as "256M" (torshpkg/byte_size.h).
  uint64_t byte_size(const Json::Value& object, const std::string& key, const std::string& where,
                     uint64_t fallback) const {
    const std::string at = where + "." + key;
    if (!object.isMember(key) || object[key].isNull()) return fallback;
    const Json::Value& v = object[key];
    if (v.isString()) return parse_byte_size(v.asString(), name_ + ": " + at);
    if (!v.isUInt64()) fail(at, "must be a byte count (a whole number, or a string like \"256M\")");
    return v.asUInt64();
  }

  // A string, or "" when the key is absent; null counts as absent.
  std::string text(const Json::Value& object, const std::string& key,
                   const std::string& where) const {
    const std::string at = where.empty() ? key : where + "." + key;
    if (!object.isMember(key) || object[key].isNull()) return "";
    if (!object[key].isString()) fail(at, "must be a string");
    const std::string value = object[key].asString();
    if (value.find('\0') != std::string::npos) fail(at, "contains a NUL byte");
    return value;
  }

  uint32_t whole(const Json::Value& object, const std::string& key, const std::string& where,
                 uint32_t fallback, uint32_t max) const {
    if (!object.isMember(key) || object[key].isNull()) return fallback;
    const Json::Value& v = object[key];
    if (!v.isUInt() || v.asUInt() > max) {
      fail((where.empty() ? key : where + "." + key),
           "must be a whole number from 0 to " + std::to_string(max));
    }
    return v.asUInt();
  }

 private:
  std::string name_;
};

}  // namespace

DaemonConfig parse_config(const std::string& text, const std::string& name) {
  if (text.size() > kMaxConfigBytes) {
    throw Error(ErrorKind::kInvalidArgument, name + ": larger than 1 MiB");
  }
  const Json::Value root = parse_strict_json(text, 32, [&](const std::string& why) {
    return Error(ErrorKind::kInvalidArgument, name + ": not valid JSON: " + why);
  });
  const Checker check(name);
  if (!root.isObject()) check.fail("(top level)", "must be an object");
  check.only_keys(
      root, "",
      {"control_socket", "lineage_journal", "trusted_keys_dir", "store", "mounts", "control_group",
       "mountpoint_root", "registry_credentials", "pull_timeout_s", "memory_budget",
       "decode_threads", "idle_release_s", "disk_cache", "disk_cache_size"});
  DaemonConfig config;
  config.control_socket = check.path(root, "control_socket", "", config.control_socket);
  config.lineage_journal = check.path(root, "lineage_journal", "", config.lineage_journal);
  config.trusted_keys_dir = check.path(root, "trusted_keys_dir", "", config.trusted_keys_dir);
  config.store = check.path(root, "store", "", config.store);
  config.mountpoint_root = check.path(root, "mountpoint_root", "", "");
  config.registry_credentials = check.path(root, "registry_credentials", "", "");
  config.pull_timeout_s = check.whole(root, "pull_timeout_s", "", config.pull_timeout_s, 3600);
  if (config.pull_timeout_s == 0) check.fail("pull_timeout_s", "must be at least 1");
  if (root.isMember("disk_cache") && root["disk_cache"].isString() &&
      root["disk_cache"].asString().empty()) {
    config.disk_cache.clear();  // "": none
  } else {
    config.disk_cache = check.path(root, "disk_cache", "", config.disk_cache);
  }
  config.disk_cache_bytes = check.byte_size(root, "disk_cache_size", "", config.disk_cache_bytes);
  config.memory_budget = check.byte_size(root, "memory_budget", "", config.memory_budget);
  if (config.memory_budget < (1u << 20)) check.fail("memory_budget", "must be at least 1M");
  config.decode_threads = check.whole(root, "decode_threads", "", config.decode_threads, 4096);
  if (config.decode_threads == 0) check.fail("decode_threads", "must be at least 1");
  config.idle_release_s = check.whole(root, "idle_release_s", "", config.idle_release_s, 86400);
  config.control_group = check.text(root, "control_group", "");
  if (root.isMember("mounts") && !root["mounts"].isNull()) {
    const Json::Value& mounts = root["mounts"];
    if (!mounts.isArray()) check.fail("mounts", "must be an array");
    if (mounts.size() > kMaxMounts) check.fail("mounts", "more than 4096 entries");
    std::set<std::string> mountpoints;
    for (Json::ArrayIndex i = 0; i < mounts.size(); ++i) {
      const std::string where = "mounts[" + std::to_string(i) + "]";
      const Json::Value& m = mounts[i];
      if (!m.isObject()) check.fail(where, "must be an object");
      check.only_keys(
          m, where,
          {"package", "mountpoint", "password_file", "key_file", "allow_unsigned", "with_deps",
           "buffered_reads", "cache_size", "kernel_readahead_kb", "owner", "group", "mode",
           "nonempty", "require_key", "allow_downgrade", "lazy", "prefetch"});
      MountEntry e;
      const std::string given = m["package"].isString() ? m["package"].asString() : "";
      if (given.starts_with("oci://") || given.starts_with("https://") ||
          given.starts_with("http://")) {
        // Pulled into the store (digest checked, installed under the trust policy), then mounted.
        if (given.starts_with("oci://")) {
          try {
            distribution::parse_oci_ref(given);
          } catch (const Error& err) {
            check.fail(where + ".package", err.what());
          }
        }
        e.package = given;
        e.store = config.store;
      } else if (!given.empty() && given[0] != '/' && given.find('@') != std::string::npos) {
        // NAME@REQ: the highest matching version in the store, resolved when mounted.
        const auto ref = parse_package_ref(given);
        if (!ref) check.fail(where + ".package", "'" + given + "' is not NAME@REQ");
        try {
          VersionReq::parse(ref->req);
        } catch (const Error& err) {
          check.fail(where + ".package", err.what());
        }
        e.package = given;
        e.store = config.store;
      } else if (!given.empty() && given[0] != '/') {
        check.fail(where + ".package",
                   "must be an absolute path (or NAME@REQ from the store), got '" + given + "'");
      } else {
        e.package = check.path(m, "package", where, "");
      }
      e.mountpoint = check.path(m, "mountpoint", where, "");
      if (e.package.empty()) check.fail(where + ".package", "missing");
      if (e.mountpoint.empty()) check.fail(where + ".mountpoint", "missing");
      while (e.mountpoint.size() > 1 && e.mountpoint.back() == '/') e.mountpoint.pop_back();
      e.password_file = check.path(m, "password_file", where, "");
      e.key_file = check.path(m, "key_file", where, "");
      if (!e.password_file.empty() && !e.key_file.empty()) {
        check.fail(where, "give password_file or key_file, not both");
      }
      e.allow_unsigned = check.flag(m, "allow_unsigned", where);
      e.with_deps = check.flag(m, "with_deps", where);
      e.nonempty = check.flag(m, "nonempty", where);
      e.allow_downgrade = check.flag(m, "allow_downgrade", where);
      e.lazy = check.flag(m, "lazy", where);
      if (e.lazy && !given.starts_with("https://") && !given.starts_with("http://") &&
          !given.starts_with("oci://")) {
        check.fail(where + ".lazy", "needs an http(s):// or oci:// package (the others are local)");
      }
      const std::string prefetch = check.text(m, "prefetch", where);
      if (!prefetch.empty() && prefetch != "all")
        check.fail(where + ".prefetch", "must be \"all\"");
      e.prefetch_all = prefetch == "all";
      if (e.prefetch_all && !e.lazy) check.fail(where + ".prefetch", "needs \"lazy\": true");
      e.require_key = check.text(m, "require_key", where);
      e.access.owner = check.text(m, "owner", where);
      e.access.group = check.text(m, "group", where);
      e.access.mode = check.text(m, "mode", where);
      if (!e.access.mode.empty()) {  // users and groups are looked up when mounting
        try {
          fs::parse_mount_mode(e.access.mode, "mode");
        } catch (const Error& err) {
          check.fail(where + ".mode", err.what());
        }
      }
      e.buffered_reads = check.flag(m, "buffered_reads", where);
      e.cache_bytes = check.byte_size(m, "cache_size", where, e.cache_bytes);
      e.kernel_read_ahead_kb = check.whole(m, "kernel_readahead_kb", where, e.kernel_read_ahead_kb,
                                           fs::kMaxKernelReadAheadKb);
      if (e.with_deps && (given.starts_with("oci://") || given.starts_with("http"))) {
        check.fail(where + ".with_deps", "needs a path or NAME@REQ package, not a remote source");
      }
      if (e.with_deps && e.store.empty()) e.store = config.store;
      if (!mountpoints.insert(e.mountpoint).second) {
        check.fail(where + ".mountpoint",
                   "'" + e.mountpoint + "' is already used by another mount");
      }
      config.mounts.push_back(std::move(e));
    }
  }
  return config;
}

DaemonConfig load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kNotFound, path + ": cannot open the config file");
  std::string text(kMaxConfigBytes + 1, '\0');  // bounded: a config is small
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) throw Error(ErrorKind::kIo, path + ": cannot read the config file");
  text.resize(static_cast<size_t>(in.gcount()));
  return parse_config(text, path);
}

}  // namespace torshpkg::daemon
