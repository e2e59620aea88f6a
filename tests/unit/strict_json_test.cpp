#include "torshpkg/strict_json.h"

#include <gtest/gtest.h>

#include <string>

namespace torshpkg {
namespace {

Error as_config_error(const std::string& why) {
  return invalid_argument("c.json: not valid JSON: " + why);
}

TEST(StrictJson, ParsesRfc8259) {
  const Json::Value v = parse_strict_json(
      R"({"a": [1, 2.5, "x", null, true], "b": {}, "n": [0, -0, 0.5, 10, 1e05, -1E-01, 2e+0],
          "s": "01 // not a comment"})",
      8, as_config_error);
  EXPECT_EQ(v["n"].size(), 7u);
  EXPECT_EQ(v["s"].asString(), "01 // not a comment");
  EXPECT_EQ(v["a"][2].asString(), "x");
  EXPECT_TRUE(v["b"].isObject());
}

TEST(StrictJson, EverythingElseThrowsTheCallersErrorWithAOneLineReason) {
  for (const char* bad :
       {"", "{", "{} {}", "{\"a\": 1,}", "{\"a\": 1, \"a\": 2}", "// c\n{}", "/* c */ {}",
        "{'a': 1}", "[01]", "[-01]", "{\"a\": 00}", "[1] x", "[[[[[[[[[[1]]]]]]]]]]", "\"\xc3\""}) {
    try {
      parse_strict_json(bad, 8, as_config_error);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << bad;
      EXPECT_EQ(what.rfind("c.json: not valid JSON: ", 0), 0u) << what;
      EXPECT_GT(what.size(), std::string("c.json: not valid JSON: ").size()) << bad;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
}

}  // namespace
}  // namespace torshpkg
