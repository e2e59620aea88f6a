// UTF-8 decoding and the code points shown or named with care, shared by printable() and the
// resource name rules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace torshpkg {

// The length of the UTF-8 sequence at `i` and its code point; 0 when it is not one (truncated,
// overlong, a surrogate, past U+10FFFF).
inline size_t decode_utf8(std::string_view s, size_t i, uint32_t& cp) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  size_t len = 0;
  uint32_t min = 0;
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  if ((c & 0xe0) == 0xc0) {
    len = 2;
    cp = c & 0x1f;
    min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3;
    cp = c & 0x0f;
    min = 0x800;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4;
    cp = c & 0x07;
    min = 0x10000;
  } else {
    return 0;
  }
  if (s.size() - i < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

// C1 controls (U+0080-U+009F).
inline bool is_c1_control(uint32_t cp) {
  return cp >= 0x80 && cp <= 0x9f;
}

// The bidirectional controls: marks, embeddings, overrides and isolates.
inline bool is_bidi_control(uint32_t cp) {
  return cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

// Zero-width characters: spaces, joiners, the word joiner and the byte order mark.
inline bool is_zero_width(uint32_t cp) {
  return (cp >= 0x200b && cp <= 0x200d) || cp == 0x2060 || cp == 0xfeff;
}

}  // namespace torshpkg
