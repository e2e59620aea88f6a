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
  // A key id the signature must be by (narrows the trusted keys to that one); empty: any.
  std::string require_key;
  std::string password_file;  // at most one of the two
  std::string key_file;
};

struct AdmittedPackage {
  std::unique_ptr<Package> package;
  std::string signer;  // key id of the trusted signature; with allow_unsigned, the first one
};

// Opens `path` and applies the policy, in this order: a signature by a trusted key unless
// allow_unsigned (Error(kBadSignature) naming the reason and the way out otherwise), and only
// then the secret for an encrypted package (Error(kWrongKey) when missing or wrong), so that no
// key derivation runs for a package that is not trusted. Package::open has checked the ZIP
// structure and the manifest; chunk indexes are checked when their files are first read. Reads
// no resource data.
AdmittedPackage admit_package(const std::string& path, const MountPolicy& policy);

// The same for a package already opened (the caller read the secret, e.g. with another user's
// file access): the trust check, then the unlock with `secret` when given.
std::string admit_opened(const Package& package, const MountPolicy& policy);
void unlock_admitted(Package& package, const Secret* secret);

}  // namespace torshpkg::fs
