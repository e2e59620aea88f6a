// Backing up a host's torshpkg state into one archive, and restoring it.
//
// The archive (a POSIX tar written with libarchive) holds store/blobs/sha256/<hex>.torshpkg and
// store/refs/<name>/<version> from the store, lineage/<journal file> and its .head, and
// trusted-keys/*.pub, plus SHA256SUMS ("<hex>  <path>" for every other member) and
// torshpkg-backup.json (format version, creation time, counts). It is written beside its
// destination and renamed into place when complete.
//
// A restore first extracts everything into a staging folder and checks it: only those member
// paths and regular files, every file listed in SHA256SUMS with a matching digest and nothing
// unlisted, every blob named by its own digest, every reference naming a blob that is there.
// Only then does it move anything into place, so a damaged backup is refused with nothing
// changed. Existing identical files are left alone; a reference, journal or key that differs is
// refused unless `overwrite`.
#pragma once

#include <cstdint>
#include <string>

namespace torshpkg::distribution {

struct BackupPaths {
  std::string store;         // the store root
  std::string journal;       // the lineage journal file (its .head beside it)
  std::string trusted_keys;  // the folder of .pub keys
};

struct BackupSummary {
  uint64_t blobs = 0;
  uint64_t refs = 0;
  uint64_t keys = 0;
  bool journal = false;
  uint64_t bytes = 0;
};

// Throws Error(kIo) when a file cannot be read or the archive written.
BackupSummary write_backup(const BackupPaths& paths, const std::string& out);

// Throws Error(kCorrupt) for a damaged or hostile archive (nothing restored),
// Error(kInvalidArgument) for a conflict without `overwrite` (nothing restored).
BackupSummary restore_backup(const std::string& in, const BackupPaths& paths, bool overwrite);

}  // namespace torshpkg::distribution
