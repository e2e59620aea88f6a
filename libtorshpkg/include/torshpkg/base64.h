// Base64 (RFC 4648), the one codec of the project: signatures in signature entries, and the
// credentials of registries (docker config.json "auth", HTTP Basic).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

// The standard alphabet, with '=' padding.
std::string base64_encode(std::span<const uint8_t> bytes);
std::string base64_encode(std::string_view bytes);

enum class Base64 {
  // Exactly what base64_encode writes: the standard alphabet, padded, no line breaks, no
  // trailing bits set. Any other spelling of the same bytes is refused (a signature has one).
  kCanonical,
  // What other tools write: either alphabet (standard or URL-safe), padding optional.
  kLenient,
};

// The bytes `text` spells; nullopt when it is not base64 of the kind asked for.
std::optional<std::vector<uint8_t>> base64_decode(std::string_view text, Base64 kind);

}  // namespace torshpkg

#pragma GCC visibility pop
