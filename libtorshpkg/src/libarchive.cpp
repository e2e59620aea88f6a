#include "torshpkg/libarchive.h"

#include "torshpkg/dynamic_library.h"
#include "torshpkg/error.h"

namespace torshpkg::la {

const Api& api() {
  static DynamicLibrary lib({"libarchive.so.13"},
                            "archives need libarchive (libarchive.so.13), which cannot be "
                            "loaded: install libarchive13");
  static const Api loaded = [] {
    Api api{};
#define TORSHPKG_LIBARCHIVE_BIND(name) lib.bind(api.name, #name);
    TORSHPKG_LIBARCHIVE_FUNCTIONS(TORSHPKG_LIBARCHIVE_BIND)
#undef TORSHPKG_LIBARCHIVE_BIND
    return api;
  }();
  lib.check();
  return loaded;
}

}  // namespace torshpkg::la
