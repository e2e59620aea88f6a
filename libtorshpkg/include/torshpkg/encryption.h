// Encryption of resources: ciphers, the secrets that unlock a package, and key-slot parameters.
// See docs/FORMAT.md, "Encryption", for the key schedule and what stays visible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

enum class Cipher {
  kNone,
  kAes256Gcm,         // default: fastest with AES-NI
  kChacha20Poly1305,  // for CPUs without AES instructions
};

std::string_view cipher_name(Cipher cipher);  // "none", "aes-256-gcm", "chacha20-poly1305"
std::optional<Cipher> cipher_from_name(std::string_view name);

// What unlocks an encrypted package: a password (stretched with Argon2id) or the bytes of a
// key file (at least 32 bytes, stretched with HKDF-SHA256).
struct Secret {
  enum class Kind { kPassword, kKeyFile };
  Kind kind = Kind::kPassword;
  std::string bytes;
};

// Reads a password file (one trailing newline is dropped; empty passwords are refused) or a key
// file (at least 32 bytes). Throws Error(kNotFound / kInvalidArgument).
Secret read_password_file(const std::string& path);
Secret read_key_file(const std::string& path);

// Argon2id cost of new password slots. Readers refuse slots outside the bounds below, so a
// hostile package cannot make opening it take unbounded memory or time.
struct Argon2Params {
  uint32_t time_cost = 3;
  uint32_t memory_kib = 64 * 1024;
  uint32_t parallelism = 4;

  static constexpr uint32_t kMaxTimeCost = 10;
  static constexpr uint32_t kMaxMemoryKib = 1024 * 1024;
  static constexpr uint32_t kMaxParallelism = 16;
  // The sum of time_cost * memory_kib over all password slots of a package: trying a password
  // on every slot never costs more than one slot of the largest allowed cost.
  static constexpr uint64_t kMaxTotalWork = uint64_t{kMaxTimeCost} * kMaxMemoryKib;
};

}  // namespace torshpkg

#pragma GCC visibility pop
