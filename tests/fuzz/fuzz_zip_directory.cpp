// libFuzzer target: the ZIP central directory and local header reader, and the quick scan for
// one record, which must agree with the directory whenever the directory is accepted.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "torshpkg/error.h"
#include "zip_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto source = torshpkg::memory_source(std::vector<uint8_t>(data, data + size), "fuzz.zip");
  try {
    const torshpkg::CentralDirectoryBytes cd = torshpkg::read_central_directory_bytes(*source);
    torshpkg::find_central_record(cd, "manifest.json", "fuzz.zip");  // on any directory
    const torshpkg::ZipDirectory dir = torshpkg::parse_central_directory(cd, "fuzz.zip");
    // The scan is linear: check the first records only, so a large directory stays fast.
    for (size_t i = 0; i < dir.entries.size() && i < 64; ++i) {
      const torshpkg::ZipEntry& e = dir.entries[i];
      const auto found = torshpkg::find_central_record(cd, e.name, "fuzz.zip");
      if (!found || found->local_header_offset != e.local_header_offset ||
          found->compressed_size != e.compressed_size ||
          found->uncompressed_size != e.uncompressed_size || found->crc32 != e.crc32 ||
          found->method != e.method || found->flags != e.flags) {
        __builtin_trap();  // an accepted directory whose record the scan misreads
      }
    }
    torshpkg::read_zip_directory(*source);
  } catch (const torshpkg::Error&) {
  }
  return 0;
}
