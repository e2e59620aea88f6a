// Ed25519 keys: generation, PEM files (PKCS#8 private, SubjectPublicKeyInfo public, the forms
// `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write), signing and
// verification through GnuTLS, and the trusted-key folder.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

// An Ed25519 public key. Immutable; safe to share between threads.
class PublicKey {
 public:
  // Parses a SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY"). Throws Error(kInvalidArgument)
  // naming `source` for anything else, including keys of other algorithms.
  static PublicKey from_pem(const std::string& pem, const std::string& source);
  static PublicKey load(const std::string& path);

  // Hex SHA-256 of the key's SubjectPublicKeyInfo DER encoding.
  const std::string& key_id() const { return key_id_; }
  const std::string& pem() const { return pem_; }
  bool verify(std::span<const uint8_t> message, std::span<const uint8_t> signature) const;

 private:
  friend class PrivateKey;
  std::shared_ptr<void> handle_;  // gnutls_pubkey_t
  std::string key_id_;
  std::string pem_;
};

// An Ed25519 private key. Not copyable; the key material is freed with it.
class PrivateKey {
 public:
  // Parses a PKCS#8 PEM ("BEGIN PRIVATE KEY", unencrypted). Throws Error(kInvalidArgument).
  static PrivateKey from_pem(const std::string& pem, const std::string& source);
  static PrivateKey load(const std::string& path);
  // From RFC 8032 raw form: 32-byte secret seed and its 32-byte public key (tests, vectors).
  static PrivateKey from_raw(std::span<const uint8_t, 32> seed, std::span<const uint8_t, 32> pub);
  // A fresh random key.
  static PrivateKey generate();

  PrivateKey(PrivateKey&&) noexcept;
  PrivateKey& operator=(PrivateKey&&) noexcept;
  ~PrivateKey();

  const PublicKey& public_key() const { return public_key_; }
  std::vector<uint8_t> sign(std::span<const uint8_t> message) const;
  std::string pkcs8_pem() const;

 private:
  PrivateKey(void* handle, const std::string& source);
  void* handle_ = nullptr;  // gnutls_privkey_t
  PublicKey public_key_;
};

// Writes PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub (SubjectPublicKeyInfo PEM) for a new
// key; refuses to replace existing files unless `force`. Returns the key id.
std::string generate_key_files(const std::string& prefix, bool force);

// The keys a host trusts: every *.pub file of one folder, by key id. Key ids in signatures are
// only used to look keys up here; a key is trusted only because its file is in the folder.
class TrustedKeys {
 public:
  // Throws Error(kNotFound) for a missing folder and Error(kInvalidArgument) for a .pub file
  // that is not an Ed25519 public key.
  static TrustedKeys load_dir(const std::string& dir);

  const PublicKey* find(const std::string& key_id) const;
  size_t size() const { return keys_.size(); }

 private:
  std::map<std::string, PublicKey> keys_;
};

}  // namespace torshpkg

#pragma GCC visibility pop
