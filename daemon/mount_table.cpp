#include "mount_table.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <syslog.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "http_pull.h"
#include "mirrors.h"
#include "mount_policy.h"
#include "oci.h"
#include "torshpkg/error.h"
#include "torshpkg/store.h"

namespace torshpkg::daemon {
namespace {

std::string now_utc() {
  const time_t now = ::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Whether `path` is a mount point now (listed in /proc/self/mountinfo).
bool is_mountpoint(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    // Octal escapes (\040 for a space) as the kernel writes them.
    std::string decoded;
    for (size_t i = 0; i < point.size(); ++i) {
      if (point[i] == '\\' && i + 3 < point.size()) {
        decoded += static_cast<char>(std::stoi(point.substr(i + 1, 3), nullptr, 8));
        i += 3;
      } else {
        decoded += point[i];
      }
    }
    if (decoded == path) return true;
  }
  return false;
}

}  // namespace

bool clear_stale_mountpoint(const std::string& mountpoint) {
  // statfs always reaches the server (a stat may be answered from the kernel's attribute cache).
  struct statfs st {};
  if (::statfs(mountpoint.c_str(), &st) == 0 || errno != ENOTCONN) return false;
  return ::umount2(mountpoint.c_str(), MNT_DETACH) == 0;
}

namespace {

// Where a mount entry's package file is, and where it came from.
struct Located {
  std::string path;
  std::string source;  // the registry reference or URL pulled; empty otherwise
  std::string digest;  // "sha256:..." of what was pulled
};

bool is_remote(const std::string& package) {
  return package.starts_with("oci://") || package.starts_with("https://") ||
         package.starts_with("http://");
}

// The file a mount entry names: its path; the highest installed version of NAME@REQ; or, for
// oci:// and http(s):// sources, the package pulled (digest checked) and installed into the
// store under the mount's trust policy.
Located locate(const MountEntry& entry, const std::string& trusted_keys_dir) {
  if (entry.store.empty()) return {entry.package, "", ""};
  const Store store(entry.store);
  if (!is_remote(entry.package)) {
    const auto ref = parse_package_ref(entry.package);
    const auto found = ref ? store.resolve(ref->name, VersionReq::parse(ref->req)) : std::nullopt;
    if (!found) {
      throw Error(ErrorKind::kNotFound,
                  entry.package + ": no installed version matches in the store " + entry.store);
    }
    return {found->path, "", ""};
  }
  static std::atomic<unsigned> counter{0};
  std::filesystem::create_directories(entry.store + "/tmp");
  const std::string staging = entry.store + "/tmp/pull-" + std::to_string(::getpid()) + "-" +
                              std::to_string(counter++) + ".torshpkg";
  struct Remove {
    std::string path;
    ~Remove() { ::unlink(path.c_str()); }
  } remove{staging};
  Located located;
  located.source = entry.package;
  // The host's mirror list applies to the daemon's pulls too; skipped sources go to stderr.
  const distribution::MirrorList mirrors =
      distribution::load_mirrors(distribution::default_mirrors_file());
  const auto warn = [](const std::string& m) {
    std::fprintf(stderr, "torshpkgd: %s\n", m.c_str());
  };
  if (entry.package.starts_with("oci://")) {
    distribution::OciClient client;
    const distribution::OciRef ref = distribution::parse_oci_ref(entry.package);
    located.digest = distribution::pull_with_mirrors(
                         client, ref, mirrors.for_registry(ref.registry), staging, warn)
                         .blob_digest;
  } else {
    distribution::HttpPullOptions options;
    options.mirrors = mirrors.for_url(entry.package);
    options.warn = warn;
    located.digest = "sha256:" + distribution::http_pull(entry.package, staging, options).sha256;
  }
  InstallPolicy policy;
  policy.trusted_keys_dir = trusted_keys_dir;
  policy.allow_unsigned = entry.allow_unsigned;
  located.path = store.take(staging, policy).package.path;
  return located;
}

}  // namespace

MountTable::~MountTable() {
  stop_all(std::chrono::seconds(5));
}

const MountStatus& MountTable::mount(const MountEntry& entry, const std::string& trusted_keys_dir,
                                     bool from_config) {
  const std::map<std::string, std::string> where = {{"path", entry.package},
                                                    {"mountpoint", entry.mountpoint}};
  try {
    if (mounts_.count(entry.mountpoint)) {
      throw Error(ErrorKind::kInvalidArgument,
                  entry.mountpoint + ": torshpkgd already has a package mounted there");
    }
    if (clear_stale_mountpoint(entry.mountpoint)) {
      log_.note(LOG_NOTICE, "cleared the stale mount point " + entry.mountpoint +
                                " (left by a server that died)");
    }
    struct stat st {};
    if (::stat(entry.mountpoint.c_str(), &st) != 0 && errno == ENOENT) {
      // Mount points under /run vanish at boot: make them, as systemd does for its mounts.
      std::error_code ignored;
      std::filesystem::create_directories(entry.mountpoint, ignored);
    }
    if (::stat(entry.mountpoint.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      throw Error(ErrorKind::kNotFound, entry.mountpoint + ": mount point is not a folder");
    }
    if (is_mountpoint(entry.mountpoint)) {
      throw Error(ErrorKind::kInvalidArgument,
                  entry.mountpoint + ": something else is already mounted there");
    }
    fs::MountPolicy policy;
    policy.trusted_keys_dir = trusted_keys_dir;
    policy.allow_unsigned = entry.allow_unsigned;
    policy.password_file = entry.password_file;
    policy.key_file = entry.key_file;
    const Located located = locate(entry, trusted_keys_dir);
    const std::string& path = located.path;
    fs::AdmittedPackage admitted = fs::admit_package(path, policy);
    auto m = std::make_unique<Mounted>();
    m->entry = entry;
    m->trusted_keys_dir = trusted_keys_dir;
    m->from_config = from_config;
    m->status.package =
        admitted.package->manifest().name + "@" + admitted.package->manifest().version;
    m->status.path = path;
    m->status.mountpoint = entry.mountpoint;
    m->status.signer = admitted.signer;
    m->status.digest = "sha256:" + admitted.package->manifest_digest();
    auto fields = package_event_fields(*admitted.package, path);
    fields["mountpoint"] = entry.mountpoint;
    if (!located.source.empty()) {
      fields["source"] = located.source;
      fields["source_digest"] = located.digest;
    }
    log_.record_lineage(*admitted.package);

    fs::FsOptions options;
    options.signer = admitted.signer;
    options.direct_reads = !entry.buffered_reads;
    options.cache_bytes = entry.cache_bytes;
    options.kernel_read_ahead_kb = entry.kernel_read_ahead_kb;
    options.on_first_open = [this, fields](pid_t pid, uid_t uid) {
      auto data = fields;
      data["pid"] = std::to_string(pid);
      data["uid"] = std::to_string(uid);
      data["comm"] = comm_of(pid);
      const std::string unit = unit_of(pid);
      if (!unit.empty()) data["unit"] = unit;
      try {
        log_.record("opened", data, pid);
      } catch (const Error& e) {
        log_.note(LOG_ERR, std::string("cannot record an open: ") + e.what());
      }
    };
    options.on_read_error = [this, fields](const std::string& file, const std::string& error) {
      auto data = fields;
      data["file"] = file;
      data["error"] = error;
      try {
        log_.record("verification_failed", data);
      } catch (const Error& e) {
        log_.note(LOG_ERR, "read of " + file + " failed: " + error +
                               " (and cannot record it: " + e.what() + ")");
      }
    };
    m->fs = std::make_unique<fs::PackageFs>(std::move(admitted.package), options);
    m->session = fs::Session::start(*m->fs, entry.mountpoint, fs::standard_fuse_options(path));
    m->status.since = now_utc();
    if (!admitted.signer.empty()) fields["signer"] = admitted.signer;
    try {
      log_.record("mounted", fields);
    } catch (const Error& e) {
      // An unrecorded mount is not acknowledged: take it down again.
      m->session->detach();
      m->session.reset();
      throw Error(ErrorKind::kIo, entry.mountpoint +
                                      ": mounted but the lineage journal cannot "
                                      "record it, so it was unmounted: " +
                                      e.what());
    }
    return mounts_.emplace(entry.mountpoint, std::move(m)).first->second->status;
  } catch (const Error& e) {
    auto data = where;
    data["error"] = e.what();
    try {
      log_.record("mount_refused", data);
    } catch (const Error& journal) {
      log_.note(LOG_ERR, std::string("cannot record a refused mount: ") + journal.what());
    }
    throw;
  }
}

namespace {

// The config's mounts, each with_deps entry followed by one entry per resolved dependency
// (mounted at <parent of its mountpoint>/<name>). An entry whose required dependencies do not
// all resolve is left out, with the reason in `failures`.
std::vector<MountEntry> expand_dependencies(const DaemonConfig& config,
                                            std::vector<std::string>& failures) {
  std::vector<MountEntry> out;
  std::set<std::string> mountpoints;
  for (const MountEntry& e : config.mounts) mountpoints.insert(e.mountpoint);
  for (const MountEntry& e : config.mounts) {
    if (!e.with_deps) {
      out.push_back(e);
      continue;
    }
    try {
      const Store store(e.store);
      std::string path = e.package;
      if (path.empty() || path[0] != '/') {
        const auto ref = parse_package_ref(e.package);
        const auto found =
            ref ? store.resolve(ref->name, VersionReq::parse(ref->req)) : std::nullopt;
        if (!found) throw Error(ErrorKind::kNotFound, e.package + ": not in the store " + e.store);
        path = found->path;
      }
      std::vector<MountEntry> deps;
      std::set<std::string> names;
      const std::filesystem::path parent = std::filesystem::path(e.mountpoint).parent_path();
      for (const ResolvedDependency& r :
           resolve_dependencies(store, Package::open(path)->manifest())) {
        if (!r.package) {
          if (r.dependency.optional) continue;
          throw Error(ErrorKind::kNotFound, e.package + ": dependency " + r.dependency.name + " " +
                                                r.dependency.version_req + " is not in the store");
        }
        if (!names.insert(r.dependency.name).second) continue;
        // The entry's trust and mount options; its own file, secrets and dependencies not.
        MountEntry d = e;
        d.package = r.package->path;
        d.store.clear();
        d.mountpoint = (parent / r.dependency.name).string();
        d.password_file.clear();
        d.key_file.clear();
        d.with_deps = false;
        if (!mountpoints.insert(d.mountpoint).second) {
          throw Error(ErrorKind::kInvalidArgument,
                      e.package + ": dependency mount point " + d.mountpoint + " is taken");
        }
        deps.push_back(std::move(d));
      }
      out.push_back(e);
      out.insert(out.end(), deps.begin(), deps.end());
    } catch (const Error& err) {
      failures.push_back(err.what());
    }
  }
  return out;
}

}  // namespace

MountTable::Outcome MountTable::apply(const DaemonConfig& config) {
  Outcome outcome;
  reap();
  const std::vector<MountEntry> wanted = expand_dependencies(config, outcome.failures);
  // Unmount what is gone from the config or changed.
  for (auto it = mounts_.begin(); it != mounts_.end();) {
    bool keep = !it->second->from_config;  // control-socket mounts stay until unmounted
    for (const MountEntry& e : wanted) {
      if (e == it->second->entry && it->second->trusted_keys_dir == config.trusted_keys_dir) {
        keep = true;
      }
    }
    if (keep) {
      ++it;
      continue;
    }
    unmount_entry(std::move(it->second));
    it = mounts_.erase(it);
    ++outcome.unmounted;
  }
  for (const MountEntry& e : wanted) {
    if (mounts_.count(e.mountpoint)) continue;
    try {
      mount(e, config.trusted_keys_dir, true);
      ++outcome.mounted;
    } catch (const Error& err) {
      outcome.failures.push_back(err.what());
    }
  }
  return outcome;
}

bool MountTable::unmount(const std::string& mountpoint, bool lazy) {
  const auto it = mounts_.find(mountpoint);
  if (it == mounts_.end()) return false;
  if (!lazy && ::umount2(mountpoint.c_str(), 0) != 0) {
    throw io_error(mountpoint, "cannot unmount (give --lazy to detach while files are open)",
                   errno);
  }
  unmount_entry(std::move(it->second));
  mounts_.erase(it);
  return true;
}

void MountTable::unmount_entry(std::unique_ptr<Mounted> m) {
  m->session->detach();
  std::map<std::string, std::string> data = {{"package", m->status.package},
                                             {"digest", m->status.digest},
                                             {"path", m->status.path},
                                             {"mountpoint", m->status.mountpoint}};
  try {
    log_.record("unmounted", data);
  } catch (const Error& e) {
    log_.note(LOG_ERR, std::string("cannot record an unmount: ") + e.what());
  }
  // Without open files the kernel lets go of the connection within milliseconds; a mount that
  // still has readers keeps serving them until they close.
  if (!m->session->wait_for(std::chrono::seconds(1))) draining_.push_back(std::move(m));
}

void MountTable::reap() {
  for (auto it = draining_.begin(); it != draining_.end();) {
    if ((*it)->session->ended()) {
      it = draining_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = mounts_.begin(); it != mounts_.end();) {
    if (it->second->session->ended()) {
      // Unmounted from outside (umount, fusermount3 -u).
      auto m = std::move(it->second);
      it = mounts_.erase(it);
      unmount_entry(std::move(m));
    } else {
      ++it;
    }
  }
}

void MountTable::stop_all(std::chrono::milliseconds grace) {
  while (!mounts_.empty()) {
    auto it = mounts_.begin();
    auto m = std::move(it->second);
    mounts_.erase(it);
    unmount_entry(std::move(m));
  }
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (auto& m : draining_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !m->session->wait_for(left)) {
      log_.note(LOG_WARNING, m->status.mountpoint +
                                 ": still in use after the grace period; ending its connection");
      m->session->abort();
    }
  }
  draining_.clear();
}

std::vector<MountStatus> MountTable::status() const {
  std::vector<MountStatus> out;
  for (const auto& [point, m] : mounts_) {
    MountStatus s = m->status;
    s.stats = m->fs->stats();
    out.push_back(std::move(s));
  }
  return out;
}

std::string MountTable::summary(size_t failed) const {
  std::string s = std::to_string(mounts_.size()) + " mounted";
  if (failed > 0) s += ", " + std::to_string(failed) + " failed";
  if (!draining_.empty()) s += ", " + std::to_string(draining_.size()) + " draining";
  return s;
}

}  // namespace torshpkg::daemon
