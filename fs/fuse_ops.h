// The libfuse3 low-level callbacks. Each request's userdata is the PackageFs being served.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

namespace torshpkg::fs {

const fuse_lowlevel_ops& lowlevel_ops();

}  // namespace torshpkg::fs
