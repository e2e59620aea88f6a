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

// How much memory a gather may hold; the defaults are what conversions use, tests shrink them.
struct GatherBudget {
  uint64_t span_bytes = 64u << 20;  // a view covering at most this much storage reads it at once
  size_t chunk_bytes = 32u << 20;   // otherwise: output produced this much at a time
  size_t read_bytes = 1u << 20;     // from reads of at most this much (or one element)
};

// Streams the view's elements in row-major order to `sink`, in pieces of at most a few MiB.
// A row-major contiguous view is read piece by piece. Any other view whose storage span fits
// budget.span_bytes reads that span once and gathers from it; a larger one is produced a chunk
// of output at a time, each chunk a box of the index space read along its dimension of smallest
// stride, so memory stays within chunk_bytes + read_bytes whatever the view's size.
void stream_view(const StridedView& view, const RangeReader& read, const ByteSink& sink,
                 const std::string& what, const GatherBudget& budget = {});

}  // namespace torshpkg::convert
