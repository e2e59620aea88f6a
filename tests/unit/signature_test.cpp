#include "torshpkg/signature.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "crc32.h"
#include "test_util.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/package.h"
#include "torshpkg/package_writer.h"
#include "zip_reader.h"
#include "zip_writer.h"

namespace torshpkg {
namespace {

using testing::TempDir;

std::string make_package(const TempDir& dir, const PrivateKey* key = nullptr) {
  PackageWriter w(testing::header());
  w.add_bytes("w.bin", testing::text_bytes(100'000));
  WriteOptions o;
  o.chunk_size = 4096;
  o.sign_key = key;
  w.write(dir / "p.torshpkg", o);
  return dir / "p.torshpkg";
}

TrustedKeys trust(const TempDir& dir, const std::vector<const PrivateKey*>& keys) {
  std::filesystem::create_directories(dir / "trusted");
  int i = 0;
  for (const PrivateKey* k : keys) {
    const std::string& pem = k->public_key().pem();
    testing::write_file(dir / ("trusted/k" + std::to_string(i++) + ".pub"),
                        std::vector<uint8_t>(pem.begin(), pem.end()));
  }
  return TrustedKeys::load_dir(dir / "trusted");
}

std::string reason(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadSignature) << e.what();
    return e.what();
  }
  return "no error";
}

TEST(Dsse, PreAuthenticationEncoding) {
  const auto pae = dsse_pae("application/x", "hello");
  EXPECT_EQ(std::string(pae.begin(), pae.end()), "DSSEv1 13 application/x 5 hello");
  const auto empty = dsse_pae("t", "");
  EXPECT_EQ(std::string(empty.begin(), empty.end()), "DSSEv1 1 t 0 ");
}

TEST(Signatures, SignedAtCreationVerifiesWithTheTrustedKey) {
  TempDir dir;
  const PrivateKey key = PrivateKey::generate();
  const auto pkg = Package::open(make_package(dir, &key));
  ASSERT_EQ(pkg->signatures().size(), 1u);
  EXPECT_EQ(verify_trusted_signature(*pkg, trust(dir, {&key})), key.public_key().key_id());
}

TEST(Signatures, SignPackageAddsAndReplacesButKeepsOtherKeys) {
  TempDir dir;
  const PrivateKey a = PrivateKey::generate();
  const PrivateKey b = PrivateKey::generate();
  const std::string path = make_package(dir);
  const std::vector<uint8_t> before = testing::read_file(path);
  sign_package(path, a);
  sign_package(path, b);
  sign_package(path, a);  // replaces a's signature, keeps b's
  const auto pkg = Package::open(path);
  EXPECT_EQ(pkg->signatures().size(), 2u);
  EXPECT_EQ(verify_trusted_signature(*pkg, trust(dir, {&b})), b.public_key().key_id());
  pkg->verify(true);
  // Signing only appends: every byte before the signatures is unchanged (stored data stays
  // aligned).
  const std::vector<uint8_t> after = testing::read_file(path);
  auto src = memory_source(before, "before");
  uint64_t cd = 0;
  for (const ZipEntry& e : read_zip_directory(*src))
    cd = std::max(cd, e.data_offset + e.compressed_size);
  EXPECT_TRUE(std::equal(before.begin(), before.begin() + static_cast<long>(cd), after.begin()));
}

TEST(Signatures, FailureReasons) {
  TempDir dir;
  const PrivateKey trusted = PrivateKey::generate();
  const PrivateKey stranger = PrivateKey::generate();
  const TrustedKeys keys = trust(dir, {&trusted});
  const std::string path = make_package(dir);
  EXPECT_NE(reason([&] { verify_trusted_signature(*Package::open(path), keys); }).find("unsigned"),
            std::string::npos);
  sign_package(path, stranger);
  EXPECT_NE(
      reason([&] { verify_trusted_signature(*Package::open(path), keys); }).find("unknown key"),
      std::string::npos);
}

TEST(Signatures, ARequiredKeyNarrowsTheTrustedKeys) {
  TempDir dir;
  const PrivateKey a = PrivateKey::generate();
  const PrivateKey b = PrivateKey::generate();
  const PrivateKey stranger = PrivateKey::generate();
  const TrustedKeys keys = trust(dir, {&a, &b});
  const std::string path = make_package(dir, &a);
  const auto pkg = Package::open(path);
  const std::string id_a = a.public_key().key_id(), id_b = b.public_key().key_id();
  EXPECT_EQ(verify_trusted_signature(*pkg, keys, id_a), id_a);
  // Signed by a trusted key, but not the required one.
  EXPECT_NE(reason([&] { verify_trusted_signature(*pkg, keys, id_b); }).find("required key"),
            std::string::npos);
  // A required key that is not trusted widens nothing.
  EXPECT_NE(reason([&] {
              verify_trusted_signature(*pkg, keys, stranger.public_key().key_id());
            }).find("not a trusted key"),
            std::string::npos);
  sign_package(path, b);
  EXPECT_EQ(verify_trusted_signature(*Package::open(path), keys, id_b), id_b);
}

TEST(Signatures, EditedManifestFailsTheSignature) {
  TempDir dir;
  const PrivateKey key = PrivateKey::generate();
  const std::string path = make_package(dir, &key);
  // Re-sign a different manifest by forging: take the signature of this package and put it on
  // a second package with the same content but another version.
  PackageWriter w(testing::header("demo", "1.0.1"));
  w.add_bytes("w.bin", testing::text_bytes(100'000));
  WriteOptions o;
  o.chunk_size = 4096;
  w.write(dir / "q.torshpkg", o);
  const auto signed_pkg = Package::open(path);
  const std::string envelope = serialize_signature_entry(signed_pkg->signatures()[0]);
  // Copy q's entries and append p's signature entry.
  {
    auto src = open_file_source(dir / "q.torshpkg");
    AtomicFile out(dir / "forged.torshpkg");
    // Entry times as the writer sets them, so the forgery is structurally sound.
    uint32_t dos_time = 0;
    uint16_t dos_date = 0;
    dos_time_of(Package::open(dir / "q.torshpkg")->manifest().created, dos_time, dos_date);
    ZipWriter zip(out.fd(), "forged", dos_time, dos_date);
    for (const ZipEntry& e : read_zip_directory(*src)) zip.copy_entry(e, *src);
    const auto bytes =
        std::span(reinterpret_cast<const uint8_t*>(envelope.data()), envelope.size());
    zip.add_entry(signature_entry_name(key.public_key().key_id()), 0, bytes, crc32_of(bytes),
                  bytes.size());
    zip.finish();
    out.commit();
  }
  const std::string why = reason([&] {
    verify_trusted_signature(*Package::open(dir / "forged.torshpkg"), trust(dir, {&key}));
  });
  EXPECT_NE(why.find("does not verify"), std::string::npos) << why;
}

TEST(SignatureEntries, StrictParsing) {
  Signature s{std::string(64, 'a'), std::vector<uint8_t>(64, 7)};
  const std::string good = serialize_signature_entry(s);
  EXPECT_EQ(parse_signature_entry(good, "f", "e").sig, s.sig);
  const auto corrupt_kind = [](const std::string& text) {
    try {
      parse_signature_entry(text, "f", "e");
    } catch (const Error& e) {
      return e.kind() == ErrorKind::kCorrupt;
    }
    return false;
  };
  std::string replaced = good;
  replaced.replace(replaced.find("vnd.torshpkg"), 3, "xyz");
  EXPECT_TRUE(corrupt_kind(replaced));
  EXPECT_TRUE(corrupt_kind("{}"));
  EXPECT_TRUE(corrupt_kind(good.substr(0, good.size() / 2)));
  Signature short_sig{std::string(64, 'a'), std::vector<uint8_t>(63, 7)};
  EXPECT_TRUE(corrupt_kind(serialize_signature_entry(short_sig)));
  Signature bad_id{std::string(64, 'A'), std::vector<uint8_t>(64, 7)};
  EXPECT_TRUE(corrupt_kind(serialize_signature_entry(bad_id)));
  EXPECT_TRUE(corrupt_kind("{\"payloadType\": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}"));
  std::string extra = good;
  extra.insert(1, "\"x\": 1,");
  EXPECT_TRUE(corrupt_kind(extra));
}

TEST(SignatureEntries, NamesCarryTheKeyId) {
  std::string id;
  EXPECT_TRUE(is_signature_entry_name(signature_entry_name(std::string(64, 'b')), &id));
  EXPECT_EQ(id, std::string(64, 'b'));
  EXPECT_FALSE(is_signature_entry_name(".torshpkg/signatures/abc.sig"));
  EXPECT_FALSE(is_signature_entry_name(".torshpkg/signatures/" + std::string(64, 'b') + ".txt"));
}

}  // namespace
}  // namespace torshpkg
