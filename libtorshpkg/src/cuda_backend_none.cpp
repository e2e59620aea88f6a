// Stands in for cuda_backend.cpp in builds without the CUDA toolkit.
#include "load_backend.h"
#include "torshpkg/error.h"

namespace torshpkg {

namespace {
constexpr const char* kNoCuda =
    "this build of torshpkg has no CUDA support (build it where the CUDA toolkit is installed)";
}

bool cuda_built() {
  return false;
}

int cuda_device_count() {
  throw Error(ErrorKind::kUnsupported, kNoCuda);
}

std::unique_ptr<LoadBackend> make_cuda_backend(int device) {
  throw unsupported("cuda:" + std::to_string(device), kNoCuda);
}

}  // namespace torshpkg
