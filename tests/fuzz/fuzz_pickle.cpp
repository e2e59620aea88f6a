// libFuzzer target: the restricted pickle reader and the torch tensor walk over what it rebuilt.
#include <cstddef>
#include <cstdint>
#include <span>

#include "pickle.h"
#include "torch_pickle.h"
#include "torshpkg/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    // The converter's own limits: its memory budget keeps any input under libFuzzer's
    // -malloc_limit_mb.
    const torshpkg::convert::PickleLimits limits;
    const auto pickle = torshpkg::convert::read_pickle(std::span(data, size), "fuzz", limits);
    const auto tensors = torshpkg::convert::find_torch_tensors(pickle.root, "fuzz");
    for (const auto& t : tensors) {
      if (t.shape.size() != t.stride.size()) __builtin_trap();
    }
  } catch (const torshpkg::Error&) {
  }
  return 0;
}
