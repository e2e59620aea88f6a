// libFuzzer target: the .npy header parser, and streaming the array it describes.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "numpy_sources.h"
#include "torshpkg/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto read = [&](uint64_t offset, std::span<uint8_t> out) {
    if (offset > size || out.size() > size - offset) throw torshpkg::corrupt("fuzz", "past end");
    std::copy_n(data + offset, out.size(), out.begin());
  };
  try {
    const auto h = torshpkg::convert::read_npy_header(read, size, "fuzz");
    if (h.data_offset + h.data_bytes != size) __builtin_trap();
    const auto plan = torshpkg::convert::plan_npy(
        torshpkg::memory_source(std::vector<uint8_t>(data, data + size), "fuzz.npy"), "a");
    uint64_t produced = 0;
    plan.weights[0].tensors[0].produce([&](std::span<const uint8_t> b) { produced += b.size(); });
    if (produced != h.data_bytes) __builtin_trap();
  } catch (const torshpkg::Error&) {
  }
  return 0;
}
