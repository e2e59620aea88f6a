// Encrypted packages end to end in the library: round trips, wrong secrets, locked reads, and
// chunks moved between positions, resources and packages.
#include <gtest/gtest.h>

#include "test_util.h"
#include "torshpkg/error.h"
#include "torshpkg/package.h"
#include "torshpkg/package_writer.h"
#include "zip_reader.h"

namespace torshpkg {
namespace {

using testing::TempDir;
using testing::text_bytes;

const Secret kPassword{Secret::Kind::kPassword, "s3cret"};
const Secret kKeyFile{Secret::Kind::kKeyFile, std::string(40, 'z')};

std::string write_encrypted(const TempDir& dir, const std::string& name, Cipher cipher,
                            CodecSpec codec) {
  PackageWriter w(testing::header());
  w.add_bytes("a.bin", text_bytes(50'000, 1));
  w.add_bytes("b.bin", text_bytes(50'000, 2));
  w.add_bytes("empty", {});
  WriteOptions o;
  o.chunk_size = 4096;
  o.compression = codec;
  o.encryption = cipher;
  o.secrets = {kPassword, kKeyFile};
  o.argon2 = {1, 256, 1};
  w.write(dir / name, o);
  return dir / name;
}

TEST(EncryptedPackage, EveryCodecAndCipherRoundTripsWithEitherSecret) {
  TempDir dir;
  for (Cipher cipher : {Cipher::kAes256Gcm, Cipher::kChacha20Poly1305}) {
    for (CodecSpec codec : {CodecSpec{Codec::kNone, 0}, CodecSpec{Codec::kDeflate, 6},
                            CodecSpec{Codec::kZstd, 3}, CodecSpec{Codec::kXz, 1}}) {
      const std::string path = write_encrypted(dir, "p.torshpkg", cipher, codec);
      for (const Secret* secret : {&kPassword, &kKeyFile}) {
        const auto pkg = Package::open(path, secret);
        EXPECT_TRUE(pkg->unlocked());
        EXPECT_EQ(testing::read_all(*pkg, "resources/a.bin"), text_bytes(50'000, 1));
        std::vector<uint8_t> slice(5000);
        pkg->read(*pkg->find("resources/b.bin"), 20'000, slice);
        const auto b = text_bytes(50'000, 2);
        EXPECT_TRUE(std::equal(slice.begin(), slice.end(), b.begin() + 20'000));
        pkg->verify(true);
      }
    }
  }
}

TEST(EncryptedPackage, PlaintextNeverAppearsAndItsHashIsNotPublished) {
  TempDir dir;
  const std::string path =
      write_encrypted(dir, "p.torshpkg", Cipher::kAes256Gcm, {Codec::kNone, 0});
  const auto bytes = testing::read_file(path);
  const std::string text(bytes.begin(), bytes.end());
  EXPECT_EQ(text.find("attention\ntensor"), std::string::npos);
  const auto pkg = Package::open(path);
  EXPECT_TRUE(pkg->manifest().resources[0].sha256.empty());
}

TEST(EncryptedPackage, WrongSecretFailsAtOpenAndMissingSecretFailsOnRead) {
  TempDir dir;
  const std::string path =
      write_encrypted(dir, "p.torshpkg", Cipher::kAes256Gcm, {Codec::kZstd, 3});
  const Secret wrong{Secret::Kind::kPassword, "nope"};
  EXPECT_EQ(testing::kind_of([&] { Package::open(path, &wrong); }), ErrorKind::kWrongKey);
  const Secret wrong_file{Secret::Kind::kKeyFile, std::string(40, 'y')};
  EXPECT_EQ(testing::kind_of([&] { Package::open(path, &wrong_file); }), ErrorKind::kWrongKey);
  const auto locked = Package::open(path);
  EXPECT_FALSE(locked->unlocked());
  EXPECT_EQ(locked->files().size(), 4u);
  std::vector<uint8_t> buf(10);
  EXPECT_EQ(testing::kind_of([&] { locked->read(*locked->find("resources/a.bin"), 0, buf); }),
            ErrorKind::kWrongKey);
  locked->verify(true);  // leaf hashes and CRCs need no key
}

TEST(EncryptedPackage, UnlocksAfterOpeningWithoutTheSecret) {
  TempDir dir;
  const std::string path =
      write_encrypted(dir, "p.torshpkg", Cipher::kChacha20Poly1305, {Codec::kZstd, 3});
  const auto pkg = Package::open(path);
  ASSERT_FALSE(pkg->unlocked());
  const Secret wrong{Secret::Kind::kPassword, "nope"};
  EXPECT_EQ(testing::kind_of([&] { pkg->unlock(wrong); }), ErrorKind::kWrongKey);
  EXPECT_FALSE(pkg->unlocked());
  pkg->unlock(kKeyFile);
  EXPECT_TRUE(pkg->unlocked());
  EXPECT_EQ(testing::read_all(*pkg, "resources/a.bin"), text_bytes(50'000, 1));
  pkg->unlock(kPassword);  // unlocked already: nothing to do
}

TEST(EncryptedPackage, ChunksMovedAcrossResourcesOrPackagesFail) {
  TempDir dir;
  const std::string p1 = write_encrypted(dir, "p1.torshpkg", Cipher::kAes256Gcm, {Codec::kNone, 0});
  auto bytes = testing::read_file(p1);
  auto entries = read_zip_directory(*memory_source(bytes, "p"));
  const auto entry = [&](const std::string& n) {
    for (const ZipEntry& e : entries)
      if (e.name == n) return e;
    throw std::runtime_error(n);
  };
  const ZipEntry a = entry("resources/a.bin"), b = entry("resources/b.bin");
  // Swap chunk 0 of a and b (same sizes): leaf hashes bind the resource id.
  auto swapped = bytes;
  std::swap_ranges(swapped.begin() + static_cast<long>(a.data_offset),
                   swapped.begin() + static_cast<long>(a.data_offset + 4096 + 16),
                   swapped.begin() + static_cast<long>(b.data_offset));
  const auto pkg = Package::open(memory_source(swapped, "p"), &kPassword);
  std::vector<uint8_t> buf(4096);
  try {
    pkg->read(*pkg->find("resources/a.bin"), 0, buf);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorrupt);
    EXPECT_NE(std::string(e.what()).find("chunk 0 hash mismatch"), std::string::npos) << e.what();
  }
  // Unswapped, the same bytes read fine.
  EXPECT_EQ(
      testing::read_all(*Package::open(memory_source(bytes, "p"), &kPassword), "resources/a.bin"),
      text_bytes(50'000, 1));
}

}  // namespace
}  // namespace torshpkg
