#include "crypto.h"

#include <gtest/gtest.h>

#include "torshpkg/error.h"
#include "torshpkg/sha256.h"

namespace torshpkg {
namespace {

std::vector<uint8_t> hex(const std::string& h) {
  std::vector<uint8_t> out(h.size() / 2);
  EXPECT_TRUE(from_hex(h, out));
  return out;
}

TEST(Hkdf, Rfc5869TestCase1) {
  const auto okm = hkdf_sha256(hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
                               hex("000102030405060708090a0b0c"), hex("f0f1f2f3f4f5f6f7f8f9"), 42);
  EXPECT_EQ(to_hex(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(Aead, RoundTripsAndRejectsAnyChange) {
  for (Cipher c : {Cipher::kAes256Gcm, Cipher::kChacha20Poly1305}) {
    Key256 key{};
    key[0] = 1;
    const auto nonce = chunk_nonce(5, false);
    const std::vector<uint8_t> aad = {9, 9}, plain = {1, 2, 3, 4, 5};
    const auto sealed = aead_encrypt(c, key, nonce, aad, plain);
    EXPECT_EQ(sealed.size(), plain.size() + kTagSize);
    std::vector<uint8_t> out;
    ASSERT_TRUE(aead_decrypt(c, key, nonce, aad, sealed, out));
    EXPECT_EQ(out, plain);
    auto flipped = sealed;
    flipped[2] ^= 1;
    EXPECT_FALSE(aead_decrypt(c, key, nonce, aad, flipped, out));
    EXPECT_FALSE(aead_decrypt(c, key, chunk_nonce(5, true), aad, sealed, out)) << "last-chunk flag";
    EXPECT_FALSE(aead_decrypt(c, key, chunk_nonce(6, false), aad, sealed, out)) << "chunk number";
    EXPECT_FALSE(aead_decrypt(c, key, nonce, std::vector<uint8_t>{9, 8}, sealed, out)) << "aad";
    Key256 other = key;
    other[31] ^= 1;
    EXPECT_FALSE(aead_decrypt(c, other, nonce, aad, sealed, out)) << "key";
  }
}

TEST(KeySchedule, ResourceKeysDifferPerResourcePathAndPackage) {
  Key256 dk{};
  uint8_t pid[16] = {1};
  uint8_t pid2[16] = {2};
  const Key256 a = resource_key(dk, pid, 0, "a");
  EXPECT_NE(a, resource_key(dk, pid, 1, "a"));
  EXPECT_NE(a, resource_key(dk, pid, 0, "b"));
  EXPECT_NE(a, resource_key(dk, pid2, 0, "a"));
  EXPECT_EQ(a, resource_key(dk, pid, 0, "a"));
}

TEST(KeySlots, OpenOnlyWithTheirSecret) {
  Key256 dk{};
  random_bytes(dk);
  uint8_t pid[16] = {3};
  const Argon2Params cheap{1, 64, 1};
  const Secret password{Secret::Kind::kPassword, "correct horse"};
  const Secret key_file{Secret::Kind::kKeyFile, std::string(32, 'k')};
  const KeySlot p = make_key_slot(dk, password, pid, 0, cheap);
  const KeySlot k = make_key_slot(dk, key_file, pid, 1, cheap);
  EXPECT_EQ(open_key_slot(p, password, pid, 0), dk);
  EXPECT_EQ(open_key_slot(k, key_file, pid, 1), dk);
  EXPECT_FALSE(open_key_slot(p, Secret{Secret::Kind::kPassword, "wrong"}, pid, 0));
  EXPECT_FALSE(open_key_slot(p, key_file, pid, 0)) << "kind mismatch";
  EXPECT_FALSE(open_key_slot(p, password, pid, 1)) << "slot moved";
  uint8_t other[16] = {4};
  EXPECT_FALSE(open_key_slot(p, password, other, 0)) << "slot copied into another package";
}

TEST(Argon2id, BoundedParametersAreEnforced) {
  const uint8_t salt[16] = {};
  EXPECT_THROW(argon2id("pw", salt, {11, 64, 1}), Error);
  EXPECT_THROW(argon2id("pw", salt, {1, 2u << 20, 1}), Error);
  EXPECT_THROW(argon2id("pw", salt, {1, 64, 17}), Error);
  EXPECT_EQ(argon2id("pw", salt, {1, 64, 1}), argon2id("pw", salt, {1, 64, 1}));
  EXPECT_NE(argon2id("pw", salt, {1, 64, 1}), argon2id("pw", salt, {2, 64, 1}));
}

}  // namespace
}  // namespace torshpkg
