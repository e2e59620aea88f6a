#include "torshpkg/admission.h"

#include <optional>

#include "torshpkg/encryption.h"
#include "torshpkg/error.h"
#include "torshpkg/keys.h"
#include "torshpkg/signature.h"

namespace torshpkg {

std::string admit_opened(const Package& package, const AdmissionPolicy& policy) {
  const std::string& file = package.file_name();
  if (policy.allow_unsigned) {
    return package.signatures().empty() ? std::string() : package.signatures().front().key_id;
  }
  if (package.signatures().empty()) {
    throw Error(ErrorKind::kBadSignature, file + ": unsigned package: sign it, or give " +
                                              policy.spelling.allow_unsigned + " to " +
                                              policy.spelling.use + " anyway");
  }
  TrustedKeys trusted;
  try {
    trusted = TrustedKeys::load_dir(policy.trusted_keys_dir);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kNotFound) throw;
    throw Error(ErrorKind::kNotFound,
                policy.trusted_keys_dir + ": no such trusted-keys folder: give " +
                    policy.spelling.trusted_keys + " (a folder of trusted .pub keys), or " +
                    policy.spelling.allow_unsigned);
  }
  return verify_trusted_signature(package, trusted, policy.require_key);
}

void unlock_admitted(Package& package, const Secret* secret,
                     const AdmissionPolicy::Spelling& spelling) {
  if (!package.encrypted()) return;
  if (secret == nullptr) {
    throw Error(ErrorKind::kWrongKey,
                package.file_name() + ": encrypted package: give " + spelling.secret);
  }
  package.unlock(*secret);
}

namespace {

AdmittedPackage admit(std::unique_ptr<Package> package, const AdmissionPolicy& policy) {
  AdmittedPackage admitted;
  admitted.package = std::move(package);
  admitted.signer = admit_opened(*admitted.package, policy);
  if (admitted.package->encrypted()) {
    std::optional<Secret> secret;
    if (!policy.password_file.empty()) secret = read_password_file(policy.password_file);
    if (!policy.key_file.empty()) secret = read_key_file(policy.key_file);
    unlock_admitted(*admitted.package, secret ? &*secret : nullptr, policy.spelling);
  }
  // Chunk indexes are checked against the manifest when a file is first read, not here: a
  // package of many files mounts in the time its manifest takes to parse, and a damaged index
  // makes reads of its file fail with EIO like a damaged chunk.
  return admitted;
}

void check_secret_options(const AdmissionPolicy& policy) {
  if (!policy.password_file.empty() && !policy.key_file.empty()) {
    throw Error(ErrorKind::kInvalidArgument, "give either a password file or a key file, not both");
  }
}

}  // namespace

AdmittedPackage admit_package(const std::string& path, const AdmissionPolicy& policy) {
  check_secret_options(policy);
  return admit(Package::open(path), policy);
}

AdmittedPackage admit_package(std::shared_ptr<const ByteSource> source,
                              const AdmissionPolicy& policy) {
  check_secret_options(policy);
  return admit(Package::open(std::move(source)), policy);
}

}  // namespace torshpkg
