// libFuzzer target: the ZIP central directory and local header reader.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "torshpkg/error.h"
#include "zip_archive.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto source = torshpkg::memory_source(std::vector<uint8_t>(data, data + size), "fuzz.zip");
  try {
    torshpkg::read_zip_directory(*source);
  } catch (const torshpkg::Error&) {
  }
  return 0;
}
