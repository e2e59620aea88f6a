// The libfuse3 low-level callbacks. Each request's userdata is the PackageFs being served.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <exception>

namespace torshpkg::fs {

// Every callback runs behind one noexcept trampoline: an exception it lets out becomes the
// request's error reply instead of unwinding through libfuse's C frames.
const fuse_lowlevel_ops& lowlevel_ops();

// The errno a request gets for an exception: EACCES for a wrong key, ENOENT for not found, ENOMEM
// when memory ran out, EIO for anything else (a chunk that fails its hash among them).
int errno_for(const std::exception_ptr& error) noexcept;

}  // namespace torshpkg::fs
