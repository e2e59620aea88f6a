// The mount policy, shared by `torshpkg mount` and torshpkgd: which packages may be mounted,
// decided before anything is mounted.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "torshpkg/package.h"

namespace torshpkg::fs {

struct MountPolicy {
  std::string trusted_keys_dir = "/etc/torshpkg/trusted-keys";
  bool allow_unsigned = false;
  std::string password_file;  // at most one of the two
  std::string key_file;
};

struct AdmittedPackage {
  std::unique_ptr<Package> package;
  std::string signer;  // key id of the trusted signature; with allow_unsigned, the first one
};

// Opens `path` and applies the policy: a signature by a trusted key unless allow_unsigned
// (Error(kBadSignature) naming the reason otherwise), the secret for an encrypted package
// (Error(kWrongKey) when missing or wrong). Package::open has checked the ZIP structure and the
// manifest; chunk indexes are checked when their files are first read. Reads no resource data.
AdmittedPackage admit_package(const std::string& path, const MountPolicy& policy);

// The FUSE options every torshpkg mount gets: read-only, default permissions, 1 MiB reads,
// fsname = `package_path` (give it absolute: mount tables show it), subtype torshpkg,
// allow_other when run by root.
std::vector<std::string> standard_fuse_options(const std::string& package_path);

}  // namespace torshpkg::fs
