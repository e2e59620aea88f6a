#include "crc32.h"

#include <libdeflate.h>
#include <zlib.h>

namespace torshpkg {

uint32_t crc32_of(std::span<const uint8_t> data, uint32_t crc) {
  // libdeflate's CRC-32 uses carry-less multiplication where the CPU has it: about three times
  // zlib's speed here, which a mount feels in the manifest's check (4.6 MB for 10,000 files).
  return libdeflate_crc32(crc, data.data(), data.size());
}

uint32_t combine_crc32(uint32_t crc1, uint32_t crc2, uint64_t len2) {
  return static_cast<uint32_t>(::crc32_combine64(crc1, crc2, static_cast<z_off64_t>(len2)));
}

}  // namespace torshpkg
