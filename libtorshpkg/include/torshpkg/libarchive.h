// libarchive, loaded when a command first reads or writes an archive (importing a tar or zip,
// backups). Linking it would load it and what it needs (libxml2, ICU, libacl, libbz2) into every
// process: cold, that is some 40 ms more at each start of the CLI and the daemon, most of whose
// commands never touch an archive. Callers use the functions below, named as in <archive.h>.
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <utility>

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg::la {

// clang-format off
#define TORSHPKG_LIBARCHIVE_FUNCTIONS(X) \
  X(archive_entry_filetype) \
  X(archive_entry_free) \
  X(archive_entry_hardlink) \
  X(archive_entry_new) \
  X(archive_entry_pathname) \
  X(archive_entry_pathname_utf8) \
  X(archive_entry_set_filetype) \
  X(archive_entry_set_mtime) \
  X(archive_entry_set_pathname) \
  X(archive_entry_set_perm) \
  X(archive_entry_set_size) \
  X(archive_error_string) \
  X(archive_read_data) \
  X(archive_read_data_block) \
  X(archive_read_free) \
  X(archive_read_new) \
  X(archive_read_next_header) \
  X(archive_read_open_filename) \
  X(archive_read_support_filter_all) \
  X(archive_read_support_format_all) \
  X(archive_read_support_format_tar) \
  X(archive_write_close) \
  X(archive_write_data) \
  X(archive_write_free) \
  X(archive_write_header) \
  X(archive_write_new) \
  X(archive_write_open_filename) \
  X(archive_write_set_format_pax_restricted)
// clang-format on

struct Api {
#define TORSHPKG_LIBARCHIVE_POINTER(name) decltype(&::name) name = nullptr;
  TORSHPKG_LIBARCHIVE_FUNCTIONS(TORSHPKG_LIBARCHIVE_POINTER)
#undef TORSHPKG_LIBARCHIVE_POINTER
};

// The loaded library. Throws Error(kUnsupported), naming the package to install, when it cannot
// be loaded.
const Api& api();

#define TORSHPKG_LIBARCHIVE_CALL(name)              \
  template <typename... Args>                       \
  auto name(Args&&... args) {                       \
    return api().name(std::forward<Args>(args)...); \
  }
TORSHPKG_LIBARCHIVE_FUNCTIONS(TORSHPKG_LIBARCHIVE_CALL)
#undef TORSHPKG_LIBARCHIVE_CALL

}  // namespace torshpkg::la

#pragma GCC visibility pop
