// libFuzzer target: torshpkgd's config parser.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config.h"
#include "torshpkg/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto config = torshpkg::daemon::parse_config(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz.json");
    for (const auto& m : config.mounts) {
      // Whatever is accepted holds the parser's promises.
      if (m.package.empty() || m.package[0] != '/' || m.mountpoint.empty() ||
          m.mountpoint[0] != '/' || (!m.password_file.empty() && !m.key_file.empty())) {
        __builtin_trap();
      }
    }
  } catch (const torshpkg::Error&) {
  }
  return 0;
}
