// libFuzzer target: the ZIP reader for other tools' archives, and reading every member. Run
// under libFuzzer's -malloc_limit_mb: a member's declared size must never be allocated ahead
// of the bytes that really inflate.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "source_zip.h"
#include "torshpkg/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const torshpkg::convert::SourceZip zip(
        torshpkg::memory_source(std::vector<uint8_t>(data, data + size), "fuzz.zip"));
    for (const auto& e : zip.entries()) {
      try {
        const auto bytes = zip.read_all(e, 64u << 20);
        if (bytes.size() != e.size) __builtin_trap();
      } catch (const torshpkg::Error&) {
      }
    }
  } catch (const torshpkg::Error&) {
  }
  return 0;
}
