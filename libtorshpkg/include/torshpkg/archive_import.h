// Importing the files of an existing archive (tar, tar.gz, tar.zst, tar.xz, zip, ...) as
// resources, through libarchive.
#pragma once

#include <string>

#include "torshpkg/package_writer.h"

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

// Adds every regular file of `archive` as a resource named by its path inside the archive
// (prefixed by `prefix` when not empty). The data is spooled to an unlinked temporary file in
// `spool_dir`, which lives as long as the writer. Directories are skipped; symlinks, hard links,
// devices and unsafe names are refused with Error(kInvalidArgument). Returns the count added.
size_t add_archive(PackageWriter& writer, const std::string& archive, const std::string& spool_dir,
                   const std::string& prefix = "");

}  // namespace torshpkg

#pragma GCC visibility pop
