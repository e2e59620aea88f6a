// Turning a strided view of stored bytes (a torch storage, a Fortran-ordered or big-endian NumPy
// array) into the row-major little-endian bytes safetensors holds, streamed in pieces.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace torshpkg::convert {

// Receives the bytes of a tensor in order, in pieces.
using ByteSink = std::function<void(std::span<const uint8_t>)>;
// Fills `out` with the stored bytes at `offset` (of the storage or array data).
using RangeReader = std::function<void(uint64_t offset, std::span<uint8_t> out)>;

struct StridedView {
  unsigned element_size = 1;
  uint64_t storage_elements = 0;  // elements the storage holds
  uint64_t offset = 0;            // of the view's first element, in elements
  std::vector<uint64_t> shape;
  std::vector<uint64_t> stride;  // in elements
  bool byte_swap = false;        // stored big-endian: swap each element (or each half of a
  unsigned swap_unit = 0;        // complex one: swap_unit bytes; 0 means element_size)
};

// Elements of a shape; nullopt on overflow.
std::optional<uint64_t> element_count(std::span<const uint64_t> shape);

// Checks that the view stays inside its storage (overflow-checked); throws Error(kCorrupt)
// naming `what` otherwise.
void check_view(const StridedView& view, const std::string& what);

// Whether the view's elements lie in row-major order: stream_view then reads its storage front to
// back, in pieces.
bool is_row_major(const StridedView& view);

// Streams the view's elements in row-major order to `sink`, in pieces of at most a few MiB.
// A row-major contiguous view is read piece by piece; any other view reads the storage span it
// covers once (its size is bounded by the storage) and gathers from it.
void stream_view(const StridedView& view, const RangeReader& read, const ByteSink& sink,
                 const std::string& what);

}  // namespace torshpkg::convert
