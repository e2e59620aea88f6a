// libFuzzer target: the ONNX protobuf reader and its initializers' bytes.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "onnx_source.h"
#include "torshpkg/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto plan = torshpkg::convert::plan_onnx(
        torshpkg::memory_source(std::vector<uint8_t>(data, data + size), "fuzz.onnx"), "model.onnx",
        "/nonexistent-fuzz-dir");
    for (const auto& t : plan.weights[0].tensors) {
      uint64_t produced = 0;
      t.produce([&](std::span<const uint8_t> b) { produced += b.size(); });
      if (produced != *torshpkg::tensor_bytes(t.spec.dtype, t.spec.shape)) __builtin_trap();
    }
  } catch (const torshpkg::Error&) {
  }
  return 0;
}
