// The host backend: one anonymous mapping (page aligned, transparent huge pages where the
// kernel offers them); pieces are read straight into their place.
#include <sys/mman.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "load_backend.h"
#include "torshpkg/error.h"

namespace torshpkg {
namespace {

class HostWorker final : public LoadWorker {
 public:
  explicit HostWorker(uint8_t* block) : block_(block) {}
  void put(uint64_t dest_offset, size_t length, const PieceReader& read,
           StageTimes& times) override {
    const auto start = std::chrono::steady_clock::now();
    read(std::span(block_ + dest_offset, length));
    times.read += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  void finish(StageTimes&) override {}

 private:
  uint8_t* block_;
};

class HostBackend final : public LoadBackend {
 public:
  ~HostBackend() override {
    if (block_ != nullptr) ::munmap(block_, bytes_);
  }
  void allocate(uint64_t bytes) override {
    if (bytes == 0) return;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      throw io_error("load", "cannot allocate " + std::to_string(bytes) + " bytes of host memory",
                     errno);
    }
    ::madvise(p, bytes, MADV_HUGEPAGE);
    block_ = static_cast<uint8_t*>(p);
    bytes_ = bytes;
  }
  void* data() const override { return block_; }
  std::unique_ptr<LoadWorker> make_worker(size_t, unsigned) override {
    return std::make_unique<HostWorker>(block_);
  }
  void copy_to_host(uint64_t offset, std::span<uint8_t> out) const override {
    std::memcpy(out.data(), block_ + offset, out.size());
  }

 private:
  uint8_t* block_ = nullptr;
  uint64_t bytes_ = 0;
};

}  // namespace

std::unique_ptr<LoadBackend> make_host_backend() {
  return std::make_unique<HostBackend>();
}

}  // namespace torshpkg
