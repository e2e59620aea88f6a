// Semantic versions (semver.org 2.0.0) and version requirements in the forms Cargo and npm use.
//
// A requirement is one or more comparator sets joined by "||" (any set may match); a set is
// comparators separated by "," or spaces (all must match). Comparators: "=V", ">V", ">=V", "<V",
// "<=V", "~V", "^V", "*", and wildcards "1.*", "1.2.x". V may be partial ("1", "1.2"). A bare V
// means "^V", as in Cargo. Caret allows changes that do not modify the leftmost non-zero part
// (^1.2.3 is >=1.2.3, <2.0.0; ^0.2.3 is >=0.2.3, <0.3.0; ^0.0.3 is =0.0.3); tilde allows patch
// changes (~1.2.3 is >=1.2.3, <1.3.0; ~1 is >=1.0.0, <2.0.0). A pre-release version matches only
// a set that names a pre-release of the same major.minor.patch (so ^1.2 never picks 2.0.0-rc.1
// nor 1.3.0-beta).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

struct Version {
  uint64_t major = 0;
  uint64_t minor = 0;
  uint64_t patch = 0;
  std::vector<std::string> pre;  // dot-separated pre-release identifiers
  std::string build;             // ignored in comparisons

  // nullopt unless `text` is a valid semantic version.
  static std::optional<Version> parse(std::string_view text);
  std::string to_string() const;
  // Precedence as semver.org defines it (build metadata ignored): <0, 0, >0.
  int compare(const Version& other) const;
  bool operator<(const Version& o) const { return compare(o) < 0; }
  bool operator==(const Version& o) const { return compare(o) == 0; }
};

// Whether `version` is a semantic version, and `req` a requirement VersionReq::parse accepts: the
// one grammar the manifest, the writer and dependency resolution share.
bool is_valid_semver(std::string_view version);
bool is_valid_version_req(std::string_view req);

class VersionReq {
 public:
  // Throws Error(kInvalidArgument) naming the requirement and what is wrong.
  static VersionReq parse(std::string_view text);
  bool matches(const Version& version) const;
  const std::string& text() const { return text_; }

 private:
  enum class Op { kEq, kGt, kGe, kLt, kLe };
  struct Comparator {
    Op op;
    Version version;
  };
  struct Set {
    std::vector<Comparator> comparators;  // empty: matches any release
  };
  static void add_comparator(std::string_view token, Set& set, std::string_view whole);
  std::vector<Set> sets_;
  std::string text_;
};

}  // namespace torshpkg

#pragma GCC visibility pop
