#include "mount_policy.h"

#include <unistd.h>

#include <optional>

#include "torshpkg/encryption.h"
#include "torshpkg/error.h"
#include "torshpkg/keys.h"
#include "torshpkg/signature.h"

namespace torshpkg::fs {

AdmittedPackage admit_package(const std::string& path, const MountPolicy& policy) {
  if (!policy.password_file.empty() && !policy.key_file.empty()) {
    throw Error(ErrorKind::kInvalidArgument, "give either a password file or a key file, not both");
  }
  std::optional<Secret> secret;
  if (!policy.password_file.empty()) secret = read_password_file(policy.password_file);
  if (!policy.key_file.empty()) secret = read_key_file(policy.key_file);
  AdmittedPackage admitted;
  admitted.package = Package::open(path, secret ? &*secret : nullptr);
  const Package& package = *admitted.package;
  if (package.encrypted() && !package.unlocked()) {
    throw Error(ErrorKind::kWrongKey,
                path + ": encrypted package: give --password-file or --key-file");
  }
  if (!policy.allow_unsigned) {
    admitted.signer =
        verify_trusted_signature(package, TrustedKeys::load_dir(policy.trusted_keys_dir));
  } else if (!package.signatures().empty()) {
    admitted.signer = package.signatures().front().key_id;
  }
  // Chunk indexes are checked against the manifest when a file is first read, not here: a
  // package of many files mounts in the time its manifest takes to parse, and a damaged index
  // makes reads of its file fail with EIO like a damaged chunk.
  return admitted;
}

std::vector<std::string> standard_fuse_options(const std::string& package_path) {
  std::vector<std::string> options = {"ro", "default_permissions", "subtype=torshpkg",
                                      "fsname=" + package_path, "max_read=1048576"};
  if (::getuid() == 0) options.emplace_back("allow_other");
  return options;
}

}  // namespace torshpkg::fs
