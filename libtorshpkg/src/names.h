// Resource names that cannot be confused with each other: Unicode NFC, no invisible or
// direction-changing characters, and no two that differ only by case or normalization.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace torshpkg {

// Why `path` (a normalized resource path) is not an acceptable name; empty when it is. Refused:
// text not in Unicode NFC (so "a\u0301" is refused, "\u00e1" accepted), C1 controls, zero-width
// characters (U+200B-U+200D, U+2060, U+FEFF) and bidirectional controls (U+061C, U+200E,
// U+200F, U+202A-U+202E, U+2066-U+2069).
std::string name_problem(std::string_view path);

// Two of `paths` (or two folders they lie in) that differ only by case or normalization
// ("Model.bin" and "model.bin", "A/x" and "a/y"), by full Unicode case folding so that it holds
// on any file system; nullopt when there are none. Exact duplicates are not reported (the
// callers refuse those themselves). Costs nothing much when no path has an upper-case or
// non-ASCII character (then no two can fold together).
std::optional<std::pair<std::string, std::string>> find_case_collision(
    const std::vector<std::string_view>& paths);

}  // namespace torshpkg
