#include "torshpkg/keys.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <functional>

#include "test_util.h"
#include "torshpkg/error.h"
#include "torshpkg/sha256.h"

namespace torshpkg {
namespace {

using testing::TempDir;

std::vector<uint8_t> hex(const std::string& h) {
  std::vector<uint8_t> out(h.size() / 2);
  EXPECT_TRUE(from_hex(h, out));
  return out;
}

struct Rfc8032Vector {
  const char* secret;
  const char* pub;
  const char* message;
  const char* signature;
};

// RFC 8032, section 7.1, tests 1 and 2.
const Rfc8032Vector kVectors[] = {
    {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b"
     "46bd25bf5f0595bbe24655141438e7a100b"},
    {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11"
     "d8c387b2eaeb4302aeeb00d291612bb0c00"},
};

TEST(Ed25519, Rfc8032VectorsSignAndVerify) {
  for (const Rfc8032Vector& v : kVectors) {
    const auto secret = hex(v.secret);
    const auto pub = hex(v.pub);
    const PrivateKey key = PrivateKey::from_raw(std::span<const uint8_t, 32>(secret.data(), 32),
                                                std::span<const uint8_t, 32>(pub.data(), 32));
    const auto message = hex(v.message);
    EXPECT_EQ(to_hex(key.sign(message)), v.signature);
    EXPECT_TRUE(key.public_key().verify(message, hex(v.signature)));
    auto tampered = hex(v.signature);
    tampered[10] ^= 1;
    EXPECT_FALSE(key.public_key().verify(message, tampered));
  }
}

TEST(Ed25519, PemRoundTripKeepsTheKeyId) {
  const PrivateKey key = PrivateKey::generate();
  const std::string pem = key.pkcs8_pem();
  EXPECT_NE(pem.find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  const PrivateKey again = PrivateKey::from_pem(pem, "k");
  EXPECT_EQ(again.public_key().key_id(), key.public_key().key_id());
  const PublicKey pub = PublicKey::from_pem(key.public_key().pem(), "p");
  EXPECT_EQ(pub.key_id(), key.public_key().key_id());
  const std::vector<uint8_t> msg = {1, 2, 3};
  EXPECT_TRUE(pub.verify(msg, again.sign(msg)));
  EXPECT_EQ(key.public_key().key_id().size(), 64u);
}

TEST(Ed25519, RejectsWhatIsNotAnEd25519Pem) {
  EXPECT_THROW(PublicKey::from_pem("garbage", "x"), Error);
  EXPECT_THROW(
      PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "x"),
      Error);
  const PrivateKey key = PrivateKey::generate();
  EXPECT_THROW(PublicKey::from_pem(key.pkcs8_pem(), "x"), Error);  // a private key is no public key
  EXPECT_THROW(PrivateKey::from_pem(key.public_key().pem(), "x"), Error);
  // Valid keys of another algorithm (an ECDSA P-256 pair, made for this test): refused by name.
  const std::string ec_private =
      "-----BEGIN PRIVATE KEY-----\n"
      "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgn/d4945NHceE328T\n"
      "2QFGIlVwjLBSD6/rcSL0Uq6HcPShRANCAATV1cYZpucmdbn6heXwsBaIMv8E7+4K\n"
      "udiXb8cnqfyP30WIY7WPylqkEOeKWL1WVXnYUdre4e8yqI0qG4h72ZRR\n"
      "-----END PRIVATE KEY-----\n";
  const std::string ec_public =
      "-----BEGIN PUBLIC KEY-----\n"
      "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1dXGGabnJnW5+oXl8LAWiDL/BO/u\n"
      "CrnYl2/HJ6n8j99FiGO1j8papBDnili9VlV52FHa3uHvMqiNKhuIe9mUUQ==\n"
      "-----END PUBLIC KEY-----\n";
  for (const auto& load :
       std::vector<std::function<void()>>{[&] { PrivateKey::from_pem(ec_private, "ec.key"); },
                                          [&] { PublicKey::from_pem(ec_public, "ec.pub"); }}) {
    try {
      load();
      ADD_FAILURE() << "an ECDSA key was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("not an Ed25519 key"), std::string::npos) << e.what();
    }
  }
}

TEST(KeyFiles, GenerateWritesPrivateKeyWithMode0600AndRefusesToOverwrite) {
  TempDir dir;
  const std::string id = generate_key_files(dir / "k", false);
  struct stat st {};
  ASSERT_EQ(::stat((dir / "k.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(PrivateKey::load(dir / "k.key").public_key().key_id(), id);
  EXPECT_EQ(PublicKey::load(dir / "k.pub").key_id(), id);
  EXPECT_THROW(generate_key_files(dir / "k", false), Error);
  EXPECT_NE(generate_key_files(dir / "k", true), id);
}

TEST(TrustedKeys, LoadsEveryPubFileByKeyId) {
  TempDir dir;
  const std::string a = generate_key_files(dir / "a", false);
  const std::string b = generate_key_files(dir / "b", false);
  testing::write_file(dir / "notes.txt", {'x'});
  const TrustedKeys keys = TrustedKeys::load_dir(dir.path());
  EXPECT_EQ(keys.size(), 2u);
  EXPECT_NE(keys.find(a), nullptr);
  EXPECT_NE(keys.find(b), nullptr);
  EXPECT_EQ(keys.find(std::string(64, '0')), nullptr);
  testing::write_file(dir / "bad.pub", {'x'});
  EXPECT_THROW(TrustedKeys::load_dir(dir.path()), Error);
  EXPECT_THROW(TrustedKeys::load_dir(dir / "missing"), Error);
}

}  // namespace
}  // namespace torshpkg
