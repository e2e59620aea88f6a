// The tensors inside a pickle written by torch.save or torch.package, found by walking the
// values read_pickle rebuilt: calls of torch._utils._rebuild_tensor_v2/_v3 and
// _rebuild_parameter(_with_state) over storages named by persistent ids
// ('storage', <storage type>, key, location, numel).
//
// Tensors are named by their key path, as state_dict names them: dict keys and list indices
// joined by '.', with the _parameters, _buffers and _modules of a pickled module (an object
// whose BUILD state holds them) adding no component of their own. Anything else is left alone.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pickle.h"
#include "torshpkg/safetensors.h"

namespace torshpkg::convert {

// A torch scalar type as stored, and how it is written to safetensors.
struct TorchDtype {
  std::string torch_name;  // "float32", "bfloat16", "complex128", ...
  Dtype dtype = Dtype::kU8;
  unsigned element_size = 1;  // bytes per element in the storage
  // complex128 has no safetensors dtype: it is written as F64 with a last dimension of 2 (real,
  // imaginary), which is the same bytes.
  bool split_complex = false;
};

struct TorchTensorRef {
  std::string name;
  TorchDtype dtype;
  std::string storage_key;  // the storage's record name ("0", "1", ...)
  uint64_t storage_numel = 0;
  uint64_t storage_offset = 0;  // in elements
  std::vector<uint64_t> shape;
  std::vector<uint64_t> stride;  // in elements
};

// Every tensor reachable from `root`, in the order the walk meets them. A tensor reachable by
// two paths appears under both names. Throws Error(kCorrupt) for a malformed tensor or storage
// call and a name used twice, Error(kUnsupported) for quantized or sparse tensors and storage
// types it does not know, naming `file`.
std::vector<TorchTensorRef> find_torch_tensors(PickleRef root, const std::string& file);

// The torch dtype of a storage class name ("FloatStorage") or a dtype attribute ("float32");
// nullptr when unknown.
const TorchDtype* torch_dtype_of_storage(std::string_view storage_class);
const TorchDtype* torch_dtype_of_name(std::string_view dtype_name);

}  // namespace torshpkg::convert
