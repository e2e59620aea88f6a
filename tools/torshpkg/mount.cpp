// torshpkg mount: show a package as a read-only folder through FUSE (standalone, or through
// torshpkgd when it runs).
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <stop_token>
#include <thread>

#include "cli_util.h"
#include "commands.h"
#include "daemon_client.h"
#include "mirrors.h"
#include "mount_access.h"
#include "mount_point.h"
#include "package_fs.h"
#include "remote_package.h"
#include "session.h"
#include "torshpkg/admission.h"
#include "torshpkg/chunk_store.h"
#include "torshpkg/file_io.h"
#include "torshpkg/printable.h"
#include "torshpkg/store.h"

namespace torshpkg::cli {
namespace {

constexpr const char* kDefaultTrustedKeys = "/etc/torshpkg/trusted-keys";

struct MountArgs {
  std::string pkg;
  std::string dir;
  std::vector<std::string> mirrors;  // for an http(s):// package, tried before it
  std::string mirrors_file = distribution::default_mirrors_file();
  std::string docker_config;  // for an oci:// package: the registry's credentials
  bool insecure = false;      // for an oci:// package: plain HTTP to a registry off loopback
  std::string trusted_keys;   // empty: the default, or torshpkgd's own policy
  bool allow_unsigned = false;
  std::string require_key;
  SecretOptions secrets;
  std::string cache_size = "64M";
  std::string disk_cache;  // for a remote package: verified chunks kept here
  std::string disk_cache_size = "10G";
  std::string prefetch;  // "all": fill the disk cache with the whole package after mounting
  fs::AccessRequest access;
  bool nonempty = false;
  bool foreground = false;
  std::vector<std::string> fuse_options;
  std::string socket;
  bool standalone = false;
  uint32_t kernel_read_ahead_kb = fs::kDefaultKernelReadAheadKb;
  bool buffered_reads = false;
  std::string store = Store::default_root();
  bool with_deps = false;
};

// Takes the options torshpkg handles itself out of the -o list (each item may hold several,
// comma-separated): umask=, mode=, owner=, group= and nonempty. What is left goes to FUSE.
void take_own_options(MountArgs& a) {
  std::vector<std::string> rest;
  for (const std::string& item : a.fuse_options) {
    size_t start = 0;
    while (start <= item.size()) {
      size_t end = item.find(',', start);
      if (end == std::string::npos) end = item.size();
      const std::string o = item.substr(start, end - start);
      start = end + 1;
      if (o.empty()) continue;
      const size_t eq = o.find('=');
      const std::string key = o.substr(0, eq);
      const std::string value = eq == std::string::npos ? "" : o.substr(eq + 1);
      std::string* field = key == "umask"   ? &a.access.umask
                           : key == "mode"  ? &a.access.mode
                           : key == "owner" ? &a.access.owner
                           : key == "group" ? &a.access.group
                                            : nullptr;
      if (field != nullptr && eq != std::string::npos) {
        *field = value;
      } else if (o == "nonempty") {
        a.nonempty = true;
      } else if (o == "ro") {
        // always read-only
      } else {
        rest.push_back(o);
      }
    }
  }
  a.fuse_options = rest;
}

// Asks a running torshpkgd to mount; false when none runs or it does not serve this user (the
// caller mounts alone). The daemon applies its own trust policy; a request may only narrow it.
bool mount_through_daemon(const MountArgs& a, uint64_t cache_bytes) {
  Json::Value request(Json::objectValue);
  request["op"] = "mount";
  request["package"] = absolute_path(a.pkg);
  // Its parent resolved, not the folder itself: torshpkgd refuses a symlink as a mount point.
  request["mountpoint"] = fs::canonical_mount_path(a.dir);
  request["allow_unsigned"] = a.allow_unsigned;
  request["buffered_reads"] = a.buffered_reads;
  request["cache_bytes"] = Json::UInt64(cache_bytes);
  request["kernel_readahead_kb"] = a.kernel_read_ahead_kb;
  if (!a.require_key.empty()) request["require_key"] = a.require_key;
  if (!a.access.owner.empty()) request["owner"] = a.access.owner;
  if (!a.access.group.empty()) request["group"] = a.access.group;
  if (!a.access.mode.empty()) request["mode"] = a.access.mode;
  if (!a.access.umask.empty()) request["umask"] = a.access.umask;
  if (a.nonempty) request["nonempty"] = true;
  if (!a.secrets.password_file.empty())
    request["password_file"] = absolute_path(a.secrets.password_file);
  if (!a.secrets.key_file.empty()) request["key_file"] = absolute_path(a.secrets.key_file);
  // A user other than root passes what it opened itself: the daemon mounts only what this user
  // can read, onto a folder this user opened.
  std::vector<int> fds;
  struct Close {
    std::vector<int>& fds;
    ~Close() {
      for (const int fd : fds) ::close(fd);
    }
  } close_fds{fds};
  std::optional<fs::MountPoint> point;
  if (::geteuid() != 0) {
    const auto pass = [&](const char* key, int fd, const std::string& path) {
      if (fd < 0) throw io_error(path, "cannot open", errno);
      request[key] = static_cast<Json::UInt>(fds.size());
      fds.push_back(fd);
    };
    pass("package_fd", ::open(a.pkg.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC), a.pkg);
    fs::MountPointRules rules;
    rules.allow_nonempty = a.nonempty;
    point.emplace(fs::MountPoint::open(a.dir, rules));
    pass("mountpoint_fd", ::fcntl(point->fd(), F_DUPFD_CLOEXEC, 0), a.dir);
    const std::string& secret =
        a.secrets.password_file.empty() ? a.secrets.key_file : a.secrets.password_file;
    if (!secret.empty()) {
      pass("secret_fd", ::open(secret.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC),
           secret);
    }
  }
  const auto reply = daemon_request(daemon_socket(a.socket), request, fds);
  if (!reply) return false;
  const std::string signer = (*reply)["signer"].asString();
  std::cout << "mounted " << (*reply)["package"].asString() << " on " << a.dir
            << (signer.empty() ? " (unsigned)" : " (signed by " + signer + ")")
            << " through torshpkgd, mode " << (*reply)["mode"].asString() << "\n";
  return true;
}

// What the filesystem process reports through the pipe: "OK" and the line to print, or "E",
// the error kind's token (error.h) and the message.
using ReadyFn = std::function<void(const std::string& report)>;
using ServeFn = std::function<int(const ReadyFn& ready)>;

std::string ok_report(const std::string& line) {
  return "OK" + line;
}

std::string error_report(ErrorKind kind, const std::string& message) {
  return "E" + std::string(to_token(kind)) + " " + message;
}

// Runs `serve` in a child process that outlives this one; returns once the child reports the
// mount ready (prints its line, exit 0) or failed (throws its error). The child opens the
// package and builds the filesystem (and its threads: threads do not survive fork), so this
// process never holds the package and exits at once.
int mount_in_background(const std::string& dir, const ServeFn& serve) {
  Pipe out = make_pipe();
  const pid_t pid = ::fork();
  if (pid < 0) throw io_error("fork", "cannot start the filesystem process", errno);
  if (pid == 0) {
    out.read.reset();
    ::setsid();
    bool reported = false;
    const ReadyFn ready = [&](const std::string& report) {
      (void)!::write(out.write.get(), report.data(), report.size());
      out.write.reset();
      reported = true;
      const int null = ::open("/dev/null", O_RDWR);
      if (null >= 0) {
        ::dup2(null, STDIN_FILENO);
        ::dup2(null, STDOUT_FILENO);
        ::dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO) ::close(null);
      }
    };
    int rc = kExitError;
    try {
      rc = serve(ready);
    } catch (const Error& e) {
      if (!reported) ready(error_report(e.kind(), e.what()));
    } catch (const std::exception& e) {
      if (!reported) ready(error_report(ErrorKind::kIo, e.what()));
    }
    ::_exit(rc);
  }
  out.write.reset();
  const std::string message = read_to_end(out.read.get());
  out.read.reset();
  if (message.starts_with("OK")) {
    std::cout << message.substr(2) << "\n";
    return kExitOk;
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (message.starts_with("E")) {
    const size_t space = message.find(' ');
    if (space != std::string::npos) {
      if (const auto kind = from_token(std::string_view(message).substr(1, space - 1))) {
        throw Error(*kind, message.substr(space + 1));
      }
    }
  }
  throw Error(ErrorKind::kIo,
              dir + ": " + (message.empty() ? "the filesystem process died" : message));
}

// A package read where it is: on a web server (with --mirror and the host's mirrors for its
// origin before it), or in an OCI registry.
distribution::RemotePackage open_remote(const MountArgs& a) {
  distribution::RemotePackageOptions options;
  options.mirrors = a.mirrors;
  for (const std::string& m : distribution::load_mirrors(a.mirrors_file).for_url(a.pkg)) {
    options.mirrors.push_back(m);
  }
  options.oci.insecure = a.insecure;
  options.oci.docker_config = a.docker_config;
  return distribution::open_remote_package(a.pkg, options);
}

int run_mount(MountArgs a) {
  take_own_options(a);
  const uint64_t cache_bytes = parse_byte_size(a.cache_size, "--cache-size");
  if (!a.disk_cache.empty() && !distribution::is_remote_package(a.pkg)) {
    throw invalid_argument("--disk-cache: for a package on a web server or in a registry");
  }
  const uint64_t disk_cache_bytes = parse_byte_size(a.disk_cache_size, "--disk-cache-size");
  if (!a.prefetch.empty() && a.prefetch != "all") {
    throw invalid_argument("--prefetch: '" + a.prefetch + "' is not known (give all)");
  }
  if (!a.prefetch.empty() && a.disk_cache.empty()) {
    throw invalid_argument("--prefetch all: fills the disk cache; give --disk-cache DIR");
  }
  // What the daemon cannot take (serving in this process, FUSE options, a trust policy of the
  // caller's choosing, a package read where it is: torshpkgd takes those from its config's
  // "lazy" entries) makes the mount standalone.
  const bool remote = distribution::is_remote_package(a.pkg);
  const bool daemon_can =
      !a.standalone && !a.foreground && a.fuse_options.empty() && a.trusted_keys.empty() && !remote;
  if (daemon_can && mount_through_daemon(a, cache_bytes)) return kExitOk;
  fs::FsOptions options;
  options.cache_bytes = cache_bytes;
  options.kernel_read_ahead_kb = a.kernel_read_ahead_kb;
  options.direct_reads = !a.buffered_reads;
  const bool secret = !a.secrets.password_file.empty() || !a.secrets.key_file.empty();
  // Checked here so that a bad value fails before anything is opened; resolved again once the
  // package says whether it is encrypted.
  if (fs::resolve_access(a.access, ::getuid(), ::getgid(), secret).uid != ::getuid() &&
      ::getuid() != 0) {
    throw invalid_argument("--owner: only root can mount for another user");
  }
  fs::MountPointRules rules;
  rules.allow_nonempty = a.nonempty;
  // Opened (and checked) here, before the package: a bad mount point fails fast, and the
  // background process inherits the open folder.
  const fs::MountPoint point = fs::MountPoint::open(a.dir, rules);
  AdmissionPolicy policy;
  policy.trusted_keys_dir = a.trusted_keys.empty() ? kDefaultTrustedKeys : a.trusted_keys;
  policy.allow_unsigned = a.allow_unsigned;
  policy.require_key = a.require_key;
  policy.password_file = a.secrets.password_file;
  policy.key_file = a.secrets.key_file;
  const std::string package_path = remote ? a.pkg : absolute_path(a.pkg);
  // Admission, the filesystem and serving all happen where the filesystem runs: in this process
  // with --foreground, in the background process otherwise (which opens its own connections).
  const ServeFn serve = [&](const ReadyFn& report) {
    AdmittedPackage admitted;
    if (remote) {
      distribution::RemotePackage r = open_remote(a);
      admitted = admit_package(r.source, policy);
      if (r.check) r.check(admitted.package->manifest());
      if (!a.disk_cache.empty()) {
        // Only once the package is trusted: an untrusted one leaves nothing on disk.
        admitted.package->set_chunk_store(
            std::make_shared<DiskChunkStore>(a.disk_cache, disk_cache_bytes));
      }
    } else {
      admitted = admit_package(a.pkg, policy);
    }
    const Package& package = *admitted.package;
    const std::string name = package.manifest().name + "@" + package.manifest().version;
    const fs::MountAccess access =
        fs::resolve_access(a.access, ::getuid(), ::getgid(), secret || package.encrypted());
    options.uid = access.uid;
    options.gid = access.gid;
    options.mode = access.mode;
    std::vector<std::string> fuse_options = fs::standard_fuse_options(package_path, access);
    fuse_options.insert(fuse_options.end(), a.fuse_options.begin(), a.fuse_options.end());
    const std::string signer = admitted.signer;
    options.signer = signer;
    fs::PackageFs filesystem(std::move(admitted.package), options);
    std::jthread prefetch;  // ends (stopped, joined) before the filesystem does
    return fs::serve(filesystem, point, fuse_options, [&](const std::string& error) {
      if (!error.empty()) {
        report(error_report(ErrorKind::kIo, error));
      } else {
        if (a.prefetch == "all") {
          prefetch = std::jthread([&filesystem](std::stop_token stop) {
            fill_chunk_store(filesystem.package(), stop);
          });
        }
        report(ok_report("mounted " + name + " on " + point.path() +
                         (signer.empty() ? " (unsigned)" : " (signed by " + signer + ")") +
                         ", mode " + fs::mode_string(access.mode)));
      }
    });
  };
  if (a.foreground) {
    return serve([&](const std::string& report) {
      if (report.starts_with("OK")) {
        std::cerr << "torshpkg: " << report.substr(2) << "\n";
      } else {
        std::cerr << "torshpkg: " << report.substr(report.find(' ') + 1) << "\n";
      }
    });
  }
  return mount_in_background(a.dir, serve);
}

// The package named by file or NAME@REQ, and with --with-deps its resolved dependencies, each
// mounted beside DIR under its own name (DIR/../<dependency name>). Every required dependency
// must resolve before anything is mounted.
int run_mount_with_deps(const MountArgs& a) {
  if (distribution::is_remote_package(a.pkg)) {
    if (a.with_deps) {
      throw invalid_argument(
          "--with-deps: dependencies resolve in the local store; a package on a web server "
          "or in a registry is mounted alone");
    }
    return run_mount(a);
  }
  const Store store(a.store);
  MountArgs main = a;
  main.pkg = store.locate(a.pkg);
  if (!a.with_deps) return run_mount(main);
  if (a.foreground) throw invalid_argument("--with-deps cannot serve in the foreground");
  std::vector<MountArgs> deps;
  const std::string parent =
      std::filesystem::absolute(a.dir).lexically_normal().parent_path().string();
  for (const DependencyMount& d :
       plan_dependency_mounts(store, Package::open(main.pkg)->manifest(), parent)) {
    MountArgs dep = main;
    dep.pkg = d.package;
    dep.dir = d.mountpoint;
    deps.push_back(std::move(dep));
  }
  int rc = run_mount(main);
  for (const MountArgs& dep : deps) {
    std::filesystem::create_directories(dep.dir);
    rc = std::max(rc, run_mount(dep));
  }
  return rc;
}

}  // namespace

Action add_mount_command(CLI::App& app) {
  auto a = std::make_shared<MountArgs>();
  CLI::App* sub = app.add_subcommand("mount", "Mount a package as a read-only folder (FUSE)");
  sub->add_option("PKG", a->pkg,
                  "Package file, NAME@REQ from the local store, an http(s):// URL or an "
                  "oci://REF (read where they are with range requests, every chunk verified)")
      ->required();
  sub->add_option("DIR", a->dir, "Mount point (an existing folder)")->required();
  sub->add_option("--mirror", a->mirrors,
                  "For an http(s):// PKG: a base URL serving the same path, tried first "
                  "(repeatable, in order; then the host's mirror list, then PKG)");
  sub->add_option("--mirrors-file", a->mirrors_file,
                  "Mirror list for an http(s):// PKG (default $TORSHPKG_MIRRORS or "
                  "/etc/torshpkg/mirrors.json)");
  sub->add_option("--docker-config", a->docker_config,
                  "For an oci:// PKG: the registry credentials file (default $DOCKER_CONFIG or "
                  "~/.docker/config.json)");
  sub->add_flag("--insecure", a->insecure,
                "For an oci:// PKG: plain HTTP to a registry that is not on loopback");
  sub->add_option("--store", a->store,
                  "Store folder for NAME@REQ (default $TORSHPKG_STORE or /var/lib/torshpkg/store)");
  sub->add_flag("--with-deps", a->with_deps,
                "Also mount the package's dependencies, resolved in the store, beside DIR "
                "(DIR/../NAME)");
  sub->add_option("--trusted-keys", a->trusted_keys,
                  std::string("Folder of trusted .pub keys (default ") + kDefaultTrustedKeys +
                      "; giving it mounts standalone: torshpkgd applies its own)");
  sub->add_flag("--allow-unsigned", a->allow_unsigned,
                "Mount without requiring a trusted signature");
  sub->add_option("--require-key", a->require_key,
                  "Accept only a signature by this trusted key id (narrows the trusted keys)");
  a->secrets.add_to(*sub);
  sub->add_option("--disk-cache", a->disk_cache,
                  "For a remote PKG: keep verified chunks in this folder and read them from it "
                  "(shared by mounts and versions; stored resources with blocks)");
  sub->add_option("--disk-cache-size", a->disk_cache_size,
                  "Bytes the disk cache may hold, least recently used removed first (default "
                  "10G)");
  sub->add_option("--prefetch", a->prefetch,
                  "all: with --disk-cache, fetch the whole package into it in the background "
                  "after mounting");
  sub->add_option("--cache-size", a->cache_size,
                  "Bytes of decoded chunks to keep (default 64M; e.g. 256M, 1G)");
  sub->add_option("--owner", a->access.owner,
                  "USER or UID[:GROUP] owning the files (default: the caller; others: root only)");
  sub->add_option("--group", a->access.group, "GROUP or GID of the files (default: the caller's)");
  sub->add_option("--mode", a->access.mode,
                  "Read bits of the files, octal (default 0400 for an encrypted package or a "
                  "mount with a secret, 0444 otherwise; folders and executables get x to match)");
  sub->add_option("--umask", a->access.umask,
                  "Octal bits to take from 0444 instead of --mode (0077: the owner's alone)");
  sub->add_flag("--nonempty", a->nonempty,
                "Mount over a folder that has files in it (they are hidden while mounted)");
  sub->add_flag("--foreground", a->foreground, "Serve in this process until unmounted");
  sub->add_option("--kernel-readahead", a->kernel_read_ahead_kb,
                  "KiB the kernel reads ahead (as root; default " +
                      std::to_string(fs::kDefaultKernelReadAheadKb) +
                      ", 0 keeps the kernel's 128); keep it above 1024 so random 1 MiB reads "
                      "are not read ahead")
      ->check(CLI::Range(0u, fs::kMaxKernelReadAheadKb));
  sub->add_flag("--buffered-reads", a->buffered_reads,
                "Read stored chunks through the page cache too (by default those not cached "
                "already are read with direct I/O, so their bytes are not cached twice)");
  sub->add_option("-o", a->fuse_options,
                  "Mount options (repeatable, comma-separated): umask=, mode=, owner=, group=, "
                  "nonempty; anything else goes to FUSE and mounts standalone");
  sub->add_option("--socket", a->socket,
                  std::string("torshpkgd's control socket (default $TORSHPKG_SOCKET or ") +
                      kDefaultSocket + ")");
  sub->add_flag("--standalone", a->standalone,
                "Mount in a process of its own even when torshpkgd runs");
  return [a] { return run_mount_with_deps(*a); };
}

}  // namespace torshpkg::cli
