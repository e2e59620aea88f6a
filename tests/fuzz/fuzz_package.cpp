// libFuzzer target: opening a whole package (ZIP, manifest, entry set) and reading every file.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "torshpkg/error.h"
#include "torshpkg/package.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto pkg = torshpkg::Package::open(
        torshpkg::memory_source(std::vector<uint8_t>(data, data + size), "fuzz.torshpkg"));
    std::vector<uint8_t> buf(1 << 16);
    for (const torshpkg::FileNode& f : pkg->files()) {
      try {
        for (uint64_t at = 0; at < f.size && at < (1u << 22); at += buf.size())
          pkg->read(f, at, buf);
      } catch (const torshpkg::Error&) {
      }
    }
  } catch (const torshpkg::Error&) {
  }
  return 0;
}
