// Text from packages, journals and other processes, made safe to show on a terminal or in a
// log line: nothing in it can move the cursor, recolour, rewrite a line or reorder what follows.
#pragma once

#include <string>
#include <string_view>

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

// `text` with C0 controls (newline and tab included), DEL, C1 controls (U+0080-U+009F), the
// bidirectional controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) and bytes that
// are not UTF-8 written as escapes: \n, \t, \x1b, \u202e. Backslashes are doubled, so the
// escaped text reads back unambiguously. Everything else, other scripts included, is kept.
// JSON output keeps the exact strings (its encoder escapes what JSON needs); this is for text.
std::string printable(std::string_view text);

}  // namespace torshpkg

#pragma GCC visibility pop
