// Byte counts as people write them: "1048576", "64K", "256M", "1GiB" (case does not matter;
// K, M and G are powers of 1024, as are KB/KiB, MB/MiB and GB/GiB).
#pragma once

#include <cstdint>
#include <string_view>

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

// The bytes `text` names. Throws Error(kInvalidArgument) naming `what` (an option or config
// key) for anything else: no digits, an unknown unit, a count past 2^64 - 1.
uint64_t parse_byte_size(std::string_view text, std::string_view what);

}  // namespace torshpkg

#pragma GCC visibility pop
