// Converting models made by other tools into packages: torch.save checkpoints, torch.package
// archives, NumPy .npy/.npz, ONNX models, safetensors files and Hugging Face model folders.
// Weights come out as safetensors with every byte as the producer wrote it (row-major,
// little-endian); files that are not weights are kept byte for byte. Nothing is imported or run.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "plan.h"
#include "torshpkg/package_writer.h"

namespace torshpkg::convert {

// What the source at `path` is (a file by its content, a folder as a Hugging Face model), and
// what converting it would produce. Throws Error(kUnsupported) for anything else, naming what
// was found; Error(kCorrupt) for a damaged source.
Plan plan_conversion(const std::string& path);

struct ConvertResult {
  SourceKind kind = SourceKind::kTorchCheckpoint;
  size_t tensors = 0;
  Manifest manifest;
};

// Converts `source` into the package `out`: the weights files are written to a temporary folder
// beside `out` and removed afterwards. `header` gives name, version and the rest; a
// ConvertedFrom lineage record is added with the source's name, size and SHA-256 (a folder's
// digest is that of its "sha256  path" listing, sorted), the converter's version and the source
// kind. `out` is replaced only on success.
//
// A source whose kept pickles reference callables beyond rebuilding tensors (a whole
// nn.Module, torch.package code, os.system) is refused with Error(kUnsupported) listing them,
// unless `keep_unsafe_pickles`; then the list goes into the package's metadata as
// "torshpkg.unsafe_pickle_callables" (one per line), where info and the mount show it.
ConvertResult convert_to_package(const std::string& source, const std::string& out, Manifest header,
                                 const WriteOptions& options, bool keep_unsafe_pickles = false);

// A tensor's identity for comparisons.
struct TensorDigest {
  Dtype dtype = Dtype::kU8;
  std::vector<uint64_t> shape;
  std::string sha256;
};
// Tensors keyed by name; a name found in two weights files is keyed "<file>:<name>".
using TensorDigests = std::map<std::string, TensorDigest>;

// The tensors a conversion of `plan` writes (and of the safetensors files it keeps), digested.
TensorDigests digests_of_plan(const Plan& plan);
// The tensors of every .safetensors resource of a package.
TensorDigests digests_of_package(const Package& package);

}  // namespace torshpkg::convert
