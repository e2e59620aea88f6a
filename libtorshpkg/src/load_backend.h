// Where a tensor load puts its bytes: the host or a CUDA device (see torshpkg/tensor_loader.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "torshpkg/tensor_loader.h"

namespace torshpkg {

// Stage times of one reader thread, in seconds.
struct StageTimes {
  double staging = 0;
  double read = 0;
  double copy = 0;
  double wait = 0;
};

// Fills a buffer with the source bytes of the piece being placed (a read_at on the source).
using PieceReader = std::function<void(std::span<uint8_t>)>;

// One reader thread's means of placing pieces. Created, used and destroyed by that one thread.
class LoadWorker {
 public:
  virtual ~LoadWorker() = default;
  // Places `length` bytes, produced by `read`, at `dest_offset` of the backend's block. The
  // bytes may still be in flight when this returns (cuda); finish() waits for them.
  virtual void put(uint64_t dest_offset, size_t length, const PieceReader& read,
                   StageTimes& times) = 0;
  // Waits until every piece this worker placed is in the block. Called once, last.
  virtual void finish(StageTimes& times) = 0;
};

// One block of memory for one load. allocate() runs once before any worker exists; workers are
// made and used from the reader threads at once; copy_to_host may be called from any thread
// after the load.
class LoadBackend {
 public:
  virtual ~LoadBackend() = default;
  virtual void allocate(uint64_t bytes) = 0;
  virtual void* data() const = 0;
  // A worker for the calling thread; `piece_bytes` is the largest piece it will be given.
  virtual std::unique_ptr<LoadWorker> make_worker(size_t piece_bytes, unsigned buffers) = 0;
  virtual void copy_to_host(uint64_t offset, std::span<uint8_t> out) const = 0;
};

std::unique_ptr<LoadBackend> make_host_backend();
// Creates the device's CUDA context (so that its cost stays out of the load's time). Throws
// Error(kUnsupported) when this build has no CUDA or the device is not visible.
std::unique_ptr<LoadBackend> make_cuda_backend(int device);

}  // namespace torshpkg
