#include "names.h"

#include <unicase.h>
#include <uninorm.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace torshpkg {
namespace {

bool is_ascii(std::string_view s) {
  for (const char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};

// libunistring's result as a string; empty on failure (invalid input, no memory).
std::string take(uint8_t* p, size_t n) {
  const std::unique_ptr<uint8_t, FreeDeleter> owned(p);
  return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p), n);
}

std::string nfc(std::string_view s) {
  size_t n = 0;
  uint8_t* out =
      u8_normalize(UNINORM_NFC, reinterpret_cast<const uint8_t*>(s.data()), s.size(), nullptr, &n);
  return take(out, n);
}

std::string folded(std::string_view s) {
  if (is_ascii(s)) {
    std::string out(s);
    for (char& c : out) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
  }
  size_t n = 0;
  uint8_t* out = u8_casefold(reinterpret_cast<const uint8_t*>(s.data()), s.size(), nullptr,
                             UNINORM_NFC, nullptr, &n);
  return take(out, n);
}

bool invisible_or_bidi(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || (cp >= 0x200b && cp <= 0x200f) ||
         (cp >= 0x202a && cp <= 0x202e) || cp == 0x2060 || (cp >= 0x2066 && cp <= 0x2069) ||
         cp == 0xfeff;
}

}  // namespace

std::string name_problem(std::string_view path) {
  if (is_ascii(path)) return "";  // ASCII is NFC, and holds none of the characters below
  for (size_t i = 0; i < path.size();) {
    const auto c = static_cast<uint8_t>(path[i]);
    const size_t len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    uint32_t cp = len == 1 ? c : c & (0xff >> (len + 1));
    for (size_t k = 1; k < len && i + k < path.size(); ++k) {
      cp = (cp << 6) | (static_cast<uint8_t>(path[i + k]) & 0x3f);
    }
    if (invisible_or_bidi(cp)) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(cp));
      return std::string("holds ") + buf + " (an invisible or direction-changing character)";
    }
    i += len;
  }
  if (nfc(path) != path) return "is not in Unicode NFC (compose it: another name looks the same)";
  return "";
}

std::string NameCollisions::add(std::string_view path) {
  // Every folder the path lies in, then the path itself.
  for (size_t slash = path.find('/');; slash = path.find('/', slash + 1)) {
    const std::string_view part = path.substr(0, slash);
    std::string key = folded(part);
    if (key.empty()) key = std::string(part);  // folding failed: compare as given
    const auto [it, inserted] = seen_.emplace(std::move(key), std::string(part));
    if (!inserted && it->second != part) return it->second;
    if (slash == std::string_view::npos) break;
  }
  return "";
}

}  // namespace torshpkg
