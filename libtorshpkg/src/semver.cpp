#include "torshpkg/semver.h"

#include <algorithm>
#include <charconv>

#include "torshpkg/error.h"

namespace torshpkg {
namespace {

bool parse_number(std::string_view s, uint64_t& out) {
  if (s.empty() || (s.size() > 1 && s[0] == '0')) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep, start);
    out.emplace_back(s.substr(start, at == std::string_view::npos ? at : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

// A partial version "1", "1.2", "1.2.3-pre", with '*', 'x' or 'X' for missing parts.
struct Partial {
  uint64_t part[3] = {0, 0, 0};
  int given = 0;          // parts given (0 for "*")
  bool wildcard = false;  // "1.*", "1.2.x": only the given parts are fixed
  std::vector<std::string> pre;
};

std::optional<Partial> parse_partial(std::string_view s) {
  Partial p;
  std::string_view core = s;
  const size_t plus = core.find('+');
  if (plus != std::string_view::npos) core = core.substr(0, plus);
  const size_t dash = core.find('-');
  if (dash != std::string_view::npos) {
    for (const std::string& id : split(core.substr(dash + 1), '.')) {
      if (id.empty()) return std::nullopt;
      p.pre.push_back(id);
    }
    core = core.substr(0, dash);
  }
  const std::vector<std::string> parts = split(core, '.');
  if (parts.size() > 3) return std::nullopt;
  bool wildcard = false;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& x = parts[i];
    if (x == "*" || x == "x" || x == "X") {
      wildcard = true;
      continue;
    }
    if (wildcard || !parse_number(x, p.part[i])) return std::nullopt;
    p.given = static_cast<int>(i) + 1;
  }
  if (!p.pre.empty() && p.given != 3) return std::nullopt;
  p.wildcard = wildcard;
  return p;
}

Version make(uint64_t a, uint64_t b, uint64_t c, std::vector<std::string> pre = {}) {
  Version v;
  v.major = a;
  v.minor = b;
  v.patch = c;
  v.pre = std::move(pre);
  return v;
}

// The smallest version above every release with these leading parts: "<2.0.0-0" style bounds
// are written as "<2.0.0" with pre-releases of 2.0.0 excluded by the pre-release rule.
Version bump(const Partial& p, int at) {
  if (at == 0) return make(p.part[0] + 1, 0, 0);
  if (at == 1) return make(p.part[0], p.part[1] + 1, 0);
  return make(p.part[0], p.part[1], p.part[2] + 1);
}

}  // namespace

bool is_valid_semver(std::string_view v) {
  if (v.empty() || v.size() > 256) return false;
  auto numeric = [](std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
           !(s.size() > 1 && s[0] == '0');
  };
  auto identifiers = [&](std::string_view s, bool prerelease) {
    if (s.empty()) return false;
    size_t start = 0;
    for (;;) {
      const size_t dot = s.find('.', start);
      const std::string_view id =
          s.substr(start, dot == std::string_view::npos ? dot : dot - start);
      if (id.empty()) return false;
      const bool all_digits =
          std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!std::all_of(id.begin(), id.end(), [](char c) {
            return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   c == '-';
          })) {
        return false;
      }
      if (prerelease && all_digits && !numeric(id)) return false;
      if (dot == std::string_view::npos) return true;
      start = dot + 1;
    }
  };
  const size_t plus = v.find('+');
  std::string_view core = v.substr(0, plus);
  if (plus != std::string_view::npos && !identifiers(v.substr(plus + 1), false)) return false;
  const size_t dash = core.find('-');
  if (dash != std::string_view::npos) {
    if (!identifiers(core.substr(dash + 1), true)) return false;
    core = core.substr(0, dash);
  }
  const size_t d1 = core.find('.');
  if (d1 == std::string_view::npos) return false;
  const size_t d2 = core.find('.', d1 + 1);
  if (d2 == std::string_view::npos) return false;
  return numeric(core.substr(0, d1)) && numeric(core.substr(d1 + 1, d2 - d1 - 1)) &&
         numeric(core.substr(d2 + 1));
}

bool is_valid_version_req(std::string_view req) {
  try {
    VersionReq::parse(req);
    return true;
  } catch (const Error&) {
    return false;
  }
}

std::optional<Version> Version::parse(std::string_view text) {
  if (!is_valid_semver(text)) return std::nullopt;
  Version v;
  std::string_view core = text;
  const size_t plus = core.find('+');
  if (plus != std::string_view::npos) {
    v.build = std::string(core.substr(plus + 1));
    core = core.substr(0, plus);
  }
  const size_t dash = core.find('-');
  if (dash != std::string_view::npos) {
    v.pre = split(core.substr(dash + 1), '.');
    core = core.substr(0, dash);
  }
  const std::vector<std::string> parts = split(core, '.');
  if (parts.size() != 3 || !parse_number(parts[0], v.major) || !parse_number(parts[1], v.minor) ||
      !parse_number(parts[2], v.patch)) {
    return std::nullopt;
  }
  return v;
}

std::string Version::to_string() const {
  std::string s = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  for (size_t i = 0; i < pre.size(); ++i) s += (i == 0 ? "-" : ".") + pre[i];
  if (!build.empty()) s += "+" + build;
  return s;
}

int Version::compare(const Version& o) const {
  if (major != o.major) return major < o.major ? -1 : 1;
  if (minor != o.minor) return minor < o.minor ? -1 : 1;
  if (patch != o.patch) return patch < o.patch ? -1 : 1;
  if (pre.empty() || o.pre.empty())
    return pre.empty() == o.pre.empty() ? 0 : (pre.empty() ? 1 : -1);
  for (size_t i = 0; i < std::min(pre.size(), o.pre.size()); ++i) {
    const std::string& a = pre[i];
    const std::string& b = o.pre[i];
    const bool na = all_digits(a), nb = all_digits(b);
    if (na && nb) {
      if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
      if (a != b) return a < b ? -1 : 1;
    } else if (na != nb) {
      return na ? -1 : 1;  // numeric identifiers sort first
    } else if (a != b) {
      return a < b ? -1 : 1;
    }
  }
  if (pre.size() != o.pre.size()) return pre.size() < o.pre.size() ? -1 : 1;
  return 0;
}

void VersionReq::add_comparator(std::string_view token, Set& set, std::string_view whole) {
  const auto fail = [&](const std::string& why) -> void {
    throw invalid_argument("version requirement '" + std::string(whole) + "': " + why);
  };
  std::string_view op;
  for (const std::string_view o : {">=", "<=", ">", "<", "=", "^", "~"}) {
    if (token.starts_with(o)) {
      op = o;
      break;
    }
  }
  std::string_view rest = token.substr(op.size());
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  const auto p = parse_partial(rest);
  if (!p) return fail("'" + std::string(token) + "' is not a version");
  const Version lo = make(p->part[0], p->part[1], p->part[2], p->pre);
  auto& c = set.comparators;
  if (p->given == 0) {                                                  // "*", ">=*": any release
    if (op == "<" || op == ">") c.push_back({Op::kLt, make(0, 0, 0)});  // matches nothing
    return;
  }
  if (op.empty() && p->wildcard) op = "=";  // "1.2.*" fixes 1.2, as "=1.2" does
  if (op.empty() || op == "^") {
    c.push_back({Op::kGe, lo});
    if (p->part[0] > 0 || p->given == 1) {
      c.push_back({Op::kLt, bump(*p, 0)});
    } else if (p->part[1] > 0 || p->given == 2) {
      c.push_back({Op::kLt, bump(*p, 1)});
    } else {
      c.push_back({Op::kLt, bump(*p, 2)});
    }
  } else if (op == "~") {
    c.push_back({Op::kGe, lo});
    c.push_back({Op::kLt, bump(*p, p->given == 1 ? 0 : 1)});
  } else if (op == "=") {
    if (p->given == 3) {
      c.push_back({Op::kEq, lo});
    } else {
      c.push_back({Op::kGe, lo});
      c.push_back({Op::kLt, bump(*p, p->given - 1)});
    }
  } else if (op == ">=") {
    c.push_back({Op::kGe, lo});
  } else if (op == ">") {
    c.push_back(p->given == 3 ? Comparator{Op::kGt, lo}
                              : Comparator{Op::kGe, bump(*p, p->given - 1)});
  } else if (op == "<") {
    c.push_back({Op::kLt, lo});
  } else if (op == "<=") {
    c.push_back(p->given == 3 ? Comparator{Op::kLe, lo}
                              : Comparator{Op::kLt, bump(*p, p->given - 1)});
  }
}

VersionReq VersionReq::parse(std::string_view text) {
  VersionReq req;
  req.text_ = std::string(text);
  if (text.empty() || text.size() > 256) {
    throw invalid_argument("version requirement '" + std::string(text) + "' is empty or too long");
  }
  size_t start = 0;
  while (true) {
    const size_t bar = text.find("||", start);
    const std::string_view part =
        text.substr(start, bar == std::string_view::npos ? bar : bar - start);
    Set set;
    // Comparators are separated by commas or spaces; an operator may be followed by spaces.
    std::string token;
    bool any = false;
    const auto flush = [&] {
      if (token.empty()) return;
      add_comparator(token, set, text);
      any = true;
      token.clear();
    };
    for (size_t i = 0; i < part.size(); ++i) {
      const char ch = part[i];
      if (ch == ',' || ch == ' ') {
        const bool op_only = !token.empty() &&
                             std::string_view("<>=^~").find(token.back()) != std::string_view::npos;
        if (ch == ' ' && op_only) continue;
        flush();
        continue;
      }
      token += ch;
    }
    flush();
    if (!any)
      throw invalid_argument("version requirement '" + std::string(text) + "' has an empty part");
    req.sets_.push_back(std::move(set));
    if (bar == std::string_view::npos) break;
    start = bar + 2;
  }
  return req;
}

bool VersionReq::matches(const Version& v) const {
  for (const Set& set : sets_) {
    bool all = true;
    bool pre_allowed = v.pre.empty();
    for (const Comparator& c : set.comparators) {
      const int cmp = v.compare(c.version);
      switch (c.op) {
        case Op::kEq:
          all = all && cmp == 0;
          break;
        case Op::kGt:
          all = all && cmp > 0;
          break;
        case Op::kGe:
          all = all && cmp >= 0;
          break;
        case Op::kLt:
          all = all && cmp < 0;
          break;
        case Op::kLe:
          all = all && cmp <= 0;
          break;
      }
      if (!c.version.pre.empty() && c.version.major == v.major && c.version.minor == v.minor &&
          c.version.patch == v.patch) {
        pre_allowed = true;
      }
    }
    if (all && pre_allowed) return true;
  }
  return false;
}

}  // namespace torshpkg
