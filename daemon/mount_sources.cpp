#include "mount_sources.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>

#include "http_pull.h"
#include "mirrors.h"
#include "oci.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/package.h"
#include "torshpkg/store.h"

namespace torshpkg::daemon {
namespace {

// Whether `package` names a remote source (oci://, https://, http://).
bool is_remote(const std::string& package) {
  return package.starts_with("oci://") || package.starts_with("https://") ||
         package.starts_with("http://");
}

}  // namespace

Located locate(const MountEntry& entry, const MountContext& context) {
  if (entry.store.empty()) return {entry.package, "", ""};
  const Store store(entry.store);
  if (!is_remote(entry.package)) {
    return {store.locate(entry.package), "", ""};
  }
  static std::atomic<unsigned> counter{0};
  std::error_code ec;
  std::filesystem::create_directories(entry.store + "/tmp", ec);
  if (ec) {
    throw Error(ErrorKind::kIo,
                entry.store + "/tmp: cannot make the store's staging folder: " + ec.message());
  }
  const std::string staging = entry.store + "/tmp/pull-" + std::to_string(::getpid()) + "-" +
                              std::to_string(counter++) + ".torshpkg";
  const TempPath remove(staging);  // whatever becomes of the pull, the staging file goes
  Located located;
  located.source = entry.package;
  // The host's mirror list applies to the daemon's pulls too; skipped sources go to stderr.
  const distribution::MirrorList mirrors =
      distribution::load_mirrors(distribution::default_mirrors_file());
  const auto warn = [](const std::string& m) {
    std::fprintf(stderr, "torshpkgd: %s\n", m.c_str());
  };
  if (entry.package.starts_with("oci://")) {
    distribution::OciOptions options;
    options.docker_config = context.registry_credentials;  // empty: $DOCKER_CONFIG, $HOME
    options.stall_timeout_s = context.pull_timeout_s;
    distribution::OciClient client(options);
    const distribution::OciRef ref = distribution::parse_oci_ref(entry.package);
    located.digest = distribution::pull_with_mirrors(
                         client, ref, mirrors.for_registry(ref.registry), staging, warn)
                         .blob_digest;
  } else {
    distribution::HttpPullOptions options;
    options.mirrors = mirrors.for_url(entry.package);
    options.warn = warn;
    options.http.stall_timeout_s = context.pull_timeout_s;
    located.digest = "sha256:" + distribution::http_pull(entry.package, staging, options).sha256;
  }
  InstallPolicy policy;
  policy.trusted_keys_dir = context.trusted_keys_dir;
  policy.allow_unsigned = entry.allow_unsigned;
  {
    // The source must not roll back to an older version or switch packages behind the mount.
    const Manifest pulled = Package::open(staging)->manifest();
    store.check_and_record_source(entry.package, pulled.name, pulled.version,
                                  entry.allow_downgrade);
  }
  located.path = store.take(staging, policy).package.path;
  return located;
}

}  // namespace torshpkg::daemon
