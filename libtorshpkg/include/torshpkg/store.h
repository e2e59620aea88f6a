// The local package store: package files addressed by their SHA-256, and name/version
// references to them.
//
// Layout under the root (default /var/lib/torshpkg/store, or $TORSHPKG_STORE):
//   blobs/sha256/<hex>.torshpkg   the package files, read-only
//   refs/<name>/<version>         a reference: the hex digest of the blob, one line
//   tmp/                          installs in progress (each file locked while it is written)
//   lock                          flock(2) held while references or blobs change
//
// An install copies the package into tmp/ while hashing it, checks the copy (structure, every
// chunk, and a trusted signature unless unsigned packages are allowed), then renames it into
// blobs/ and writes the reference, both under the lock: a crash leaves at most a temporary file
// that gc removes, never a partial blob or a reference to one. Concurrent installs of the same
// package from several processes are safe. A Store object holds no state beyond its root; use
// it from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "torshpkg/manifest.h"
#include "torshpkg/semver.h"

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

struct StoredPackage {
  std::string name;
  std::string version;
  std::string digest;  // hex SHA-256 of the package file
  std::string path;    // the blob
  uint64_t size = 0;
};

struct InstallPolicy {
  std::string trusted_keys_dir = "/etc/torshpkg/trusted-keys";
  bool allow_unsigned = false;
};

struct InstallResult {
  StoredPackage package;
  bool already_installed = false;  // the same bytes were installed under this name@version
  std::string signer;              // key id of the trusted signature; empty when unsigned
};

struct GcResult {
  uint64_t blobs_removed = 0;
  uint64_t temp_files_removed = 0;
  uint64_t bytes_freed = 0;
};

class Store {
 public:
  explicit Store(std::string root);
  // $TORSHPKG_STORE when set, else /var/lib/torshpkg/store.
  static std::string default_root();

  const std::string& root() const { return root_; }

  // Installs the package file at `path`. Throws Error(kBadSignature) when the policy refuses
  // it, Error(kCorrupt) for a damaged package, Error(kInvalidArgument) when name@version is
  // installed with different bytes (remove it first).
  InstallResult install(const std::string& path, const InstallPolicy& policy) const;
  // The same for a file already in this store's tmp/ folder (a download): it is checked where
  // it lies and moved in instead of copied. The file is gone afterwards, installed or (when
  // refused) deleted. Throws Error(kInvalidArgument) for a file elsewhere.
  InstallResult take(const std::string& tmp_path, const InstallPolicy& policy) const;

  // Every reference, sorted by name then version precedence.
  std::vector<StoredPackage> list() const;
  std::vector<StoredPackage> versions(const std::string& name) const;
  std::optional<StoredPackage> find(const std::string& name, const std::string& version) const;
  // The highest version of `name` that `req` matches.
  std::optional<StoredPackage> resolve(const std::string& name, const VersionReq& req) const;
  // The package file `arg` names, by the one rule the CLI and torshpkgd share: the file at that
  // path when there is one, else the highest installed version of NAME@REQ. Throws
  // Error(kNotFound) saying which versions are installed, Error(kInvalidArgument) for a
  // requirement that does not parse.
  std::string locate(const std::string& arg) const;

  // Freshness of remote sources: `source` (a registry reference or URL, as given) is about to
  // give name@version. Refuses with Error(kCorrupt) when it gave a later version, or another
  // package, before (a rollback or a substitution by a registry or mirror), unless
  // `allow_downgrade`; otherwise records it (sources/ in the store). Call before installing.
  void check_and_record_source(const std::string& source, const std::string& name,
                               const std::string& version, bool allow_downgrade) const;

  // Removes a reference (the blob stays until gc). Throws Error(kNotFound).
  void remove(const std::string& name, const std::string& version) const;
  // Removes blobs no reference names and temporary files no install holds.
  GcResult gc() const;

 private:
  InstallResult install_file(const std::string& path, const InstallPolicy& policy, bool take) const;

  std::string root_;
};

// One dependency of a package resolved against a store: the highest installed version its
// requirement matches, or none.
struct ResolvedDependency {
  std::string parent;  // "name@version" of the package that asks for it
  Dependency dependency;
  std::optional<StoredPackage> package;  // nullopt: nothing installed matches
  std::vector<std::string> installed;    // the versions of that name the store has
  size_t depth = 1;                      // 1 for the root's own dependencies
};

// The dependencies of `root`, then theirs (each resolved package is expanded once, so cycles
// end), breadth first. Throws Error(kInvalidArgument) for a requirement that does not parse and
// Error(kCorrupt) for a stored package that does not open.
std::vector<ResolvedDependency> resolve_dependencies(const Store& store, const Manifest& root);

// Where a package's dependencies are mounted beside it: one mount per resolved dependency (the
// first of each name, breadth first), at <parent>/<name>.
struct DependencyMount {
  std::string name;
  std::string package;     // the installed file
  std::string mountpoint;  // parent / name
};
// Plans them all before anything is mounted: an optional dependency that does not resolve is
// left out; a required one throws Error(kNotFound) naming it and the store.
std::vector<DependencyMount> plan_dependency_mounts(const Store& store, const Manifest& root,
                                                    const std::string& parent);

// "NAME@REQ" (or "NAME" for any version) -> name and requirement; nullopt when `text` has no
// valid package name before the '@'.
struct PackageRef {
  std::string name;
  std::string req = "*";
};
std::optional<PackageRef> parse_package_ref(const std::string& text);

}  // namespace torshpkg

#pragma GCC visibility pop
