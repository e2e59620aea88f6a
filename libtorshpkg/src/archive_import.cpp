#include "torshpkg/archive_import.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/libarchive.h"
#include "zip_names.h"

namespace torshpkg {
namespace {

// Strips a leading "./" and trailing '/' that tar writers commonly add.
std::string clean_archive_path(std::string path) {
  while (path.starts_with("./")) path.erase(0, 2);
  while (!path.empty() && path.back() == '/') path.pop_back();
  return path;
}

}  // namespace

size_t add_archive(PackageWriter& writer, const std::string& archive, const std::string& spool_dir,
                   const std::string& prefix) {
  const la::Api& lib = la::api();
  std::unique_ptr<struct archive, decltype(lib.archive_read_free)> a(lib.archive_read_new(),
                                                                     lib.archive_read_free);
  la::archive_read_support_filter_all(a.get());
  la::archive_read_support_format_all(a.get());
  if (la::archive_read_open_filename(a.get(), archive.c_str(), 1 << 20) != ARCHIVE_OK) {
    throw Error(ErrorKind::kInvalidArgument,
                archive + ": cannot read archive: " + la::archive_error_string(a.get()));
  }
  std::string spool_path = spool_dir + "/.torshpkg-import-XXXXXX";
  UniqueFd spool(::mkstemp(spool_path.data()));
  if (!spool) throw io_error(spool_dir, "cannot create temporary file", errno);
  ::unlink(spool_path.c_str());

  struct Pending {
    std::string path;
    uint64_t offset;
    uint64_t size;
  };
  std::vector<Pending> pending;
  uint64_t spooled = 0;
  std::vector<uint8_t> buf(1 << 20);
  for (;;) {
    struct archive_entry* entry = nullptr;
    const int rc = la::archive_read_next_header(a.get(), &entry);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      throw Error(ErrorKind::kInvalidArgument, archive + ": " + la::archive_error_string(a.get()));
    }
    const char* raw_name = la::archive_entry_pathname_utf8(entry);
    if (raw_name == nullptr) raw_name = la::archive_entry_pathname(entry);
    const std::string name = clean_archive_path(raw_name ? raw_name : "");
    const mode_t type = la::archive_entry_filetype(entry);
    if (type == AE_IFDIR) continue;
    if (type != AE_IFREG || la::archive_entry_hardlink(entry) != nullptr) {
      throw invalid_argument(archive + ": " + name +
                             ": only regular files can be imported (symlink, hard link or device)");
    }
    const std::string path = prefix.empty() ? name : prefix + "/" + name;
    if (!is_normalized_path(path)) {
      throw invalid_argument(archive + ": unsafe or invalid member name \"" + name + "\"");
    }
    const uint64_t start = spooled;
    for (;;) {
      const la_ssize_t n = la::archive_read_data(a.get(), buf.data(), buf.size());
      if (n < 0)
        throw Error(ErrorKind::kInvalidArgument,
                    archive + ": " + la::archive_error_string(a.get()));
      if (n == 0) break;
      write_all(spool.get(), std::span(buf.data(), static_cast<size_t>(n)), spool_dir);
      spooled += static_cast<uint64_t>(n);
    }
    pending.push_back({path, start, spooled - start});
  }
  if (pending.empty()) return 0;
  auto source = fd_source(std::move(spool), spooled, archive);
  for (const Pending& p : pending) {
    ResourceInput in;
    in.path = p.path;
    in.source = source;
    in.offset = p.offset;
    in.size = p.size;
    writer.add_resource(std::move(in));
  }
  return pending.size();
}

}  // namespace torshpkg
