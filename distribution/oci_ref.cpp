#include "oci_ref.h"

#include <cctype>

#include "torshpkg/error.h"
#include "torshpkg/sha256.h"

namespace torshpkg::distribution {
namespace {

bool valid_repository(std::string_view r) {
  if (r.empty() || r.size() > 255) return false;
  for (const char c : r) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
          c == '/')) {
      return false;
    }
  }
  return r.front() != '/' && r.back() != '/' && r.find("//") == std::string_view::npos;
}

bool valid_tag(std::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  for (const char c : t) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-')
      return false;
  }
  return t.front() != '.' && t.front() != '-';
}

}  // namespace

std::string OciRef::to_string() const {
  return registry + "/" + repository + (tag.empty() ? "" : ":" + tag) +
         (digest.empty() ? "" : "@" + digest);
}

bool is_loopback_registry(const std::string& registry) {
  std::string host = registry;
  if (host.starts_with("[")) {
    host = host.substr(1, host.find(']') - 1);
  } else if (const size_t colon = host.rfind(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  return host == "localhost" || host == "::1" || host.starts_with("127.");
}

OciRef parse_oci_ref(std::string_view text) {
  const auto fail = [&](const std::string& why) {
    return invalid_argument("registry reference '" + std::string(text) + "': " + why);
  };
  std::string_view t = text;
  if (t.starts_with("oci://")) t.remove_prefix(6);
  OciRef r;
  const size_t slash = t.find('/');
  if (slash == std::string_view::npos || slash == 0)
    throw fail("expected HOST[:PORT]/REPOSITORY[:TAG]");
  r.registry = std::string(t.substr(0, slash));
  std::string_view rest = t.substr(slash + 1);
  if (const size_t at = rest.find('@'); at != std::string_view::npos) {
    r.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    if (!r.digest.starts_with("sha256:") || r.digest.size() != 71 ||
        !digest_from_hex(std::string_view(r.digest).substr(7))) {
      throw fail("a digest is sha256: and 64 lowercase hex digits");
    }
  }
  const size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos && rest.find('/', colon) == std::string_view::npos) {
    r.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (!valid_tag(r.tag)) throw fail("bad tag '" + r.tag + "'");
  } else if (r.digest.empty()) {
    r.tag = "latest";
  }
  r.repository = std::string(rest);
  if (!valid_repository(r.repository)) {
    throw fail("repository names are lowercase letters, digits, '.', '_', '-' and '/'");
  }
  for (const char c : r.registry) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != ':' &&
        c != '[' && c != ']') {
      throw fail("bad registry host");
    }
  }
  return r;
}

}  // namespace torshpkg::distribution
