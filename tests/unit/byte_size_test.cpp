#include "torshpkg/byte_size.h"

#include <gtest/gtest.h>

#include <string>

#include "torshpkg/error.h"

namespace torshpkg {
namespace {

// The message of the Error(kInvalidArgument) that parsing `text` throws; fails the test when
// it parses or throws anything else.
std::string refusal(const std::string& text) {
  try {
    const uint64_t value = parse_byte_size(text, "--cache-size");
    ADD_FAILURE() << "'" << text << "' parsed as " << value;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << text;
    return e.what();
  }
  return "";
}

TEST(ByteSize, PlainCountsAndUnitsInAnyCase) {
  EXPECT_EQ(parse_byte_size("0", "x"), 0u);
  EXPECT_EQ(parse_byte_size("1048576", "x"), 1048576u);
  EXPECT_EQ(parse_byte_size("512B", "x"), 512u);
  EXPECT_EQ(parse_byte_size("64K", "x"), 64u << 10);
  EXPECT_EQ(parse_byte_size("64k", "x"), 64u << 10);
  EXPECT_EQ(parse_byte_size("64KiB", "x"), 64u << 10);
  EXPECT_EQ(parse_byte_size("64kb", "x"), 64u << 10);
  EXPECT_EQ(parse_byte_size("256M", "x"), 256ull << 20);
  EXPECT_EQ(parse_byte_size("256mib", "x"), 256ull << 20);
  EXPECT_EQ(parse_byte_size("3G", "x"), 3ull << 30);
  EXPECT_EQ(parse_byte_size("3GB", "x"), 3ull << 30);
}

TEST(ByteSize, LargestCountsAndOverflow) {
  EXPECT_EQ(parse_byte_size("18446744073709551615", "x"), UINT64_MAX);
  EXPECT_EQ(parse_byte_size("17179869183G", "x"), 17179869183ull << 30);
  EXPECT_NE(refusal("18446744073709551616").find("--cache-size: number too large"),
            std::string::npos);
  EXPECT_NE(refusal("99999999999999999999999").find("number too large"), std::string::npos);
  EXPECT_NE(refusal("17179869184G").find("number too large"), std::string::npos);
}

TEST(ByteSize, AnythingElseIsRefusedNamingTheOption) {
  for (const char* text : {"", "M", "-1", " 1M", "1.5M"}) {
    const std::string why = refusal(text);
    EXPECT_EQ(why.rfind("--cache-size: ", 0), 0u) << text << ": " << why;
  }
  EXPECT_NE(refusal("").find("expected a byte count like 1048576 or 1M, got ''"),
            std::string::npos);
  EXPECT_NE(refusal("4T").find("unknown unit in '4T' (use K, M or G)"), std::string::npos);
  EXPECT_NE(refusal("1M ").find("unknown unit"), std::string::npos);
  EXPECT_NE(refusal("1.5M").find("unknown unit"), std::string::npos);
}

}  // namespace
}  // namespace torshpkg
