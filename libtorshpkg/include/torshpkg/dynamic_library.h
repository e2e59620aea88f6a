// Optional libraries loaded on first use (dlopen) instead of linked: linking one loads it, and
// everything it needs, into every process at start, for commands most of which never use it
// (libcurl, libarchive, libsystemd in the CLI). The handle stays open for the process.
#pragma once

#include <dlfcn.h>

#include <initializer_list>
#include <string>
#include <utility>

#include "torshpkg/error.h"

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

class DynamicLibrary {
 public:
  // Loads the first of `names` that loads; when none does, check() throws `missing` (say what
  // needs the library and which package to install).
  DynamicLibrary(std::initializer_list<const char*> names, std::string missing) {
    for (const char* name : names) {
      handle_ = ::dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (handle_ != nullptr) {
        name_ = name;
        return;
      }
    }
    error_ = std::move(missing);
  }

  // Points `fn` at `symbol`: null (and check() throws) when the library lacks it or did not
  // load.
  template <typename Fn>
  void bind(Fn*& fn, const char* symbol) {
    fn = handle_ == nullptr ? nullptr : reinterpret_cast<Fn*>(::dlsym(handle_, symbol));
    if (fn == nullptr && error_.empty()) error_ = name_ + " lacks " + symbol;
  }

  // Whether the library loaded and every bound symbol was found.
  bool usable() const { return error_.empty(); }
  // Throws Error(kUnsupported) saying what is missing unless usable().
  void check() const {
    if (!error_.empty()) throw Error(ErrorKind::kUnsupported, error_);
  }

 private:
  void* handle_ = nullptr;
  std::string name_;
  std::string error_;
};

}  // namespace torshpkg

#pragma GCC visibility pop
