// libFuzzer target: the strict manifest parser.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "torshpkg/error.h"
#include "torshpkg/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const torshpkg::Manifest m = torshpkg::parse_manifest(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.torshpkg");
    // Whatever parses must serialize and parse again to the same bytes.
    const std::string once = torshpkg::serialize_manifest(m);
    if (torshpkg::serialize_manifest(torshpkg::parse_manifest(once, "again")) != once)
      __builtin_trap();
  } catch (const torshpkg::Error&) {
  }
  return 0;
}
