// The names a ZIP entry of a package may have.
#pragma once

#include <string_view>

namespace torshpkg {

// Whether `path` is a normalized relative UTF-8 path: components separated by single '/', none
// empty, "." or "..", no NUL, backslash or control characters, at most 4096 bytes.
bool is_normalized_path(std::string_view path);
bool is_valid_utf8(std::string_view text);

}  // namespace torshpkg
