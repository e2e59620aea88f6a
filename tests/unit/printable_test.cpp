#include "torshpkg/printable.h"

#include <gtest/gtest.h>

namespace torshpkg {
namespace {

TEST(Printable, EscapesControlsBidiAndBadBytesAndKeepsTheRest) {
  EXPECT_EQ(printable("plain text, üñíçødé, 日本語, emoji 🙂"),
            "plain text, üñíçødé, 日本語, emoji 🙂");
  EXPECT_EQ(printable("a\nb\tc\rd"), "a\\nb\\tc\\rd");
  EXPECT_EQ(printable("\x1b"
                      "[2Ksigned by me"),
            "\\x1b[2Ksigned by me");
  EXPECT_EQ(printable("\x7f\x01"), "\\x7f\\x01");
  EXPECT_EQ(printable("c1 \xc2\x9b"
                      " x"),
            "c1 \\u009b x");  // U+009B CSI
  EXPECT_EQ(printable("txt.\xe2\x80\xae"
                      "exe"),
            "txt.\\u202eexe");  // right-to-left override
  EXPECT_EQ(printable("\xe2\x81\xa6"
                      "isolate\xe2\x81\xa9"),
            "\\u2066isolate\\u2069");
  EXPECT_EQ(printable("\xe2\x80\x8f\xd8\x9c"), "\\u200f\\u061c");
  EXPECT_EQ(printable("bad \xff\xc3"), "bad \\xff\\xc3");   // not UTF-8
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
  EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");           // overlong
  EXPECT_EQ(printable("back\\slash"), "back\\\\slash");     // escapes read back unambiguously
}

}  // namespace
}  // namespace torshpkg
