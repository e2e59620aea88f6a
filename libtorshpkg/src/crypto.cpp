#include "crypto.h"

#include <argon2.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include <cstring>

#include "little_endian.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/sha256.h"

namespace torshpkg {
namespace {

gnutls_datum_t datum(std::span<const uint8_t> b) {
  return {const_cast<unsigned char*>(b.data()), static_cast<unsigned>(b.size())};
}

gnutls_cipher_algorithm_t gnutls_cipher(Cipher c) {
  return c == Cipher::kChacha20Poly1305 ? GNUTLS_CIPHER_CHACHA20_POLY1305
                                        : GNUTLS_CIPHER_AES_256_GCM;
}

constexpr std::string_view kResourceKeyInfo{"torshpkg-resource-key-v1\0", 25};
constexpr std::string_view kChunkAadTag{"torshpkg-chunk-v1\0", 18};
constexpr std::string_view kSlotAadTag{"torshpkg-keyslot-v1\0", 20};
constexpr std::string_view kKeyFileInfo{"torshpkg-keyfile-kek-v1\0", 24};

// RAII for a GnuTLS AEAD handle.
struct Aead {
  gnutls_aead_cipher_hd_t h = nullptr;
  Aead(Cipher c, const Key256& key) {
    const gnutls_datum_t k = datum(key);
    if (gnutls_aead_cipher_init(&h, gnutls_cipher(c), &k) != 0) {
      throw Error(ErrorKind::kUnsupported,
                  std::string("cipher not available: ") + std::string(cipher_name(c)));
    }
  }
  ~Aead() { gnutls_aead_cipher_deinit(h); }
};

std::vector<uint8_t> slot_aad(std::span<const uint8_t, 16> package_id, uint32_t slot_index) {
  std::vector<uint8_t> aad;
  ByteWriter w(aad);
  w.text(kSlotAadTag);
  w.bytes(package_id);
  w.u32(slot_index);
  return aad;
}

Key256 slot_kek(const KeySlot& slot, const Secret& secret, std::span<const uint8_t> salt) {
  Key256 kek{};
  if (slot.type == "password") {
    return argon2id(secret.bytes, salt, {slot.time_cost, slot.memory_kib, slot.parallelism});
  }
  const auto ikm =
      std::span(reinterpret_cast<const uint8_t*>(secret.bytes.data()), secret.bytes.size());
  const auto out = hkdf_sha256(
      ikm, salt,
      std::span(reinterpret_cast<const uint8_t*>(kKeyFileInfo.data()), kKeyFileInfo.size()), 32);
  std::memcpy(kek.data(), out.data(), 32);
  return kek;
}

}  // namespace

void random_bytes(std::span<uint8_t> out) {
  if (gnutls_rnd(GNUTLS_RND_KEY, out.data(), out.size()) != 0) {
    throw Error(ErrorKind::kIo, "cannot get random bytes");
  }
}

std::vector<uint8_t> hkdf_sha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt,
                                 std::span<const uint8_t> info, size_t length) {
  uint8_t prk[32];
  const gnutls_datum_t k = datum(ikm);
  const gnutls_datum_t s = datum(salt);
  if (gnutls_hkdf_extract(GNUTLS_MAC_SHA256, &k, &s, prk) != 0)
    throw Error(ErrorKind::kIo, "HKDF failed");
  std::vector<uint8_t> out(length);
  const gnutls_datum_t p{prk, sizeof prk};
  const gnutls_datum_t i = datum(info);
  if (gnutls_hkdf_expand(GNUTLS_MAC_SHA256, &p, &i, out.data(), length) != 0) {
    throw Error(ErrorKind::kIo, "HKDF failed");
  }
  return out;
}

Key256 argon2id(std::string_view password, std::span<const uint8_t> salt, const Argon2Params& p) {
  if (p.time_cost < 1 || p.time_cost > Argon2Params::kMaxTimeCost ||
      p.memory_kib < 8 * p.parallelism || p.memory_kib > Argon2Params::kMaxMemoryKib ||
      p.parallelism < 1 || p.parallelism > Argon2Params::kMaxParallelism) {
    throw Error(ErrorKind::kCorrupt, "Argon2id parameters out of bounds");
  }
  Key256 out{};
  const int rc =
      argon2id_hash_raw(p.time_cost, p.memory_kib, p.parallelism, password.data(), password.size(),
                        salt.data(), salt.size(), out.data(), out.size());
  if (rc != ARGON2_OK)
    throw Error(ErrorKind::kIo, std::string("Argon2id: ") + argon2_error_message(rc));
  return out;
}

std::vector<uint8_t> aead_encrypt(Cipher cipher, const Key256& key,
                                  std::span<const uint8_t, kNonceSize> nonce,
                                  std::span<const uint8_t> aad, std::span<const uint8_t> plain) {
  Aead aead(cipher, key);
  std::vector<uint8_t> out(plain.size() + kTagSize);
  size_t len = out.size();
  if (gnutls_aead_cipher_encrypt(aead.h, nonce.data(), nonce.size(), aad.data(), aad.size(),
                                 kTagSize, plain.data(), plain.size(), out.data(), &len) != 0 ||
      len != out.size()) {
    throw Error(ErrorKind::kIo, "encryption failed");
  }
  return out;
}

bool aead_decrypt(Cipher cipher, const Key256& key, std::span<const uint8_t, kNonceSize> nonce,
                  std::span<const uint8_t> aad, std::span<const uint8_t> sealed,
                  std::vector<uint8_t>& plain) {
  if (sealed.size() < kTagSize) return false;
  Aead aead(cipher, key);
  plain.resize(sealed.size() - kTagSize);
  size_t len = plain.size();
  return gnutls_aead_cipher_decrypt(aead.h, nonce.data(), nonce.size(), aad.data(), aad.size(),
                                    kTagSize, sealed.data(), sealed.size(), plain.data(),
                                    &len) == 0 &&
         len == plain.size();
}

Key256 resource_key(const Key256& data_key, std::span<const uint8_t, 16> package_id,
                    uint32_t resource_id, std::string_view path) {
  std::vector<uint8_t> info;
  ByteWriter w(info);
  w.text(kResourceKeyInfo);
  w.u32(resource_id);
  w.text(path);
  const auto out = hkdf_sha256(data_key, package_id, info, 32);
  Key256 key{};
  std::memcpy(key.data(), out.data(), 32);
  return key;
}

std::array<uint8_t, kNonceSize> chunk_nonce(uint64_t chunk, bool last) {
  std::vector<uint8_t> v;
  ByteWriter w(v);
  w.u64(chunk);
  w.u32(last ? 1 : 0);
  std::array<uint8_t, kNonceSize> nonce{};
  std::memcpy(nonce.data(), v.data(), kNonceSize);
  return nonce;
}

std::vector<uint8_t> chunk_aad(std::span<const uint8_t, 16> package_id, uint32_t resource_id,
                               uint64_t chunk, uint64_t chunk_count, uint32_t plain_len) {
  std::vector<uint8_t> aad;
  ByteWriter w(aad);
  w.text(kChunkAadTag);
  w.bytes(package_id);
  w.u32(resource_id);
  w.u64(chunk);
  w.u64(chunk_count);
  w.u32(plain_len);
  return aad;
}

KeySlot make_key_slot(const Key256& data_key, const Secret& secret,
                      std::span<const uint8_t, 16> package_id, uint32_t slot_index,
                      const Argon2Params& params) {
  KeySlot slot;
  uint8_t salt[16];
  random_bytes(salt);
  std::array<uint8_t, kNonceSize> nonce{};
  random_bytes(nonce);
  if (secret.kind == Secret::Kind::kPassword) {
    slot.type = "password";
    slot.time_cost = params.time_cost;
    slot.memory_kib = params.memory_kib;
    slot.parallelism = params.parallelism;
  } else {
    slot.type = "key-file";
  }
  slot.salt = to_hex(salt);
  slot.nonce = to_hex(nonce);
  const Key256 kek = slot_kek(slot, secret, salt);
  slot.wrapped_key = to_hex(
      aead_encrypt(Cipher::kAes256Gcm, kek, nonce, slot_aad(package_id, slot_index), data_key));
  return slot;
}

std::optional<Key256> open_key_slot(const KeySlot& slot, const Secret& secret,
                                    std::span<const uint8_t, 16> package_id, uint32_t slot_index) {
  const bool password = slot.type == "password";
  if (password != (secret.kind == Secret::Kind::kPassword)) return std::nullopt;
  uint8_t salt[16];
  std::array<uint8_t, kNonceSize> nonce{};
  std::vector<uint8_t> wrapped(32 + kTagSize);
  if (!from_hex(slot.salt, salt) || !from_hex(slot.nonce, nonce) ||
      !from_hex(slot.wrapped_key, wrapped)) {
    return std::nullopt;
  }
  const Key256 kek = slot_kek(slot, secret, salt);
  std::vector<uint8_t> plain;
  if (!aead_decrypt(Cipher::kAes256Gcm, kek, nonce, slot_aad(package_id, slot_index), wrapped,
                    plain)) {
    return std::nullopt;
  }
  Key256 key{};
  std::memcpy(key.data(), plain.data(), 32);
  return key;
}

std::string_view cipher_name(Cipher cipher) {
  switch (cipher) {
    case Cipher::kNone:
      return "none";
    case Cipher::kAes256Gcm:
      return "aes-256-gcm";
    case Cipher::kChacha20Poly1305:
      return "chacha20-poly1305";
  }
  return "none";
}

std::optional<Cipher> cipher_from_name(std::string_view name) {
  if (name == "none") return Cipher::kNone;
  if (name == "aes-256-gcm") return Cipher::kAes256Gcm;
  if (name == "chacha20-poly1305") return Cipher::kChacha20Poly1305;
  return std::nullopt;
}

namespace {
std::string read_secret_file(const std::string& path) {
  UniqueFd fd = open_read(path);
  std::string bytes;
  uint8_t buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw io_error(path, "read failed", errno);
    }
    if (n == 0) break;
    bytes.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
    if (bytes.size() > 64 * 1024) throw invalid_argument(path + ": secret file larger than 64 KiB");
  }
  return bytes;
}
}  // namespace

Secret read_password_file(const std::string& path) {
  Secret s{Secret::Kind::kPassword, read_secret_file(path)};
  if (s.bytes.ends_with("\r\n")) {
    s.bytes.resize(s.bytes.size() - 2);
  } else if (s.bytes.ends_with("\n")) {
    s.bytes.pop_back();
  }
  if (s.bytes.empty()) throw invalid_argument(path + ": empty password");
  return s;
}

Secret read_key_file(const std::string& path) {
  Secret s{Secret::Kind::kKeyFile, read_secret_file(path)};
  if (s.bytes.size() < 32) {
    throw invalid_argument(
        path + ": a key file must hold at least 32 bytes (e.g. head -c 32 /dev/urandom)");
  }
  return s;
}

}  // namespace torshpkg
