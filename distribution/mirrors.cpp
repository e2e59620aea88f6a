#include "mirrors.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "torshpkg/error.h"
#include "torshpkg/strict_json.h"

namespace torshpkg::distribution {

std::string default_mirrors_file() {
  const char* env = std::getenv("TORSHPKG_MIRRORS");
  return env != nullptr && *env != '\0' ? env : "/etc/torshpkg/mirrors.json";
}

std::vector<std::string> MirrorList::for_registry(const std::string& registry) const {
  const auto it = registries.find(registry);
  return it == registries.end() ? std::vector<std::string>{} : it->second;
}

std::vector<std::string> MirrorList::for_url(const std::string& url) const {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return {};
  const std::string origin = url.substr(0, url.find('/', scheme + 3));
  const auto it = urls.find(origin);
  return it == urls.end() ? std::vector<std::string>{} : it->second;
}

MirrorList load_mirrors(const std::string& path) {
  MirrorList list;
  std::ifstream in(path, std::ios::binary);
  if (!in) return list;
  std::stringstream text;
  text << in.rdbuf();
  const Json::Value root = parse_strict_json(text.str(), 16, [&](const std::string& why) {
    return invalid_argument(path + ": not valid JSON: " + why);
  });
  if (!root.isObject()) throw invalid_argument(path + ": not a JSON object");
  for (const std::string& key : root.getMemberNames()) {
    if (key != "registries" && key != "urls")
      throw invalid_argument(path + ": " + key + ": unknown key");
    const Json::Value& section = root[key];
    if (!section.isObject()) throw invalid_argument(path + ": " + key + ": must be an object");
    for (const std::string& origin : section.getMemberNames()) {
      const Json::Value& mirrors = section[origin];
      if (!mirrors.isArray()) {
        throw invalid_argument(path + ": " + key + "." + origin + ": must be an array of strings");
      }
      std::vector<std::string>& out = (key == "registries" ? list.registries : list.urls)[origin];
      for (const Json::Value& m : mirrors) {
        if (!m.isString() || m.asString().empty()) {
          throw invalid_argument(path + ": " + key + "." + origin +
                                 ": must be an array of strings");
        }
        out.push_back(m.asString());
      }
    }
  }
  return list;
}

std::vector<std::string> mirror_sources(const std::string& url,
                                        const std::vector<std::string>& mirrors) {
  const auto origin_of = [](const std::string& u) {
    const size_t scheme = u.find("://");
    if (scheme == std::string::npos) throw invalid_argument("'" + u + "' is not an http(s) URL");
    const size_t path = u.find('/', scheme + 3);
    return std::pair{u.substr(0, path), path == std::string::npos ? "/" : u.substr(path)};
  };
  const std::string path = origin_of(url).second;
  std::vector<std::string> sources;
  for (std::string m : mirrors) {
    while (!m.empty() && m.back() == '/') m.pop_back();
    sources.push_back(origin_of(m + "/").first + path);
  }
  sources.push_back(url);
  return sources;
}

}  // namespace torshpkg::distribution
