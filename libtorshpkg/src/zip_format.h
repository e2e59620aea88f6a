// The ZIP records this project reads and writes (APPNOTE.TXT): signatures, sizes, the flags and
// fields it accepts. Shared by zip_reader.cpp and zip_writer.cpp.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <cstdint>

namespace torshpkg::zip {

inline constexpr uint32_t kLocalSig = 0x04034b50;
inline constexpr uint32_t kCentralSig = 0x02014b50;
inline constexpr uint32_t kEocdSig = 0x06054b50;
inline constexpr uint32_t kZip64LocatorSig = 0x07064b50;
inline constexpr uint32_t kZip64EocdSig = 0x06064b50;
inline constexpr size_t kLocalSize = 30;
inline constexpr size_t kCentralSize = 46;
inline constexpr size_t kEocdSize = 22;
inline constexpr size_t kZip64LocatorSize = 20;
inline constexpr size_t kZip64EocdSize = 56;
inline constexpr uint16_t kZip64ExtraId = 0x0001;
inline constexpr uint16_t kAlignExtraId = 0xd935;
inline constexpr uint16_t kFlagUtf8 = 0x0800;
inline constexpr uint16_t kAllowedFlags = 0x0002 | 0x0004 | kFlagUtf8;
inline constexpr uint32_t k32 = 0xffffffff;
inline constexpr uint16_t k16 = 0xffff;
inline constexpr uint16_t kMadeByUnix = (3 << 8) | 63;
inline constexpr uint32_t kRegularFileAttrs = (S_IFREG | 0644u) << 16;

// "Version needed to extract" for an entry of `method`: 6.3 for zstd (93) and xz (95), else 4.5
// with ZIP64 records and 2.0 without.
inline uint16_t version_needed(uint16_t method, bool zip64) {
  if (method == 93 || method == 95) return 63;
  return zip64 ? 45 : 20;
}

}  // namespace torshpkg::zip
