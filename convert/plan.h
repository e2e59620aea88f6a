// What converting one source produces, before anything is written: safetensors files with
// their tensors (each able to stream its bytes), and files of the source kept as they are.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "materialize.h"
#include "torshpkg/byte_source.h"
#include "torshpkg/manifest.h"
#include "torshpkg/safetensors.h"

namespace torshpkg::convert {

struct PlannedTensor {
  TensorSpec spec;
  // Streams exactly the bytes spec calls for, in order. Throws on damaged input.
  std::function<void(const ByteSink&)> produce;
};

struct WeightsFile {
  std::string path;  // under resources/, e.g. "model.safetensors"
  std::vector<PlannedTensor> tensors;
  std::map<std::string, std::string> metadata;
};

// A file of the source kept byte for byte: a range of a source (stored members, plain files) or
// bytes already in memory (inflated members).
struct KeptFile {
  std::string path;  // under resources/
  ResourceType type = ResourceType::kBinary;
  std::shared_ptr<const ByteSource> source;
  uint64_t offset = 0;
  uint64_t size = 0;
  std::optional<std::vector<uint8_t>> bytes;
  bool executable = false;  // the source file had an x bit
};

enum class SourceKind {
  kTorchCheckpoint,
  kTorchPackage,
  kNumpyArray,
  kNumpyArchive,
  kOnnx,
  kSafetensors,
  kHuggingFaceFolder,
};
std::string_view to_string(SourceKind kind);

struct Plan {
  SourceKind kind = SourceKind::kTorchCheckpoint;
  std::vector<WeightsFile> weights;
  std::vector<KeptFile> kept;
  // Callables a kept pickle references beyond rebuilding tensors ("member: module.name",
  // sorted): what torch.load would import and call. See kSafePickleGlobals.
  std::vector<std::string> unsafe_callables;
};

// Total tensors of a plan.
size_t tensor_count(const Plan& plan);

}  // namespace torshpkg::convert
