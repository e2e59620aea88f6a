// torch.save checkpoints and torch.package archives (both ZIP archives of pickles and storages).
#pragma once

#include <memory>
#include <string>

#include "plan.h"
#include "source_zip.h"

namespace torshpkg::convert {

// torch.save's format since PyTorch 1.6: <archive>/data.pkl, <archive>/data/<key> storages,
// <archive>/version, ... Every tensor of data.pkl goes to model.safetensors, named by its key
// path; every other member (data.pkl among them) is kept under source/.
bool is_torch_checkpoint(const SourceZip& zip);
Plan plan_torch_checkpoint(std::shared_ptr<const SourceZip> zip);

// torch.package: <package>/.data/version, <package>/.data/<key>.storage, pickles, interned
// source, resources and .data/extern_modules. Each pickle holding tensors gets a safetensors
// file beside it (<pickle path without .pkl>.safetensors); every member but the storages is kept
// byte for byte under torch_package/.
bool is_torch_package(const SourceZip& zip);
Plan plan_torch_package(std::shared_ptr<const SourceZip> zip);

}  // namespace torshpkg::convert
