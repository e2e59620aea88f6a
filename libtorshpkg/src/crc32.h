// CRC-32 (ISO-HDLC, as ZIP uses it), and the CRC of two pieces combined.
#pragma once

#include <cstdint>
#include <span>

namespace torshpkg {

uint32_t crc32_of(std::span<const uint8_t> data, uint32_t crc = 0);
uint32_t combine_crc32(uint32_t crc1, uint32_t crc2, uint64_t len2);

}  // namespace torshpkg
