#include "torshpkg/sha256.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include <algorithm>
#include <array>
#include <vector>

#include "torshpkg/byte_source.h"
#include "torshpkg/error.h"

namespace torshpkg {

Sha256::Sha256() {
  gnutls_hash_hd_t handle = nullptr;
  if (gnutls_hash_init(&handle, GNUTLS_DIG_SHA256) != 0) {
    throw Error(ErrorKind::kUnsupported, "SHA-256 is not available from GnuTLS");
  }
  handle_ = handle;
}

Sha256::~Sha256() {
  gnutls_hash_deinit(static_cast<gnutls_hash_hd_t>(handle_), nullptr);
}

void Sha256::update(std::span<const uint8_t> data) {
  if (!data.empty()) gnutls_hash(static_cast<gnutls_hash_hd_t>(handle_), data.data(), data.size());
}

void Sha256::update(std::string_view text) {
  update(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

Digest Sha256::finish() {
  Digest out{};
  gnutls_hash_output(static_cast<gnutls_hash_hd_t>(handle_), out.data());
  return out;
}

Digest sha256(std::span<const uint8_t> data) {
  Digest out{};
  gnutls_hash_fast(GNUTLS_DIG_SHA256, data.data(), data.size(), out.data());
  return out;
}

Digest sha256(std::string_view text) {
  return sha256(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

bool from_hex(std::string_view hex, std::span<uint8_t> out) {
  if (hex.size() != out.size() * 2) return false;
  // Nibble values of '0'-'9' and 'a'-'f'; 0xff for every other byte (uppercase included).
  static constexpr std::array<uint8_t, 256> kNibble = [] {
    std::array<uint8_t, 256> t{};
    t.fill(0xff);
    for (int c = '0'; c <= '9'; ++c) t[c] = static_cast<uint8_t>(c - '0');
    for (int c = 'a'; c <= 'f'; ++c) t[c] = static_cast<uint8_t>(c - 'a' + 10);
    return t;
  }();
  uint8_t bad = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const uint8_t hi = kNibble[static_cast<uint8_t>(hex[2 * i])];
    const uint8_t lo = kNibble[static_cast<uint8_t>(hex[2 * i + 1])];
    bad |= (hi | lo) & 0xf0;
    out[i] = static_cast<uint8_t>(hi << 4 | (lo & 0x0f));
  }
  return bad == 0;
}

std::optional<Digest> digest_from_hex(std::string_view hex) {
  Digest d{};
  if (!from_hex(hex, d)) return std::nullopt;
  return d;
}

std::string sha256_hex(const ByteSource& source) {
  Sha256 h;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(source.size(), 8u << 20)));
  for (uint64_t at = 0; at < source.size();) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), source.size() - at));
    source.read_at(at, std::span(buf.data(), n));
    h.update(std::span<const uint8_t>(buf.data(), n));
    at += n;
  }
  return to_hex(h.finish());
}

}  // namespace torshpkg
