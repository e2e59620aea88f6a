#include "libarchive_api.h"

#include <dlfcn.h>

#include <string>
#include <type_traits>

#include "torshpkg/error.h"

namespace torshpkg::la {

namespace {
constexpr const char* kLibrary = "libarchive.so.13";
}  // namespace

const Api& api() {
  static std::string error;
  static const Api* const loaded = []() -> const Api* {
    void* lib = ::dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      error = std::string("archives need libarchive (") + kLibrary +
              "), which cannot be loaded: install libarchive13";
      return nullptr;
    }
    static Api api{};
    const auto bind = [&](auto& fn, const char* symbol) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(lib, symbol));
      if (fn == nullptr && error.empty()) error = std::string("libarchive lacks ") + symbol;
    };
#define TORSHPKG_LIBARCHIVE_BIND(name) bind(api.name, #name);
    TORSHPKG_LIBARCHIVE_FUNCTIONS(TORSHPKG_LIBARCHIVE_BIND)
#undef TORSHPKG_LIBARCHIVE_BIND
    return error.empty() ? &api : nullptr;
  }();
  if (loaded == nullptr) throw Error(ErrorKind::kUnsupported, error);
  return *loaded;
}

}  // namespace torshpkg::la
