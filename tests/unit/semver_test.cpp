#include "torshpkg/semver.h"

#include <gtest/gtest.h>

#include "test_util.h"
#include "torshpkg/error.h"

namespace torshpkg {
namespace {

Version v(const char* text) {
  const auto parsed = Version::parse(text);
  EXPECT_TRUE(parsed) << text;
  return parsed.value_or(Version{});
}

bool match(const char* req, const char* version) {
  return VersionReq::parse(req).matches(v(version));
}

TEST(Version, ParsesAndOrdersAsSemverOrgSays) {
  EXPECT_FALSE(Version::parse("1.2"));
  EXPECT_FALSE(Version::parse("01.2.3"));
  EXPECT_FALSE(Version::parse("1.2.3-"));
  EXPECT_EQ(v("1.2.3-rc.1+build.5").to_string(), "1.2.3-rc.1+build.5");
  // The precedence example of semver.org, item 11.
  const char* ordered[] = {"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
                           "1.0.0-beta",  "1.0.0-beta.2",  "1.0.0-beta.11",
                           "1.0.0-rc.1",  "1.0.0",         "1.0.1",
                           "1.1.0",       "2.0.0",         "10.0.0"};
  for (size_t i = 0; i + 1 < std::size(ordered); ++i) {
    EXPECT_LT(v(ordered[i]), v(ordered[i + 1])) << ordered[i] << " < " << ordered[i + 1];
  }
  EXPECT_EQ(v("1.0.0+a"), v("1.0.0+b"));  // build metadata ignored
}

TEST(VersionReq, CaretTildeAndBareFormsFollowCargo) {
  EXPECT_TRUE(match("^1.2.3", "1.9.0"));
  EXPECT_FALSE(match("^1.2.3", "2.0.0"));
  EXPECT_FALSE(match("^1.2.3", "1.2.2"));
  EXPECT_TRUE(match("^0.2.3", "0.2.9"));
  EXPECT_FALSE(match("^0.2.3", "0.3.0"));
  EXPECT_TRUE(match("^0.0.3", "0.0.3"));
  EXPECT_FALSE(match("^0.0.3", "0.0.4"));
  EXPECT_TRUE(match("^1.2", "1.2.0"));
  EXPECT_TRUE(match("^0", "0.9.9"));
  EXPECT_FALSE(match("^0.0", "0.1.0"));
  EXPECT_TRUE(match("1.2", "1.5.0"));  // bare means caret
  EXPECT_TRUE(match("~1.2.3", "1.2.9"));
  EXPECT_FALSE(match("~1.2.3", "1.3.0"));
  EXPECT_TRUE(match("~1", "1.9.0"));
  EXPECT_FALSE(match("~1", "2.0.0"));
}

TEST(VersionReq, ComparatorsWildcardsAndUnions) {
  EXPECT_TRUE(match(">=1, <2", "1.5.0"));
  EXPECT_FALSE(match(">=1, <2", "2.0.0"));
  EXPECT_TRUE(match(">= 1.2 < 1.4", "1.3.7"));  // npm's spaces
  EXPECT_TRUE(match("=1.0.0", "1.0.0"));
  EXPECT_FALSE(match("=1.0.0", "1.0.1"));
  EXPECT_TRUE(match("=1.0", "1.0.7"));
  EXPECT_TRUE(match(">1.2", "1.3.0"));
  EXPECT_FALSE(match(">1.2", "1.2.9"));
  EXPECT_TRUE(match("<=1.2", "1.2.9"));
  EXPECT_TRUE(match("*", "0.0.1"));
  EXPECT_TRUE(match("1.*", "1.4.0"));
  EXPECT_FALSE(match("1.2.x", "1.3.0"));
  EXPECT_TRUE(match("^1 || ^3", "3.1.0"));
  EXPECT_FALSE(match("^1 || ^3", "2.0.0"));
}

TEST(VersionReq, PreReleasesMatchOnlyWhenNamed) {
  EXPECT_FALSE(match("^1.2", "1.3.0-beta"));
  EXPECT_FALSE(match("*", "1.0.0-rc.1"));
  EXPECT_FALSE(match("<2", "2.0.0-rc.1"));
  EXPECT_TRUE(match("^1.2.3-beta.2", "1.2.3-beta.10"));
  EXPECT_FALSE(match("^1.2.3-beta.2", "1.2.4-beta.3"));  // another triple's pre-release
  EXPECT_TRUE(match("^1.2.3-beta.2", "1.2.4"));
  EXPECT_TRUE(match(">=2.0.0-rc.1", "2.0.0-rc.2"));
}

TEST(VersionReq, MalformedRequirementsAreInvalidArguments) {
  for (const char* bad :
       {"", "^", "1.2.3.4", ">=x.1", "~1.*.3", "1.2-beta", "^1 ||", "a.b.c", ">=1 , , <2x"}) {
    EXPECT_EQ(testing::kind_of([&] { VersionReq::parse(bad); }), ErrorKind::kInvalidArgument)
        << bad;
    EXPECT_FALSE(is_valid_version_req(bad)) << bad;
  }
  for (const char* ok : {"^1.2", ">=0.15, <0.16", "1.*", "*", "~1 || ^2.0.0-rc.1"}) {
    EXPECT_TRUE(is_valid_version_req(ok)) << ok;
  }
  EXPECT_FALSE(is_valid_version_req("^^1"));  // once let through by a check of characters only
}

}  // namespace
}  // namespace torshpkg
