#include "torshpkg/error.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace torshpkg {
namespace {

// The tokens cross process boundaries (torshpkg mount's filesystem process, torshpkgd's
// socket): they are a protocol, pinned here one by one.
TEST(ErrorKind, EveryKindHasItsStableTokenAndBack) {
  const struct {
    ErrorKind kind;
    const char* token;
  } cases[] = {
      {ErrorKind::kCorrupt, "corrupt"},
      {ErrorKind::kBadSignature, "bad_signature"},
      {ErrorKind::kWrongKey, "wrong_key"},
      {ErrorKind::kNotFound, "not_found"},
      {ErrorKind::kIo, "io"},
      {ErrorKind::kInvalidArgument, "invalid_argument"},
      {ErrorKind::kUnsupported, "unsupported"},
      {ErrorKind::kInterrupted, "interrupted"},
  };
  std::set<std::string> tokens;
  for (const auto& c : cases) {
    EXPECT_EQ(to_token(c.kind), c.token);
    EXPECT_EQ(from_token(c.token), c.kind) << c.token;
    tokens.insert(c.token);
  }
  EXPECT_EQ(tokens.size(), std::size(cases));
}

TEST(ErrorKind, OtherTokensAreNoKind) {
  for (const char* other : {"", "bad signature", "Corrupt", "corrupt ", "io\n", "4", "unknown"}) {
    EXPECT_FALSE(from_token(other).has_value()) << other;
  }
}

}  // namespace
}  // namespace torshpkg
