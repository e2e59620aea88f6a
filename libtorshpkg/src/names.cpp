#include "names.h"

#include <unicase.h>
#include <uninorm.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "utf8.h"

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

}  // namespace

std::string name_problem(std::string_view path) {
  if (is_ascii(path)) return "";  // ASCII is NFC, and holds none of the characters below
  for (size_t i = 0; i < path.size();) {
    uint32_t cp = 0;
    const size_t len = decode_utf8(path, i, cp);
    if (len == 0) return "is not UTF-8";  // normalized paths are: a caller's mistake
    if (is_c1_control(cp) || is_zero_width(cp) || is_bidi_control(cp)) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(cp));
      return std::string("holds ") + buf + " (an invisible or direction-changing character)";
    }
    i += len;
  }
  if (nfc(path) != path) return "is not in Unicode NFC (compose it: another name looks the same)";
  return "";
}

std::optional<std::pair<std::string, std::string>> find_case_collision(
    const std::vector<std::string_view>& paths) {
  const bool may_fold = std::any_of(paths.begin(), paths.end(), [](std::string_view p) {
    return std::any_of(p.begin(), p.end(), [](char c) {
      return (c >= 'A' && c <= 'Z') || static_cast<unsigned char>(c) >= 0x80;
    });
  });
  if (!may_fold) return std::nullopt;
  // Every path and every folder, once each, by its folded form; equal neighbours after sorting
  // that differ as given are a collision.
  std::vector<std::string_view> names;
  names.reserve(paths.size() * 2);
  std::vector<std::string_view> sorted = paths;
  std::sort(sorted.begin(), sorted.end());
  std::string_view previous;
  for (const std::string_view path : sorted) {
    for (size_t slash = path.find('/'); slash != std::string_view::npos;
         slash = path.find('/', slash + 1)) {
      const std::string_view folder = path.substr(0, slash);
      // A folder shared with the path before is listed already.
      if (previous.size() > slash && previous.substr(0, slash) == folder &&
          previous[slash] == '/') {
        continue;
      }
      names.push_back(folder);
    }
    names.push_back(path);
    previous = path;
  }
  std::vector<std::pair<std::string, std::string_view>> keyed;
  keyed.reserve(names.size());
  for (const std::string_view n : names) {
    std::string key = folded(n);
    if (key.empty()) key = std::string(n);  // folding failed: compare as given
    keyed.emplace_back(std::move(key), n);
  }
  std::sort(keyed.begin(), keyed.end());
  for (size_t i = 1; i < keyed.size(); ++i) {
    if (keyed[i].first == keyed[i - 1].first && keyed[i].second != keyed[i - 1].second) {
      return std::pair(std::string(keyed[i - 1].second), std::string(keyed[i].second));
    }
  }
  return std::nullopt;
}

}  // namespace torshpkg
