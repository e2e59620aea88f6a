#include "torshpkg/byte_size.h"

#include <cctype>
#include <string>

#include "torshpkg/error.h"

namespace torshpkg {

uint64_t parse_byte_size(std::string_view text, std::string_view what) {
  const std::string name(what);
  size_t pos = 0;
  uint64_t value = 0;
  while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
    const auto digit = static_cast<uint64_t>(text[pos] - '0');
    if (value > (UINT64_MAX - digit) / 10) throw invalid_argument(name + ": number too large");
    value = value * 10 + digit;
    ++pos;
  }
  if (pos == 0) {
    throw invalid_argument(name + ": expected a byte count like 1048576 or 1M, got '" +
                           std::string(text) + "'");
  }
  std::string unit(text.substr(pos));
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  uint64_t mult = 1;
  if (unit.empty() || unit == "B") {
    mult = 1;
  } else if (unit == "K" || unit == "KIB" || unit == "KB") {
    mult = 1ull << 10;
  } else if (unit == "M" || unit == "MIB" || unit == "MB") {
    mult = 1ull << 20;
  } else if (unit == "G" || unit == "GIB" || unit == "GB") {
    mult = 1ull << 30;
  } else {
    throw invalid_argument(name + ": unknown unit in '" + std::string(text) + "' (use K, M or G)");
  }
  if (value > UINT64_MAX / mult) throw invalid_argument(name + ": number too large");
  return value * mult;
}

}  // namespace torshpkg
