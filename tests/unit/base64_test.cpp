#include "torshpkg/base64.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace torshpkg {
namespace {

std::vector<uint8_t> bytes(std::string_view s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

TEST(Base64, Rfc4648TestVectorsBothWays) {
  const struct {
    const char* plain;
    const char* encoded;
  } cases[] = {{"", ""},
               {"f", "Zg=="},
               {"fo", "Zm8="},
               {"foo", "Zm9v"},
               {"foob", "Zm9vYg=="},
               {"fooba", "Zm9vYmE="},
               {"foobar", "Zm9vYmFy"}};
  for (const auto& c : cases) {
    EXPECT_EQ(base64_encode(std::string_view(c.plain)), c.encoded);
    EXPECT_EQ(base64_decode(c.encoded, Base64::kLenient), bytes(c.plain)) << c.encoded;
    if (*c.plain != '\0') {
      EXPECT_EQ(base64_decode(c.encoded, Base64::kCanonical), bytes(c.plain)) << c.encoded;
    }
  }
  // Every byte value, at every length up to three quanta, round-trips canonically.
  std::vector<uint8_t> all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<uint8_t>(i));
  EXPECT_EQ(base64_decode(base64_encode(all), Base64::kCanonical), all);
  for (size_t n = 1; n <= 9; ++n) {
    const std::vector<uint8_t> piece(all.end() - n, all.end());
    EXPECT_EQ(base64_decode(base64_encode(piece), Base64::kCanonical), piece) << n;
  }
}

TEST(Base64, CanonicalRefusesEveryOtherSpelling) {
  for (const char* other : {"", "Zg", "Zg=", "Zh==", "Zm9=", "Zm8", "Zm9v\n", " Zm9v",
                            "Zm9v====", "Z===", "Zm-v", "Zm_v", "Zg==Zg==", "Z!9v"}) {
    EXPECT_FALSE(base64_decode(other, Base64::kCanonical).has_value()) << other;
  }
}

TEST(Base64, LenientTakesUrlSafeAndUnpaddedButNotGarbage) {
  EXPECT_EQ(base64_decode("Zg", Base64::kLenient), bytes("f"));
  EXPECT_EQ(base64_decode("Zm8", Base64::kLenient), bytes("fo"));
  EXPECT_EQ(base64_decode("-_-_", Base64::kLenient), base64_decode("+/+/", Base64::kLenient));
  EXPECT_EQ(base64_decode("YWxpY2U6czNjcmV0", Base64::kLenient), bytes("alice:s3cret"));
  for (const char* bad : {"Z", "Zm9vY", "Zg=", "Zm 9v", "Zm9v\n", "Zg==Zg==", "Z!9v"}) {
    EXPECT_FALSE(base64_decode(bad, Base64::kLenient).has_value()) << bad;
  }
}

}  // namespace
}  // namespace torshpkg
