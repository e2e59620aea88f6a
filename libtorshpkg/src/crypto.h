// The cryptographic building blocks of encryption, through GnuTLS and libargon2: AEAD per chunk,
// HKDF-SHA256, Argon2id, random bytes, and the key schedule of docs/FORMAT.md.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "torshpkg/encryption.h"
#include "torshpkg/manifest.h"

namespace torshpkg {

using Key256 = std::array<uint8_t, 32>;
inline constexpr size_t kTagSize = 16;
inline constexpr size_t kNonceSize = 12;

void random_bytes(std::span<uint8_t> out);

// RFC 5869 with SHA-256.
std::vector<uint8_t> hkdf_sha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt,
                                 std::span<const uint8_t> info, size_t length);

Key256 argon2id(std::string_view password, std::span<const uint8_t> salt, const Argon2Params& p);

// AEAD encryption appends the 16-byte tag; decryption returns false when the tag does not verify
// (and leaves `plain` unspecified). Thread-safe.
std::vector<uint8_t> aead_encrypt(Cipher cipher, const Key256& key,
                                  std::span<const uint8_t, kNonceSize> nonce,
                                  std::span<const uint8_t> aad, std::span<const uint8_t> plain);
bool aead_decrypt(Cipher cipher, const Key256& key, std::span<const uint8_t, kNonceSize> nonce,
                  std::span<const uint8_t> aad, std::span<const uint8_t> sealed,
                  std::vector<uint8_t>& plain);

// Key schedule (docs/FORMAT.md, "Encryption").
Key256 resource_key(const Key256& data_key, std::span<const uint8_t, 16> package_id,
                    uint32_t resource_id, std::string_view path);
std::array<uint8_t, kNonceSize> chunk_nonce(uint64_t chunk, bool last);
std::vector<uint8_t> chunk_aad(std::span<const uint8_t, 16> package_id, uint32_t resource_id,
                               uint64_t chunk, uint64_t chunk_count, uint32_t plain_len);

// Creates a key slot holding `data_key` for `secret`; opens one (nullopt when the secret does not
// fit it). Slots of the other kind are skipped by the caller.
KeySlot make_key_slot(const Key256& data_key, const Secret& secret,
                      std::span<const uint8_t, 16> package_id, uint32_t slot_index,
                      const Argon2Params& params);
std::optional<Key256> open_key_slot(const KeySlot& slot, const Secret& secret,
                                    std::span<const uint8_t, 16> package_id, uint32_t slot_index);

}  // namespace torshpkg
