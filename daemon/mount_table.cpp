// The mount table. Over 500 lines: reconciling with the config, mounting (prepared unlocked,
// committed under the one lock), unmounting, draining and reaping, and the status of each all
// work on the table's state under its lock; where packages come from is mount_sources.cpp.
#include "mount_table.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <syslog.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <optional>
#include <set>
#include <thread>

#include "mirrors.h"
#include "mount_point.h"
#include "mount_sources.h"
#include "remote_package.h"
#include "torshpkg/admission.h"
#include "torshpkg/byte_source.h"
#include "torshpkg/chunk_store.h"
#include "torshpkg/encryption.h"
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

}  // namespace

bool clear_stale_mountpoint(const std::string& mountpoint) {
  if (!fs::is_dead_mount(mountpoint)) return false;
  return ::umount2(mountpoint.c_str(), MNT_DETACH) == 0;
}

namespace {
// FUSE workers a mount keeps when idle: with thousands of mounts, libfuse's default of keeping
// every worker it ever started (up to 16 a mount) held thousands of threads.
constexpr int kIdleFuseThreads = 1;
}  // namespace

MountContext MountContext::of(const DaemonConfig& config) {
  MountContext c;
  c.trusted_keys_dir = config.trusted_keys_dir;
  c.mountpoint_root = config.mountpoint_root;
  c.registry_credentials = config.registry_credentials;
  c.pull_timeout_s = config.pull_timeout_s;
  c.disk_cache = config.disk_cache;
  c.disk_cache_bytes = config.disk_cache_bytes;
  return c;
}

MountTable::~MountTable() {
  stop_all(std::chrono::seconds(5));
}

namespace {

// A secret a member passed: only its own file (one someone else left readable is not the
// member's to use).
Secret read_members_secret(int fd, const std::string& name, bool password, const Requester& who) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    throw invalid_argument(name + ": the secret file is not a regular file");
  }
  if (st.st_uid != who.uid) {
    throw invalid_argument(name + ": the secret file belongs to another user (uid " +
                           std::to_string(st.st_uid) + "); give your own");
  }
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  return password ? read_password_file(self) : read_key_file(self);
}

int duplicate(int fd, const std::string& what) {
  if (fd < 0) throw invalid_argument(what + ": members pass it as a descriptor (SCM_RIGHTS)");
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) throw io_error(what, "cannot take the passed descriptor", errno);
  return copy;
}

std::map<std::string, std::string> requester_fields(const Requester& who) {
  return {{"requester_uid", std::to_string(who.uid)}, {"requester_pid", std::to_string(who.pid)}};
}

}  // namespace

MountStatus MountTable::mount(const MountEntry& entry, const MountContext& context,
                              bool from_config, const Requester& who, const PassedFiles& files) {
  std::map<std::string, std::string> where = {{"path", entry.package},
                                              {"mountpoint", entry.mountpoint}};
  if (!from_config) where.merge(requester_fields(who));
  std::string reserved;  // the canonical mount point, once reserved
  const auto release = [&] {
    if (reserved.empty()) return;
    std::lock_guard lock(mutex_);
    preparing_.erase(reserved);
  };
  try {
    try {
      if (!who.privileged) {
        // What the request handler has already narrowed, checked once more where it matters.
        if (!entry.store.empty() || entry.allow_unsigned || entry.with_deps) {
          throw invalid_argument("members mount package files under the daemon's trust policy");
        }
      }
      if (who.privileged && clear_stale_mountpoint(entry.mountpoint)) {
        log_.note(LOG_NOTICE, "cleared the stale mount point " + entry.mountpoint +
                                  " (left by a server that died)");
      }
      fs::MountPointRules rules;
      rules.allow_nonempty = entry.nonempty;
      if (from_config) rules.create_under = context.mountpoint_root;
      if (!who.privileged) rules.required_owner = who.uid;
      // A member's folder is the one its client opened; root's is opened here.
      std::optional<fs::MountPoint> point;
      if (who.privileged) {
        point.emplace(fs::MountPoint::open(entry.mountpoint, rules));
      } else {
        point.emplace(fs::MountPoint::from_fd(duplicate(files.mountpoint, "mountpoint"), rules));
      }
      where["mountpoint"] = point->path();
      {
        std::lock_guard lock(mutex_);
        if (stopping_) throw Error(ErrorKind::kIo, "torshpkgd is stopping");
        if (mounts_.count(point->path()) || preparing_.count(point->path())) {
          throw invalid_argument(point->path() + ": already mounted: torshpkgd has a package " +
                                 "mounted there (or is mounting one)");
        }
        preparing_.insert(point->path());
        reserved = point->path();
      }

      // A lazy source (a web server's or a registry's) is read where it is; anything else is a
      // local file by now.
      const Located located =
          entry.lazy ? Located{entry.package, entry.package, ""} : locate(entry, context);
      const std::string& path = located.path;
      AdmissionPolicy policy;
      policy.trusted_keys_dir = context.trusted_keys_dir;
      policy.allow_unsigned = entry.allow_unsigned;
      policy.require_key = entry.require_key;
      std::unique_ptr<Package> package;
      std::shared_ptr<const distribution::RemoteSource> remote;
      std::function<void(const Manifest&)> promised;  // what an oci:// reference promises
      if (entry.lazy) {
        if (!who.privileged) throw invalid_argument("lazy: only the config and root mount URLs");
        distribution::RemotePackageOptions options;
        options.mirrors = distribution::load_mirrors(distribution::default_mirrors_file())
                              .for_url(path);                      // none for a reference
        options.oci.docker_config = context.registry_credentials;  // empty: $DOCKER_CONFIG, $HOME
        options.oci.stall_timeout_s = context.pull_timeout_s;
        distribution::RemotePackage r = distribution::open_remote_package(path, options);
        remote = r.source;
        promised = std::move(r.check);
        package = Package::open(remote);
      } else if (who.privileged) {
        package = Package::open(path);
      } else {
        package = Package::open(file_source_from_fd(duplicate(files.package, "package"), path));
      }
      // The trust check comes before any key slot is tried.
      const std::string signer = admit_opened(*package, policy);
      if (promised) promised(package->manifest());
      if (remote && !context.disk_cache.empty()) {
        // Trusted now: its chunks may be kept (shared with other versions and mounts).
        package->set_chunk_store(
            std::make_shared<DiskChunkStore>(context.disk_cache, context.disk_cache_bytes));
      }
      const bool secret_given = !entry.password_file.empty() || !entry.key_file.empty();
      if (package->encrypted()) {
        std::optional<Secret> secret;
        if (who.privileged) {
          if (!entry.password_file.empty()) secret = read_password_file(entry.password_file);
          if (!entry.key_file.empty()) secret = read_key_file(entry.key_file);
        } else if (secret_given) {
          const bool password = !entry.password_file.empty();
          if (files.secret < 0) {
            throw invalid_argument("secret file: members pass it as a descriptor (SCM_RIGHTS)");
          }
          secret = read_members_secret(
              files.secret, password ? entry.password_file : entry.key_file, password, who);
        }
        unlock_admitted(*package, secret ? &*secret : nullptr);
      }
      const uid_t asker_uid = from_config ? 0 : who.uid;
      const gid_t asker_gid = from_config ? 0 : who.gid;
      const fs::MountAccess access = fs::resolve_access(entry.access, asker_uid, asker_gid,
                                                        secret_given || package->encrypted());
      if (!who.privileged) {
        if (access.uid != who.uid) {
          throw invalid_argument(
              "owner: only root can mount for another user (members mount for themselves)");
        }
        if (!who.in_group(access.gid)) {
          throw invalid_argument("group: gid " + std::to_string(access.gid) +
                                 " is not one of your groups");
        }
      }

      auto m = std::make_unique<Mounted>();
      m->entry = entry;
      m->context = context;
      m->status.package = package->manifest().name + "@" + package->manifest().version;
      m->status.path = path;
      m->status.mountpoint = point->path();
      m->status.signer = signer;
      m->status.digest = "sha256:" + package->manifest_digest();
      m->status.access = access;
      m->status.requested_by = who.uid;
      m->status.from_config = from_config;
      m->remote = remote;
      auto fields = package_event_fields(*package, path);
      fields["mountpoint"] = point->path();
      fields["owner"] = std::to_string(access.uid) + ":" + std::to_string(access.gid);
      fields["mode"] = fs::mode_string(access.mode);
      if (!from_config) fields.merge(requester_fields(who));
      if (!located.source.empty()) {
        fields["source"] = located.source;
        fields["source_digest"] = located.digest;
      }
      log_.record_lineage(*package);

      fs::FsOptions options;
      options.signer = signer;
      options.uid = access.uid;
      options.gid = access.gid;
      options.mode = access.mode;
      options.direct_reads = !entry.buffered_reads;
      options.cache_bytes = entry.cache_bytes;
      options.kernel_read_ahead_kb = entry.kernel_read_ahead_kb;
      options.shared_budget = memory_;
      options.thread_limit = threads_;
      options.fuse_idle_threads = kIdleFuseThreads;
      options.on_first_open = [this, fields](pid_t pid, uid_t uid) {
        auto data = fields;
        data["pid"] = std::to_string(pid);
        data["uid"] = std::to_string(uid);
        data["comm"] = comm_of(pid);
        const std::string unit = unit_of(pid);
        if (!unit.empty()) data["unit"] = unit;
        log_.record("opened", data, pid);
      };
      options.on_read_error = [this, fields](const std::string& file, const std::string& error) {
        auto data = fields;
        data["file"] = file;
        data["error"] = error;
        log_.record("verification_failed", data);
      };
      m->fs = std::make_unique<fs::PackageFs>(std::move(package), options);
      m->session = fs::Session::start(*m->fs, *point, fs::standard_fuse_options(path, access));
      if (entry.prefetch_all && remote && !context.disk_cache.empty()) {
        m->prefetch = std::jthread(
            [fs = m->fs.get()](std::stop_token stop) { fill_chunk_store(fs->package(), stop); });
      }
      m->status.since = now_utc();
      if (!signer.empty()) fields["signer"] = signer;
      // A full disk does not stop the mount: the event goes to journald and is counted lost.
      log_.record("mounted", fields);
      MountStatus status = m->status;
      {
        std::lock_guard lock(mutex_);
        preparing_.erase(reserved);
        reserved.clear();
        if (stopping_) {
          m->session->detach();
          throw Error(ErrorKind::kIo, "torshpkgd is stopping");
        }
        mounts_.emplace(status.mountpoint, std::move(m));
        if (from_config) config_pending_.erase(entry.mountpoint);  // in the same moment
      }
      return status;
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      // Whatever else went wrong (a library's own exception, memory) is this mount's failure.
      throw Error(ErrorKind::kIo, entry.mountpoint + ": " + e.what());
    }
  } catch (const Error& e) {
    release();
    auto data = where;
    data["error"] = e.what();
    log_.record("mount_refused", data);
    throw;
  }
}

namespace {

// The config's mounts, each with_deps entry followed by one entry per resolved dependency
// (mounted at <parent of its mountpoint>/<name>). An entry whose required dependencies do not
// all resolve is left out, with the reason in `failures`.
std::vector<MountEntry> expand_dependencies(const DaemonConfig& config,
                                            std::map<std::string, std::string>& failures) {
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
      const std::string path = store.locate(e.package);
      std::vector<MountEntry> deps;
      for (const DependencyMount& dm :
           plan_dependency_mounts(store, Package::open(path)->manifest(),
                                  std::filesystem::path(e.mountpoint).parent_path().string())) {
        // The entry's trust and mount options; its own file, secrets and dependencies not.
        MountEntry d = e;
        d.package = dm.package;
        d.store.clear();
        d.mountpoint = dm.mountpoint;
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
    } catch (const std::exception& err) {
      failures[e.mountpoint] = err.what();
    }
  }
  return out;
}

}  // namespace

MountTable::Outcome MountTable::apply(const DaemonConfig& config) {
  set_limits(config);
  Outcome outcome;
  const MountContext context = MountContext::of(config);
  std::vector<MountEntry> wanted;
  std::map<std::string, std::string> unresolved;  // by mount point
  try {
    reap();
    wanted = expand_dependencies(config, unresolved);
  } catch (const std::exception& e) {
    outcome.failures.push_back(e.what());
    return outcome;
  }
  for (const auto& [point, error] : unresolved) outcome.failures.push_back(error);
  // Unmount what is gone from the config or changed.
  std::vector<std::unique_ptr<Mounted>> removed;
  std::vector<MountEntry> to_mount;
  {
    std::lock_guard lock(mutex_);
    for (auto it = mounts_.begin(); it != mounts_.end();) {
      bool keep = !it->second->status.from_config;  // socket mounts stay until unmounted
      for (const MountEntry& e : wanted) {
        // A changed trust policy remounts (the package is checked again); the pull settings
        // and the mount point root matter only to mounts still to be made.
        if (e == it->second->entry &&
            it->second->context.trusted_keys_dir == context.trusted_keys_dir) {
          keep = true;
        }
      }
      if (keep) {
        ++it;
        continue;
      }
      removed.push_back(std::move(it->second));
      it = mounts_.erase(it);
    }
    config_pending_.clear();
    for (const MountEntry& e : config.mounts) {
      if (const auto it = unresolved.find(e.mountpoint); it != unresolved.end()) {
        config_pending_[e.mountpoint] = {e.package, e.mountpoint, it->second};
      }
    }
    for (const MountEntry& e : wanted) {
      bool mounted = false;
      for (const auto& [point, m] : mounts_) {
        // A socket mount on the same folder: the entry fails with "already mounted".
        if (m->status.from_config && m->entry == e) mounted = true;
      }
      if (mounted) continue;
      to_mount.push_back(e);
      config_pending_[e.mountpoint] = {e.package, e.mountpoint, ""};
    }
  }
  for (auto& m : removed) {
    unmount_entry(std::move(m), daemon_requester());
    ++outcome.unmounted;
  }
  // Several mounts are prepared at a time: a pull that stalls delays only its own mount.
  constexpr size_t kParallelMounts = 8;
  std::mutex outcome_mutex;
  std::atomic<size_t> next{0};
  const auto work = [&] {
    for (size_t i = next++; i < to_mount.size(); i = next++) {
      const MountEntry& e = to_mount[i];
      std::string error;
      try {
        mount(e, context, true, daemon_requester(), {});
      } catch (const std::exception& err) {
        error = err.what();
      }
      std::lock_guard lock(outcome_mutex);
      if (error.empty()) {
        ++outcome.mounted;
      } else {
        outcome.failures.push_back(error);
      }
      std::lock_guard table_lock(mutex_);
      if (error.empty()) {
        config_pending_.erase(e.mountpoint);
      } else {
        config_pending_[e.mountpoint].error = error;
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < std::min(kParallelMounts, to_mount.size()); ++t) {
    try {
      threads.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // no thread to be had: the others do the work
    }
  }
  work();
  for (std::thread& t : threads) t.join();
  return outcome;
}

bool MountTable::unmount(const std::string& mountpoint, bool lazy, const Requester& who) {
  std::unique_ptr<Mounted> m;
  {
    std::lock_guard lock(mutex_);
    const auto it = mounts_.find(mountpoint);
    if (it == mounts_.end()) return false;
    if (!who.privileged && it->second->status.requested_by != who.uid) {
      throw invalid_argument(mountpoint +
                             ": mounted by another user; members unmount only their own mounts");
    }
    if (!it->second->session->on_top()) {
      throw invalid_argument(mountpoint +
                             ": something else is mounted on top of torshpkgd's mount; "
                             "unmount that first");
    }
    if (!lazy && ::umount2(mountpoint.c_str(), 0) != 0) {
      const int err = errno;
      if (err == EBUSY) {
        throw Error(ErrorKind::kIo, mountpoint +
                                        ": busy: files are open on it; close them, or give "
                                        "--lazy to detach it now and finish when they close");
      }
      throw io_error(mountpoint, "cannot unmount", err);
    }
    m = std::move(it->second);
    mounts_.erase(it);
  }
  unmount_entry(std::move(m), who);
  return true;
}

void MountTable::unmount_entry(std::unique_ptr<Mounted> m, const Requester& who) {
  m->session->detach();
  std::map<std::string, std::string> data = {{"package", m->status.package},
                                             {"digest", m->status.digest},
                                             {"path", m->status.path},
                                             {"mountpoint", m->status.mountpoint}};
  if (who.pid != ::getpid()) data.merge(requester_fields(who));
  log_.record("unmounted", data);
  // Without open files the kernel lets go of the connection within milliseconds; a mount that
  // still has readers keeps serving them until they close.
  if (!m->session->wait_for(std::chrono::seconds(1))) {
    std::lock_guard lock(mutex_);
    draining_.push_back(std::move(m));
  }
}

void MountTable::reap() {
  std::vector<std::unique_ptr<Mounted>> finished;  // detached earlier, now closed
  std::vector<std::unique_ptr<Mounted>> gone;      // unmounted from outside
  {
    std::lock_guard lock(mutex_);
    for (auto it = draining_.begin(); it != draining_.end();) {
      if ((*it)->session->ended()) {
        finished.push_back(std::move(*it));
        it = draining_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = mounts_.begin(); it != mounts_.end();) {
      if (it->second->session->ended()) {
        gone.push_back(std::move(it->second));
        it = mounts_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& m : gone) unmount_entry(std::move(m), daemon_requester());
}

void MountTable::stop_all(std::chrono::milliseconds grace) {
  std::vector<std::unique_ptr<Mounted>> all;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& [point, m] : mounts_) all.push_back(std::move(m));
    mounts_.clear();
  }
  for (auto& m : all) unmount_entry(std::move(m), daemon_requester());
  std::vector<std::unique_ptr<Mounted>> draining;
  {
    std::lock_guard lock(mutex_);
    draining.swap(draining_);
  }
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (auto& m : draining) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !m->session->wait_for(left)) {
      log_.note(LOG_WARNING, m->status.mountpoint +
                                 ": still in use after the grace period; ending its connection");
      m->session->abort();
    }
  }
}

void MountTable::set_limits(const DaemonConfig& config) {
  memory_->set_capacity(config.memory_budget);
  threads_->set_limit(config.decode_threads);
  idle_release_s_ = config.idle_release_s;
}

void MountTable::release_idle() {
  const uint32_t after = idle_release_s_.load();
  if (after == 0) return;
  std::lock_guard lock(mutex_);
  for (const auto& [point, m] : mounts_) {
    if (m->fs->idle_for() >= std::chrono::seconds(after) && m->fs->stats().cache_bytes > 0) {
      m->fs->release_memory();
    }
  }
}

SharedUsage MountTable::usage() const {
  return SharedUsage{.memory_budget = memory_->capacity(),
                     .memory_used = memory_->used(),
                     .decode_threads = threads_->limit(),
                     .decode_threads_running = threads_->used(),
                     .idle_release_s = idle_release_s_.load()};
}

std::vector<MountStatus> MountTable::status() const {
  std::lock_guard lock(mutex_);
  std::vector<MountStatus> out;
  for (const auto& [point, m] : mounts_) {
    MountStatus s = m->status;
    s.stats = m->fs->stats();
    if (m->remote) {
      const distribution::RemoteStats& r = m->remote->stats();
      s.remote = MountStatus::Remote{.first_choice = m->remote->first_choice(),
                                     .requests = r.requests,
                                     .bytes = r.bytes,
                                     .retries = r.retries,
                                     .other_copies = r.other_copies,
                                     .failovers = r.failovers};
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<PendingMount> MountTable::pending() const {
  std::lock_guard lock(mutex_);
  std::vector<PendingMount> out;
  for (const auto& [point, p] : config_pending_) out.push_back(p);
  return out;
}

size_t MountTable::size() const {
  std::lock_guard lock(mutex_);
  return mounts_.size();
}

std::string MountTable::summary() const {
  std::lock_guard lock(mutex_);
  size_t failed = 0, mounting = 0;
  for (const auto& [point, p] : config_pending_) ++(p.error.empty() ? mounting : failed);
  std::string s = std::to_string(mounts_.size()) + " mounted";
  if (mounting > 0) s += ", " + std::to_string(mounting) + " mounting";
  if (failed > 0) s += ", " + std::to_string(failed) + " failed";
  if (!draining_.empty()) s += ", " + std::to_string(draining_.size()) + " draining";
  if (const uint64_t lost = log_.lost(); lost > 0) {
    s += ", " + std::to_string(lost) + " journal events lost";
  }
  return s;
}

}  // namespace torshpkg::daemon
