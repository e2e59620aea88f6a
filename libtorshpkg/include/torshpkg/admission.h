// Admitting a package: the trust policy shared by `torshpkg mount`, torshpkgd and the Python
// module, decided before any of its resources is read.
#pragma once

#include <memory>
#include <string>

#include "torshpkg/byte_source.h"
#include "torshpkg/encryption.h"
#include "torshpkg/package.h"

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

struct AdmissionPolicy {
  std::string trusted_keys_dir = "/etc/torshpkg/trusted-keys";
  bool allow_unsigned = false;
  // A key id the signature must be by (narrows the trusted keys to that one); empty: any.
  std::string require_key;
  std::string password_file;  // at most one of the two
  std::string key_file;
  // How the caller spells what it does and the ways out that the errors name: the CLI's
  // flags by default.
  struct Spelling {
    std::string use = "mount it";
    std::string allow_unsigned = "--allow-unsigned";
    std::string trusted_keys = "--trusted-keys DIR";
    std::string secret = "--password-file or --key-file";
  } spelling;
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
AdmittedPackage admit_package(const std::string& path, const AdmissionPolicy& policy);
// The same for a package read from `source` (a package on a web server, for example).
AdmittedPackage admit_package(std::shared_ptr<const ByteSource> source,
                              const AdmissionPolicy& policy);

// The same for a package already opened (the caller read the secret, e.g. with another user's
// file access): the trust check, then the unlock with `secret` when given.
std::string admit_opened(const Package& package, const AdmissionPolicy& policy);
void unlock_admitted(Package& package, const Secret* secret,
                     const AdmissionPolicy::Spelling& spelling = {});

}  // namespace torshpkg

#pragma GCC visibility pop
