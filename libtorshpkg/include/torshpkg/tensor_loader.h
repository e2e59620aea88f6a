// Loading every tensor of a safetensors file into one block of memory, on the host or on a CUDA
// device.
//
// The input is any ByteSource holding the whole file: a plain file (also one inside a mounted
// package) or a package's resource (package_file_source, in package.h), whose chunks are
// verified and decoded as they stream in. The loader checks the header (read_safetensors_header),
// allocates one block for the data buffer, and has `threads` reader threads take pieces of the
// buffer in turn:
//
//   host  the piece is read straight into its place in aligned host memory.
//   cuda  the piece is read into one of the thread's pinned staging buffers, copied to the device
//         with cudaMemcpyAsync on the thread's own stream, and the buffer is reused only after
//         that copy's event has completed. Every thread calls cudaSetDevice first.
//
// Pieces start and end on multiples of piece_bytes in file offsets, rounded to the source's
// preferred read size, so that a package resource is decoded in whole chunks. Tensors are views
// into the block at their data offsets. The CUDA backend exists only in builds made with the
// CUDA toolkit (cuda_built()); asking for it elsewhere, or when no device is visible, throws
// Error(kUnsupported) saying which.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "torshpkg/byte_source.h"
#include "torshpkg/package.h"
#include "torshpkg/safetensors.h"

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

enum class LoadDevice { kHost, kCuda };

struct LoadTarget {
  LoadDevice device = LoadDevice::kHost;
  int index = 0;  // the CUDA device ordinal
};

// "cpu", "cuda" (device 0) or "cuda:N". Throws Error(kInvalidArgument).
LoadTarget parse_load_target(std::string_view text);
// The spelling parse_load_target accepts: "cpu", "cuda:0".
std::string to_string(const LoadTarget& target);

struct LoadOptions {
  LoadTarget target;
  unsigned threads = 4;             // reader threads (at least 1; never more than pieces)
  size_t piece_bytes = 8u << 20;    // bytes per read, and the size of each staging buffer
  unsigned buffers_per_thread = 2;  // pinned staging buffers per reader thread (cuda)
};

// Where the time of one load went. Staging, read, copy and wait times are summed over the
// reader threads, so with several threads they can exceed `seconds`.
struct LoadStats {
  uint64_t bytes = 0;          // the data buffer's size
  double seconds = 0;          // wall time of the load: header, allocation, reads, copies
  double init_seconds = 0;     // creating the CUDA context first (once per process; not in
                               // `seconds`, as a serving process has its context already)
  double setup_seconds = 0;    // header and block allocation (wall)
  double staging_seconds = 0;  // allocating the reader threads' pinned staging buffers (cuda)
  double read_seconds = 0;     // in the source's read_at
  double copy_seconds = 0;     // issuing host-to-device copies (cuda)
  double wait_seconds = 0;     // waiting for a staging buffer's copy, and the final sync (cuda)
  unsigned threads = 0;        // reader threads used
  size_t piece_bytes = 0;      // piece size used
  uint64_t pieces = 0;
  double gigabytes_per_second() const { return seconds > 0 ? double(bytes) / seconds / 1e9 : 0; }
};

class LoadBackend;

// The tensors of one file, loaded into one allocation that lives as long as this object.
// Immutable after load; its methods may be called from many threads at once.
class LoadedTensors {
 public:
  LoadedTensors(SafetensorsHeader header, LoadTarget target, std::unique_ptr<LoadBackend> backend,
                LoadStats stats);
  ~LoadedTensors();
  LoadedTensors(const LoadedTensors&) = delete;
  LoadedTensors& operator=(const LoadedTensors&) = delete;

  const SafetensorsHeader& header() const { return header_; }
  LoadTarget target() const { return target_; }
  const LoadStats& stats() const { return stats_; }

  // The data buffer's address in host memory, or in the device's memory for cuda (a device
  // pointer: never dereference it on the host). Tensor t lives at data() + t.begin. Null for a
  // file without data.
  void* data() const;
  // Copies `out.size()` bytes of tensor `t`, starting `offset` bytes into it, into host memory
  // (from the device for cuda). Throws Error(kInvalidArgument) past the tensor's end.
  void copy_to_host(const TensorInfo& t, uint64_t offset, std::span<uint8_t> out) const;
  // Hex SHA-256 of a tensor's bytes as loaded (copied back from the device for cuda).
  std::string sha256(const TensorInfo& t) const;

 private:
  SafetensorsHeader header_;
  LoadTarget target_;
  std::unique_ptr<LoadBackend> backend_;
  LoadStats stats_;
};

// Loads every tensor of the safetensors file `source` holds. Throws Error(kCorrupt) for a bad
// header (as read_safetensors_header) or a failing read (a damaged chunk of a package), the
// source's errors for I/O, Error(kUnsupported) for cuda without CUDA support or device,
// Error(kIo) when the CUDA runtime fails (allocation, copies), Error(kInvalidArgument) for
// options out of range. A failed load frees everything it allocated.
std::unique_ptr<LoadedTensors> load_tensors(const ByteSource& source, const LoadOptions& options);

// Whether this build has the CUDA backend.
bool cuda_built();
// The number of CUDA devices visible, at least one. Throws Error(kUnsupported) saying why there
// is none (no CUDA support in this build, no driver, no device).
int cuda_device_count();

}  // namespace torshpkg

#pragma GCC visibility pop
