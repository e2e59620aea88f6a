// libFuzzer target: reading and verifying a lineage journal (and its head file).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "torshpkg/error.h"
#include "torshpkg/lineage_journal.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The journal lives in a memory file; "PATH.head" does not exist, which verify reports.
  static const int fd = ::memfd_create("journal", MFD_CLOEXEC);
  if (fd < 0 || ::ftruncate(fd, 0) != 0 || ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) {
    return 0;
  }
  const torshpkg::LineageJournal journal("/proc/self/fd/" + std::to_string(fd));
  try {
    for (const auto& e : journal.read()) {
      if (e.hash.size() != 64 || e.line.size() > torshpkg::LineageJournal::kMaxLine) {
        __builtin_trap();
      }
    }
  } catch (const torshpkg::Error&) {
  }
  journal.verify();  // never throws: problems are returned
  return 0;
}
