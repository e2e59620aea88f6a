// SHA-256 through GnuTLS (which uses the CPU's SHA extensions where present).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

class ByteSource;

using Digest = std::array<uint8_t, 32>;

// Incremental hasher. Not thread-safe; one per thread or task.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(std::span<const uint8_t> data);
  void update(std::string_view text);
  Digest finish();  // the hasher can be reused afterwards

 private:
  void* handle_;  // gnutls_hash_hd_t
};

Digest sha256(std::span<const uint8_t> data);
Digest sha256(std::string_view text);

// Hex SHA-256 of everything `source` holds, read in pieces of a few MiB.
std::string sha256_hex(const ByteSource& source);

std::string to_hex(std::span<const uint8_t> bytes);
// Parses exactly 2*N lowercase hex digits; nullopt otherwise.
std::optional<Digest> digest_from_hex(std::string_view hex);
bool from_hex(std::string_view hex, std::span<uint8_t> out);

}  // namespace torshpkg

#pragma GCC visibility pop
