// Resource names that cannot be confused with each other: Unicode NFC, no invisible or
// direction-changing characters, and no two that differ only by case or normalization.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace torshpkg {

// Why `path` (a normalized resource path) is not an acceptable name; empty when it is. Refused:
// text not in Unicode NFC (so "a\u0301" is refused, "\u00e1" accepted), C1 controls, zero-width
// characters (U+200B-U+200D, U+2060, U+FEFF) and bidirectional controls (U+061C, U+200E,
// U+200F, U+202A-U+202E, U+2066-U+2069).
std::string name_problem(std::string_view path);

// Paths whose files or folders differ only by case or normalization ("Model.bin" and
// "model.bin", "A/x" and "a/y"): add() returns the earlier path a new one collides with, or
// empty. Comparison is by full Unicode case folding, so it holds on any file system.
class NameCollisions {
 public:
  std::string add(std::string_view path);

 private:
  std::map<std::string, std::string> seen_;  // folded path or folder -> as first given
};

}  // namespace torshpkg
