// Naming packages by file or by NAME@REQ in the local store.
#pragma once

#include <string>

#include "torshpkg/store.h"

namespace torshpkg::cli {

// `arg` itself when it is an existing file; else, when it reads as NAME@REQ (or NAME), the
// highest matching version in `store`. Throws Error(kNotFound) saying which when neither.
std::string locate_package(const Store& store, const std::string& arg);

}  // namespace torshpkg::cli
