// NumPy .npy files and .npz archives (stored or deflated members).
#pragma once

#include <memory>
#include <string>

#include "plan.h"
#include "source_zip.h"

namespace torshpkg::convert {

// What a .npy header says: dtype, shape, order, and where the data starts.
struct NpyHeader {
  Dtype dtype = Dtype::kU8;
  unsigned item_size = 1;
  bool split_complex = false;  // complex128: F64 with a last dimension of 2
  bool big_endian = false;
  bool fortran_order = false;
  std::vector<uint64_t> shape;
  uint64_t data_offset = 0;
  uint64_t data_bytes = 0;
};

// Parses the header at the start of `source` (versions 1 to 3; the header dict is read by a
// parser of the few literals it may hold). The data must fill the rest exactly. Throws
// Error(kCorrupt) naming `what`, Error(kUnsupported) for dtypes safetensors cannot hold
// (objects, strings, records, long doubles, datetimes).
NpyHeader read_npy_header(const std::function<void(uint64_t, std::span<uint8_t>)>& read,
                          uint64_t size, const std::string& what);

// One array named by the file's stem, in model.safetensors.
Plan plan_npy(std::shared_ptr<const ByteSource> source, const std::string& stem);
// Each member x.npy (or a/b.npy) becomes the tensor "x" ("a/b").
bool is_npz(const SourceZip& zip);
Plan plan_npz(std::shared_ptr<const SourceZip> zip);

}  // namespace torshpkg::convert
