// The CUDA backend: one cudaMalloc per load; each reader thread owns a stream and a ring of
// pinned staging buffers, each with an event recorded after its copy. A buffer is refilled only
// once its event has completed, so reads into one buffer overlap the copy of the previous one.
// Built only when meson finds the CUDA toolkit; the runtime is linked statically, so the binary
// needs only the driver.
#include <cuda_runtime_api.h>

#include <chrono>
#include <string>
#include <vector>

#include "load_backend.h"
#include "torshpkg/error.h"

namespace torshpkg {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Error cuda_error(const std::string& what, cudaError_t err) {
  return Error(ErrorKind::kIo, "cuda: " + what + ": " + cudaGetErrorString(err));
}

void check(cudaError_t err, const std::string& what) {
  if (err != cudaSuccess) throw cuda_error(what, err);
}

// A pinned host buffer and the event that marks the end of the last copy out of it.
struct StagingSlot {
  void* buffer = nullptr;
  cudaEvent_t event = nullptr;
  bool in_flight = false;
};

class CudaWorker final : public LoadWorker {
 public:
  CudaWorker(int device, uint8_t* block, size_t piece_bytes, unsigned buffers) : block_(block) {
    check(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    slots_.resize(buffers);
    for (StagingSlot& s : slots_) {
      check(cudaHostAlloc(&s.buffer, piece_bytes, cudaHostAllocDefault),
            "cudaHostAlloc of " + std::to_string(piece_bytes) + " pinned bytes");
      check(cudaEventCreateWithFlags(&s.event, cudaEventDisableTiming), "cudaEventCreate");
    }
  }

  ~CudaWorker() override {
    // Nothing may be freed while a copy reads from it; errors here have nowhere to go.
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    for (StagingSlot& s : slots_) {
      if (s.event != nullptr) cudaEventDestroy(s.event);
      if (s.buffer != nullptr) cudaFreeHost(s.buffer);
    }
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  void put(uint64_t dest_offset, size_t length, const PieceReader& read,
           StageTimes& times) override {
    StagingSlot& s = slots_[next_slot_];
    next_slot_ = (next_slot_ + 1) % slots_.size();
    Clock::time_point t = Clock::now();
    if (s.in_flight) {
      check(cudaEventSynchronize(s.event), "waiting for a host-to-device copy");
      s.in_flight = false;
      times.wait += seconds_since(t);
      t = Clock::now();
    }
    read(std::span(static_cast<uint8_t*>(s.buffer), length));
    times.read += seconds_since(t);
    t = Clock::now();
    check(cudaMemcpyAsync(block_ + dest_offset, s.buffer, length, cudaMemcpyHostToDevice, stream_),
          "cudaMemcpyAsync of " + std::to_string(length) + " bytes");
    check(cudaEventRecord(s.event, stream_), "cudaEventRecord");
    s.in_flight = true;
    times.copy += seconds_since(t);
  }

  void finish(StageTimes& times) override {
    const Clock::time_point t = Clock::now();
    check(cudaStreamSynchronize(stream_), "waiting for the last host-to-device copies");
    for (StagingSlot& s : slots_) s.in_flight = false;
    times.wait += seconds_since(t);
  }

 private:
  uint8_t* block_;
  cudaStream_t stream_ = nullptr;
  std::vector<StagingSlot> slots_;
  size_t next_slot_ = 0;
};

class CudaBackend final : public LoadBackend {
 public:
  // Creates the device's primary context now (cudaFree(nullptr) is the idiom for it).
  explicit CudaBackend(int device) : device_(device) {
    check(cudaSetDevice(device_), "cudaSetDevice(" + std::to_string(device_) + ")");
    check(cudaFree(nullptr), "creating the CUDA context of device " + std::to_string(device_));
  }
  ~CudaBackend() override {
    if (block_ != nullptr) {
      cudaSetDevice(device_);
      cudaFree(block_);
    }
  }
  void allocate(uint64_t bytes) override {
    check(cudaSetDevice(device_), "cudaSetDevice(" + std::to_string(device_) + ")");
    if (bytes == 0) return;
    void* p = nullptr;
    check(cudaMalloc(&p, bytes),
          "cudaMalloc of " + std::to_string(bytes) + " bytes on device " + std::to_string(device_));
    block_ = static_cast<uint8_t*>(p);
  }
  void* data() const override { return block_; }
  std::unique_ptr<LoadWorker> make_worker(size_t piece_bytes, unsigned buffers) override {
    return std::make_unique<CudaWorker>(device_, block_, piece_bytes, buffers);
  }
  void copy_to_host(uint64_t offset, std::span<uint8_t> out) const override {
    check(cudaSetDevice(device_), "cudaSetDevice(" + std::to_string(device_) + ")");
    check(cudaMemcpy(out.data(), block_ + offset, out.size(), cudaMemcpyDeviceToHost),
          "cudaMemcpy of " + std::to_string(out.size()) + " bytes to the host");
  }

 private:
  int device_;
  uint8_t* block_ = nullptr;
};

}  // namespace

bool cuda_built() {
  return true;
}

int cuda_device_count() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    throw Error(ErrorKind::kUnsupported,
                std::string("no CUDA device visible: ") + cudaGetErrorString(err));
  }
  if (count == 0) throw Error(ErrorKind::kUnsupported, "no CUDA device visible");
  return count;
}

std::unique_ptr<LoadBackend> make_cuda_backend(int device) {
  int count = 0;
  try {
    count = cuda_device_count();
  } catch (const Error& e) {
    throw unsupported("cuda:" + std::to_string(device), e.what());
  }
  if (device >= count) {
    throw invalid_argument("cuda:" + std::to_string(device) + ": only " + std::to_string(count) +
                           " CUDA device(s) visible");
  }
  return std::make_unique<CudaBackend>(device);
}

}  // namespace torshpkg
