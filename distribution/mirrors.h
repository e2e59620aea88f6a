// The host's mirror list: which sources to try, in order, before a registry or a web origin.
//
// A JSON file (default /etc/torshpkg/mirrors.json, or $TORSHPKG_MIRRORS):
//   {"registries": {"registry.example.com": ["mirror.internal:5000", ...]},
//    "urls": {"https://models.example.com": ["https://cdn-eu.example.com", ...]}}
// Keys are a registry HOST[:PORT] or an origin "scheme://host[:port]"; values are tried in
// order, then the origin itself. A missing file means no mirrors; a malformed one is an error
// naming the file and the key.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace torshpkg::distribution {

struct MirrorList {
  std::map<std::string, std::vector<std::string>> registries;
  std::map<std::string, std::vector<std::string>> urls;

  // The mirrors for a registry host, or for the origin of a URL; empty when none.
  std::vector<std::string> for_registry(const std::string& registry) const;
  std::vector<std::string> for_url(const std::string& url) const;
};

std::string default_mirrors_file();

// The URLs to fetch `url` from, in order: each mirror (a base URL whose scheme, host and port
// replace the origin's; the path stays), then `url` itself. Throws Error(kInvalidArgument) for a
// URL that is not http(s).
std::vector<std::string> mirror_sources(const std::string& url,
                                        const std::vector<std::string>& mirrors);
// Throws Error(kInvalidArgument) for a malformed file.
MirrorList load_mirrors(const std::string& path);

}  // namespace torshpkg::distribution
