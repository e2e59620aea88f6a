// libFuzzer target: the strict safetensors header reader.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "torshpkg/byte_source.h"
#include "torshpkg/error.h"
#include "torshpkg/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto source = torshpkg::memory_source(std::vector<uint8_t>(data, data + size), "fuzz");
  try {
    const auto header = torshpkg::read_safetensors_header(*source);
    // What is accepted tiles the file exactly.
    uint64_t at = 0;
    for (const auto& t : header.tensors) {
      if (t.begin != at || *torshpkg::tensor_bytes(t.dtype, t.shape) != t.size()) __builtin_trap();
      at = t.end;
    }
    if (header.data_start + at != size) __builtin_trap();
  } catch (const torshpkg::Error&) {
  }
  return 0;
}
