#include "torshpkg/archive_import.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include "test_util.h"
#include "torshpkg/error.h"
#include "torshpkg/package.h"

namespace torshpkg {
namespace {

using testing::TempDir;

struct Member {
  std::string name;
  std::string data;
  mode_t type = AE_IFREG;
};

void write_tar(const std::string& path, const std::vector<Member>& members, bool zstd_filter) {
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (zstd_filter) archive_write_add_filter_zstd(a);
  ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK);
  for (const Member& m : members) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, m.name.c_str());
    archive_entry_set_filetype(e, m.type);
    archive_entry_set_perm(e, 0644);
    if (m.type == AE_IFLNK) archive_entry_set_symlink(e, "target");
    archive_entry_set_size(e, m.type == AE_IFREG ? static_cast<la_int64_t>(m.data.size()) : 0);
    archive_write_header(a, e);
    if (m.type == AE_IFREG) archive_write_data(a, m.data.data(), m.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

TEST(ArchiveImport, ImportsEveryRegularFileOfATarZst) {
  TempDir dir;
  write_tar(dir / "m.tar.zst",
            {{"./model/", "", AE_IFDIR},
             {"./model/config.json", "{}"},
             {"./model/w.bin", std::string(100000, 'w')}},
            true);
  PackageWriter w(testing::header("demo", "1.0.0"));
  EXPECT_EQ(add_archive(w, dir / "m.tar.zst", dir.path()), 2u);
  w.write(dir / "p.torshpkg");
  const auto pkg = Package::open(dir / "p.torshpkg");
  const FileNode* f = pkg->find("resources/model/w.bin");
  ASSERT_NE(f, nullptr);
  std::vector<uint8_t> buf(f->size);
  pkg->read(*f, 0, buf);
  EXPECT_EQ(std::string(buf.begin(), buf.end()), std::string(100000, 'w'));
  EXPECT_NE(pkg->find("resources/model/config.json"), nullptr);
}

TEST(ArchiveImport, RefusesSymlinksAndEscapingNames) {
  TempDir dir;
  write_tar(dir / "link.tar", {{"a", "x"}, {"l", "", AE_IFLNK}}, false);
  PackageWriter w(testing::header("demo", "1.0.0"));
  EXPECT_THROW(add_archive(w, dir / "link.tar", dir.path()), Error);
  write_tar(dir / "up.tar", {{"../evil", "x"}}, false);
  PackageWriter w2(testing::header("demo", "1.0.0"));
  EXPECT_THROW(add_archive(w2, dir / "up.tar", dir.path()), Error);
}

TEST(ArchiveImport, ReportsUnreadableArchives) {
  TempDir dir;
  testing::write_file(dir / "junk.tar", {1, 2, 3, 4, 5});
  PackageWriter w(testing::header("demo", "1.0.0"));
  try {
    add_archive(w, dir / "junk.tar", dir.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("junk.tar"), std::string::npos);
  }
}

}  // namespace
}  // namespace torshpkg
