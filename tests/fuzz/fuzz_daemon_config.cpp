// libFuzzer target: torshpkgd's config parser.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config.h"
#include "torshpkg/error.h"
#include "torshpkg/store.h"

namespace {

// A package is an absolute path, or (with the store set) NAME@REQ or a remote source.
bool valid_package(const torshpkg::daemon::MountEntry& m) {
  if (!m.package.empty() && m.package[0] == '/') return true;
  if (m.store.empty() || m.store[0] != '/') return false;
  const std::string& p = m.package;
  return p.starts_with("oci://") || p.starts_with("https://") || p.starts_with("http://") ||
         torshpkg::parse_package_ref(p).has_value();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto config = torshpkg::daemon::parse_config(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz.json");
    for (const auto& m : config.mounts) {
      // Whatever is accepted holds the parser's promises.
      if (!valid_package(m) || m.mountpoint.empty() || m.mountpoint[0] != '/' ||
          (!m.password_file.empty() && !m.key_file.empty()) ||
          m.kernel_read_ahead_kb > torshpkg::fs::kMaxKernelReadAheadKb) {
        __builtin_trap();
      }
    }
  } catch (const torshpkg::Error&) {
  }
  return 0;
}
