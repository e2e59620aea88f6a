// Package signatures: Ed25519 over the exact manifest.json bytes, wrapped in a DSSE-style
// pre-authentication encoding. Through the manifest a signature covers every resource byte
// (index digests, leaf hashes), the metadata, dependencies and lineage. See docs/FORMAT.md,
// "Signatures".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "torshpkg/keys.h"

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

class Package;

inline constexpr std::string_view kManifestPayloadType =
    "application/vnd.torshpkg.manifest.v1+json";
inline constexpr std::string_view kSignaturePrefix = ".torshpkg/signatures/";

// One detached signature, as stored in ".torshpkg/signatures/<key id>.sig".
struct Signature {
  std::string key_id;        // hex SHA-256 of the signer's SubjectPublicKeyInfo DER
  std::vector<uint8_t> sig;  // 64-byte Ed25519 signature over dsse_pae(type, manifest)
};

// DSSE v1 pre-authentication encoding:
//   "DSSEv1" SP len(type) SP type SP len(payload) SP payload   (lengths in ASCII decimal)
std::vector<uint8_t> dsse_pae(std::string_view payload_type, std::string_view payload);

std::string signature_entry_name(const std::string& key_id);
// Whether `name` has the form of a signature entry; sets `key_id` when it does.
bool is_signature_entry_name(std::string_view name, std::string* key_id = nullptr);
std::string serialize_signature_entry(const Signature& signature);
// Strictly parses a signature entry. Throws Error(kCorrupt) naming `file` and `entry`.
Signature parse_signature_entry(std::string_view bytes, std::string_view file,
                                std::string_view entry);

Signature sign_manifest(const PrivateKey& key, std::string_view manifest_bytes);

// Adds the signature of `key` to the package at `path` (replacing an earlier one by the same key,
// keeping those of other keys), atomically: the package is rewritten beside itself and renamed
// into place. The package is fully opened and checked first.
void sign_package(const std::string& path, const PrivateKey& key);

// Returns the key id of a signature by a trusted key that verifies. Otherwise throws
// Error(kBadSignature) with the reason: unsigned, only unknown keys, or a trusted key's
// signature that does not verify (the manifest was edited or the signature damaged). With
// `required_key`, only a signature by that key (which must be among the trusted ones) counts.
std::string verify_trusted_signature(const Package& package, const TrustedKeys& trusted,
                                     const std::string& required_key = {});

}  // namespace torshpkg

#pragma GCC visibility pop
