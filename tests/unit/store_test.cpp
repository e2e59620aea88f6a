#include "torshpkg/store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "test_util.h"
#include "torshpkg/error.h"
#include "torshpkg/keys.h"
#include "torshpkg/package.h"
#include "torshpkg/package_writer.h"

namespace torshpkg {
namespace {

using testing::TempDir;

std::string make_package(const TempDir& dir, const std::string& name, const std::string& version,
                         std::vector<Dependency> deps = {}, const PrivateKey* key = nullptr,
                         uint32_t seed = 1) {
  PackageWriter w(testing::header(name, version));
  w.add_bytes("w.bin", testing::random_bytes(20000, seed));
  for (Dependency& d : deps) w.add_dependency(std::move(d));
  WriteOptions o;
  o.sign_key = key;
  const std::string out = dir / (name + "-" + version + "-" + std::to_string(seed) + ".torshpkg");
  w.write(out, o);
  return out;
}

Dependency dep(const std::string& name, const std::string& req, bool optional = false) {
  Dependency d;
  d.name = name;
  d.version_req = req;
  d.optional = optional;
  return d;
}

InstallPolicy unsigned_ok() {
  InstallPolicy p;
  p.allow_unsigned = true;
  return p;
}

size_t files_in(const std::string& dir) {
  if (!std::filesystem::exists(dir)) return 0;
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator(dir), {}));
}

TEST(Store, InstallsListsResolvesRemovesAndCollects) {
  TempDir dir;
  const Store store(dir / "store");
  for (const char* v : {"1.0.0", "1.4.2", "2.0.0-rc.1"}) {
    const InstallResult r = store.install(make_package(dir, "base", v), unsigned_ok());
    EXPECT_FALSE(r.already_installed);
    struct stat st {};
    ASSERT_EQ(::stat(r.package.path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0222, 0u) << "blobs are read-only";
  }
  ASSERT_EQ(store.list().size(), 3u);
  EXPECT_EQ(store.list()[2].version, "2.0.0-rc.1");  // by precedence
  EXPECT_EQ(store.resolve("base", VersionReq::parse("^1"))->version, "1.4.2");
  EXPECT_EQ(store.resolve("base", VersionReq::parse("*"))->version, "1.4.2");
  EXPECT_EQ(store.resolve("base", VersionReq::parse(">=2.0.0-rc.1"))->version, "2.0.0-rc.1");
  EXPECT_FALSE(store.resolve("base", VersionReq::parse("^3")));
  EXPECT_FALSE(store.resolve("other", VersionReq::parse("*")));
  store.remove("base", "1.4.2");
  EXPECT_EQ(store.resolve("base", VersionReq::parse("^1"))->version, "1.0.0");
  EXPECT_EQ(testing::kind_of([&] { store.remove("base", "1.4.2"); }), ErrorKind::kNotFound);
  const GcResult gc = store.gc();
  EXPECT_EQ(gc.blobs_removed, 1u);
  EXPECT_GT(gc.bytes_freed, 0u);
  EXPECT_EQ(files_in(dir / "store/blobs/sha256"), 2u);
}

TEST(Store, SameBytesAreIdempotentOtherBytesAreRefused) {
  TempDir dir;
  const Store store(dir / "store");
  const std::string a = make_package(dir, "m", "1.0.0", {}, nullptr, 1);
  EXPECT_FALSE(store.install(a, unsigned_ok()).already_installed);
  EXPECT_TRUE(store.install(a, unsigned_ok()).already_installed);
  const std::string b = make_package(dir, "m", "1.0.0", {}, nullptr, 2);
  EXPECT_EQ(testing::kind_of([&] { store.install(b, unsigned_ok()); }),
            ErrorKind::kInvalidArgument);
  EXPECT_EQ(files_in(dir / "store/tmp"), 0u);
}

TEST(Store, PolicyAndDamageRefuseWithNothingLeft) {
  TempDir dir;
  const Store store(dir / "store");
  const PrivateKey key = PrivateKey::generate();
  std::filesystem::create_directories(dir / "trusted");
  std::ofstream(dir / "trusted/k.pub") << key.public_key().pem();
  InstallPolicy trusted;
  trusted.trusted_keys_dir = dir / "trusted";
  EXPECT_EQ(testing::kind_of([&] { store.install(make_package(dir, "u", "1.0.0"), trusted); }),
            ErrorKind::kBadSignature);
  const InstallResult ok = store.install(make_package(dir, "s", "1.0.0", {}, &key), trusted);
  EXPECT_EQ(ok.signer, key.public_key().key_id());
  // A damaged chunk: the full check refuses it.
  const std::string damaged = make_package(dir, "d", "1.0.0");
  {
    std::fstream f(damaged, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3000);
    f.put('\x5a');
  }
  EXPECT_EQ(testing::kind_of([&] { store.install(damaged, unsigned_ok()); }), ErrorKind::kCorrupt);
  EXPECT_EQ(store.list().size(), 1u);
  EXPECT_EQ(files_in(dir / "store/tmp"), 0u);
  EXPECT_EQ(files_in(dir / "store/blobs/sha256"), 1u);
}

TEST(Store, TakeMovesAFileFromTmpInsteadOfCopyingIt) {
  TempDir dir;
  const Store store(dir / "store");
  const std::string pkg = make_package(dir, "t", "1.0.0");
  // A file outside tmp/ is refused and left alone.
  EXPECT_EQ(testing::kind_of([&] { store.take(pkg, unsigned_ok()); }),
            ErrorKind::kInvalidArgument);
  EXPECT_TRUE(std::filesystem::exists(pkg));
  std::filesystem::create_directories(dir / "store/tmp");
  const std::string staged = dir / "store/tmp/download.torshpkg";
  std::filesystem::copy_file(pkg, staged);
  struct stat before {};
  ASSERT_EQ(::stat(staged.c_str(), &before), 0);
  const InstallResult r = store.take(staged, unsigned_ok());
  EXPECT_FALSE(std::filesystem::exists(staged));
  struct stat after {};
  ASSERT_EQ(::stat(r.package.path.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);  // the same file, moved
  EXPECT_EQ(r.package.digest, store.install(pkg, unsigned_ok()).package.digest);
  // A damaged download is refused and deleted; nothing is installed.
  auto bytes = testing::read_file(pkg);
  bytes[3000] ^= 0x5a;
  const std::string bad = dir / "store/tmp/bad.torshpkg";
  testing::write_file(bad, bytes);
  const Store other(dir / "store");
  EXPECT_EQ(testing::kind_of([&] { other.take(bad, unsigned_ok()); }), ErrorKind::kCorrupt);
  EXPECT_FALSE(std::filesystem::exists(bad));
  EXPECT_EQ(files_in(dir / "store/tmp"), 0u);
  EXPECT_EQ(store.list().size(), 1u);
}

TEST(Store, ConcurrentInstallsOfOnePackageAgree) {
  TempDir dir;
  const Store store(dir / "store");
  const std::string pkg = make_package(dir, "c", "1.0.0");
  std::vector<std::thread> threads;
  std::atomic<int> fresh{0};
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      if (!store.install(pkg, unsigned_ok()).already_installed) ++fresh;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(fresh.load(), 1);  // the store's lock lets one install it; the others find it there
  EXPECT_EQ(store.list().size(), 1u);
  EXPECT_EQ(files_in(dir / "store/blobs/sha256"), 1u);
  EXPECT_EQ(files_in(dir / "store/tmp"), 0u);
}

TEST(Store, GcRemovesAbandonedTemporaryFilesOnly) {
  TempDir dir;
  const Store store(dir / "store");
  store.install(make_package(dir, "g", "1.0.0"), unsigned_ok());
  std::ofstream(dir / "store/tmp/install-crashed") << "partial";
  EXPECT_EQ(store.gc().temp_files_removed, 1u);
  EXPECT_EQ(store.list().size(), 1u);
}

TEST(Store, DependenciesResolveTransitivelyAndReportWhatIsMissing) {
  TempDir dir;
  const Store store(dir / "store");
  store.install(make_package(dir, "base", "1.2.0"), unsigned_ok());
  store.install(make_package(dir, "base", "2.0.0-beta.1"), unsigned_ok());
  store.install(make_package(dir, "tok", "0.15.3", {dep("base", "^1.1"), dep("cyc", "*")}),
                unsigned_ok());
  store.install(make_package(dir, "cyc", "1.0.0", {dep("tok", "~0.15")}), unsigned_ok());
  Manifest root = testing::header("app", "1.0.0");
  root.dependencies = {dep("tok", "~0.15"), dep("extra", "^1", true), dep("base", "^2")};
  const auto r = resolve_dependencies(store, root);
  ASSERT_EQ(r.size(), 6u);  // app's 3, tok's 2, cyc's 1 (tok already expanded: the cycle ends)
  EXPECT_EQ(r[0].package->version, "0.15.3");
  EXPECT_FALSE(r[1].package);  // optional, absent
  EXPECT_TRUE(r[1].dependency.optional);
  EXPECT_FALSE(r[2].package);  // ^2 does not pick 2.0.0-beta.1
  EXPECT_EQ(r[2].installed, (std::vector<std::string>{"1.2.0", "2.0.0-beta.1"}));
  EXPECT_EQ(r[3].parent, "tok@0.15.3");
  EXPECT_EQ(r[3].package->version, "1.2.0");
  EXPECT_EQ(r[3].depth, 2u);
  EXPECT_EQ(r[5].parent, "cyc@1.0.0");
}

TEST(Store, LocatesAFileOrTheHighestMatchingVersion) {
  TempDir dir;
  const Store store(dir / "store");
  const std::string file = make_package(dir, "base", "1.0.0");
  store.install(file, unsigned_ok());
  const std::string newer =
      store.install(make_package(dir, "base", "1.1.0"), unsigned_ok()).package.path;
  EXPECT_EQ(store.locate(file), file);  // a file is itself
  EXPECT_EQ(store.locate("base@^1"), newer);
  EXPECT_EQ(store.locate("base"), newer);
  for (const auto& [arg, says] : std::vector<std::pair<std::string, std::string>>{
           {"base@^2", "(installed: 1.0.0, 1.1.0)"},
           {"other@1", "(none installed)"},
           {dir / "missing.torshpkg", "no such file (nor a NAME@REQ)"}}) {
    try {
      store.locate(arg);
      ADD_FAILURE() << arg;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(testing::kind_of([&] { store.locate("base@^^1"); }), ErrorKind::kInvalidArgument);
}

TEST(Store, DependencyMountsArePlannedBesideThePackageOncePerName) {
  TempDir dir;
  const Store store(dir / "store");
  store.install(make_package(dir, "tok", "1.2.0"), unsigned_ok());
  store.install(make_package(dir, "cfg", "1.0.0", {dep("tok", "^1")}), unsigned_ok());
  const Manifest app =
      Package::open(make_package(dir, "app", "1.0.0",
                                 {dep("cfg", "^1"), dep("tok", "^1"), dep("extra", "^1", true)}))
          ->manifest();
  const std::vector<DependencyMount> plan = plan_dependency_mounts(store, app, "/mnt/models");
  ASSERT_EQ(plan.size(), 2u);  // tok once, though both ask for it; optional extra left out
  EXPECT_EQ(plan[0].name, "cfg");
  EXPECT_EQ(plan[0].mountpoint, "/mnt/models/cfg");
  EXPECT_EQ(plan[1].name, "tok");
  EXPECT_EQ(plan[1].package, store.resolve("tok", VersionReq::parse("^1"))->path);
  const Manifest needy =
      Package::open(make_package(dir, "needy", "1.0.0", {dep("missing", "^3")}))->manifest();
  try {
    plan_dependency_mounts(store, needy, "/mnt/models");
    ADD_FAILURE() << "a missing required dependency was planned";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("dependency missing ^3 is not in the store"),
              std::string::npos)
        << e.what();
  }
}

TEST(Store, PackageRefsParse) {
  EXPECT_EQ(parse_package_ref("llama@^1.2")->req, "^1.2");
  EXPECT_EQ(parse_package_ref("llama")->req, "*");
  EXPECT_FALSE(parse_package_ref("bad name@1"));
  EXPECT_FALSE(parse_package_ref("x@"));
}

}  // namespace
}  // namespace torshpkg
