#include "registry_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "torshpkg/base64.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/sha256.h"
#include "torshpkg/strict_json.h"

namespace torshpkg::distribution {
namespace {

// The registry's error message, from its JSON error body when it sent one.
std::string registry_message(const HttpResponse& r) {
  Json::Value v;
  try {
    v = parse_strict_json(r.body, 16, [](const std::string& why) { return invalid_argument(why); });
  } catch (const Error&) {
    // Not the registry's JSON error: the status line says what there is to say.
  }
  if (v.isObject() && v["errors"].isArray() && !v["errors"].empty()) {
    const Json::Value& e = v["errors"][0];
    return e["code"].asString() + ": " + e["message"].asString();
  }
  return r.body.substr(0, 200);
}

// "key=value" pairs of a WWW-Authenticate challenge, after its scheme.
std::map<std::string, std::string> challenge_params(const std::string& header) {
  std::map<std::string, std::string> out;
  size_t at = header.find(' ');
  while (at != std::string::npos && at < header.size()) {
    while (at < header.size() && (header[at] == ' ' || header[at] == ',')) ++at;
    const size_t eq = header.find('=', at);
    if (eq == std::string::npos) break;
    const std::string key = header.substr(at, eq - at);
    std::string value;
    size_t next = eq + 1;
    if (next < header.size() && header[next] == '"') {
      const size_t close = header.find('"', next + 1);
      if (close == std::string::npos) break;
      value = header.substr(next + 1, close - next - 1);
      next = close + 1;
    } else {
      const size_t comma = header.find(',', next);
      value = header.substr(next, comma == std::string::npos ? std::string::npos : comma - next);
      next = comma;
    }
    out[key] = value;
    at = next;
  }
  return out;
}

std::string url_escape(const std::string& s) {
  std::string out;
  for (const unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      static const char* kHex = "0123456789ABCDEF";
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace

std::string sha256_of(std::string_view bytes) {
  return "sha256:" +
         to_hex(sha256(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())));
}

[[noreturn]] void refuse(const std::string& what, const HttpResponse& r) {
  const ErrorKind kind = r.status == 404 ? ErrorKind::kNotFound : ErrorKind::kIo;
  throw Error(kind, what + ": HTTP " + std::to_string(r.status) + " " + registry_message(r));
}

RegistryClient::RegistryClient(OciOptions o)
    : options(std::move(o)),
      http(HttpOptions{options.connect_timeout_s, options.stall_timeout_s, false}) {
  std::string path = options.docker_config;
  if (path.empty()) {
    if (const char* d = std::getenv("DOCKER_CONFIG"); d != nullptr && *d) {
      path = std::string(d) + "/config.json";
    } else if (const char* home = std::getenv("HOME"); home != nullptr && *home) {
      path = std::string(home) + "/.docker/config.json";
    }
  }
  std::ifstream in(path, std::ios::binary);
  if (in) {
    std::stringstream text;
    text << in.rdbuf();
    docker_config = parse_strict_json(text.str(), 32, [&](const std::string& why) {
      return invalid_argument(path + ": not valid JSON: " + why);
    });
  }
}

std::string RegistryClient::base(const OciRef& ref) const {
  const bool plain = options.insecure || is_loopback_registry(ref.registry);
  return (plain ? "http://" : "https://") + ref.registry + "/v2/" + ref.repository;
}

std::string RegistryClient::credentials(const std::string& registry) const {
  const Json::Value& auths = docker_config["auths"];
  if (!auths.isObject()) return "";
  for (const std::string& key : {registry, "https://" + registry, "http://" + registry}) {
    const Json::Value& a = auths[key];
    if (!a.isObject()) continue;
    if (a["auth"].isString()) {
      if (const auto decoded = base64_decode(a["auth"].asString(), Base64::kLenient)) {
        return std::string(decoded->begin(), decoded->end());
      }
    }
    if (a["username"].isString() && a["password"].isString()) {
      return a["username"].asString() + ":" + a["password"].asString();
    }
  }
  return "";
}

HttpResponse RegistryClient::send(HttpRequest request, const OciRef& ref) {
  const auto with_auth = [&](const HttpRequest& r) {
    HttpRequest copy = r;
    if (const auto it = authorization.find(ref.registry); it != authorization.end()) {
      copy.headers.push_back(it->second);
    }
    return http.send(copy);
  };
  HttpResponse r = with_auth(request);
  if (r.status != 401) return r;
  const std::string challenge = r.header("www-authenticate");
  const std::string creds = credentials(ref.registry);
  if (challenge.starts_with("Basic")) {
    if (creds.empty()) refuse(ref.registry + " wants credentials (none in the docker config)", r);
    authorization[ref.registry] = "Authorization: Basic " + base64_encode(creds);
  } else if (challenge.starts_with("Bearer")) {
    const auto p = challenge_params(challenge);
    const auto realm = p.find("realm");
    if (realm == p.end()) refuse(ref.registry + ": bearer challenge without a realm", r);
    std::string url = realm->second + "?";
    if (p.contains("service")) url += "service=" + url_escape(p.at("service")) + "&";
    if (p.contains("scope")) url += "scope=" + url_escape(p.at("scope"));
    HttpRequest token_request;
    token_request.url = url;
    if (!creds.empty()) {
      token_request.headers.push_back("Authorization: Basic " + base64_encode(creds));
    }
    const HttpResponse t = http.send(token_request);
    if (t.status != 200) refuse(ref.registry + ": token service refused", t);
    const auto no_json = [&] {
      return Error(ErrorKind::kIo, ref.registry + ": token service answered no JSON");
    };
    const Json::Value v =
        parse_strict_json(t.body, 16, [&](const std::string&) { return no_json(); });
    if (!v.isObject()) throw no_json();
    const std::string token =
        v["token"].isString() ? v["token"].asString() : v["access_token"].asString();
    if (token.empty()) throw Error(ErrorKind::kIo, ref.registry + ": token service gave no token");
    authorization[ref.registry] = "Authorization: Bearer " + token;
  } else {
    refuse(ref.registry + ": unsupported authentication challenge", r);
  }
  return with_auth(request);
}

std::string RegistryClient::absolute(const OciRef& ref, const std::string& location) const {
  if (location.starts_with("http://") || location.starts_with("https://")) return location;
  const bool plain = options.insecure || is_loopback_registry(ref.registry);
  return (plain ? "http://" : "https://") + ref.registry + location;
}

bool RegistryClient::blob_exists(const OciRef& ref, const std::string& digest) {
  HttpRequest head;
  head.method = "HEAD";
  head.url = base(ref) + "/blobs/" + digest;
  const HttpResponse r = send(head, ref);
  if (r.status == 200) return true;
  if (r.status == 404) return false;
  refuse("checking blob " + digest + " in " + ref.to_string(), r);
}

bool RegistryClient::mount_blob(const OciRef& ref, const std::string& digest,
                                const std::string& from) {
  HttpRequest post;
  post.method = "POST";
  post.url =
      base(ref) + "/blobs/uploads/?mount=" + url_escape(digest) + "&from=" + url_escape(from);
  const HttpResponse r = send(post, ref);
  if (r.status == 201) return true;
  if (r.status == 202 && !r.header("location").empty()) {
    HttpRequest cancel;
    cancel.method = "DELETE";
    cancel.url = absolute(ref, r.header("location"));
    send(cancel, ref);
    return false;
  }
  refuse("mounting blob " + digest + " into " + ref.to_string(), r);
}

void RegistryClient::upload(const OciRef& ref, const std::string& digest,
                            const std::shared_ptr<const ByteSource>& source,
                            std::span<const uint8_t> bytes) {
  HttpRequest start;
  start.method = "POST";
  start.url = base(ref) + "/blobs/uploads/";
  HttpResponse r = send(start, ref);
  if (r.status != 202) refuse("starting an upload to " + ref.to_string(), r);
  std::string location = absolute(ref, r.header("location"));
  const uint64_t size = source ? source->size() : bytes.size();
  for (uint64_t at = 0; at < size;) {
    const uint64_t n = std::min<uint64_t>(options.chunk_bytes, size - at);
    HttpRequest patch;
    patch.method = "PATCH";
    patch.url = location;
    patch.headers = {"Content-Type: application/octet-stream",
                     "Content-Range: " + std::to_string(at) + "-" + std::to_string(at + n - 1)};
    if (source) {
      patch.body_source = source;
      patch.body_offset = at;
      patch.body_size = n;
    } else {
      patch.body = bytes.subspan(static_cast<size_t>(at), static_cast<size_t>(n));
    }
    r = send(patch, ref);
    if (r.status != 202) refuse("uploading to " + ref.to_string(), r);
    location = absolute(ref, r.header("location"));
    at += n;
    if (options.progress && source) options.progress(at, size);
  }
  HttpRequest finish;
  finish.method = "PUT";
  finish.url = location + (location.find('?') == std::string::npos ? "?" : "&") +
               "digest=" + url_escape(digest);
  finish.headers = {"Content-Type: application/octet-stream"};
  r = send(finish, ref);
  if (r.status != 201) refuse("finishing the upload of " + digest + " to " + ref.to_string(), r);
}

Descriptor descriptor(const Json::Value& v, const std::string& where) {
  Descriptor d;
  if (!v.isObject() || !v["digest"].isString() || !v["size"].isUInt64()) {
    throw corrupt(where, "a descriptor without digest or size");
  }
  d.media_type = v["mediaType"].asString();
  d.digest = v["digest"].asString();
  d.size = v["size"].asUInt64();
  if (!d.digest.starts_with("sha256:") || !digest_from_hex(d.digest.substr(7))) {
    throw corrupt(where, "digest '" + d.digest + "' is not sha256");
  }
  return d;
}

// The config and layers a manifest names.
std::vector<Descriptor> blobs_of(const FetchedManifest& m, const std::string& where) {
  std::vector<Descriptor> out;
  out.push_back(descriptor(m.json["config"], where));
  if (!m.json["layers"].isArray()) throw corrupt(where, "manifest without layers");
  for (const Json::Value& l : m.json["layers"]) out.push_back(descriptor(l, where));
  return out;
}

FetchedManifest fetch_manifest(RegistryClient& rep, const OciRef& ref) {
  HttpRequest get;
  get.url = rep.base(ref) + "/manifests/" + ref.reference();
  get.headers = {"Accept: " + std::string(kManifestMediaType)};
  get.max_body = 4u << 20;
  const HttpResponse mr = rep.send(get, ref);
  if (mr.status != 200) refuse("fetching the manifest of " + ref.to_string(), mr);
  FetchedManifest m;
  m.bytes = mr.body;
  m.digest = sha256_of(mr.body);
  if (!ref.digest.empty() && ref.digest != m.digest) {
    throw corrupt(ref.to_string(), "the manifest served has digest " + m.digest);
  }
  m.json = parse_strict_json(mr.body, 32, [&](const std::string& why) {
    return corrupt(ref.to_string(), "manifest is not valid JSON: " + why);
  });
  if (!m.json.isObject()) throw corrupt(ref.to_string(), "manifest is not a JSON object");
  return m;
}

// Streams a blob into a temporary file beside `out_path`, hashing as it arrives; renames it into
// place only when digest and size match.
void download_blob(RegistryClient& rep, const OciRef& ref, const Descriptor& blob,
                   const std::string& out_path) {
  const size_t slash = out_path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : out_path.substr(0, slash == 0 ? 1 : slash);
  std::string tmp = dir + "/.torshpkg-pull-XXXXXX";
  const UniqueFd out(::mkstemp(tmp.data()));
  if (!out) throw io_error(dir, "cannot create a temporary file", errno);
  TempPath cleanup(tmp);
  const int fd = out.get();
  Sha256 hasher;
  uint64_t received = 0;
  HttpRequest get;
  get.url = rep.base(ref) + "/blobs/" + blob.digest;
  get.progress = [&](uint64_t done, uint64_t) {
    if (rep.options.progress) rep.options.progress(done, blob.size);
  };
  get.sink = [&](std::span<const uint8_t> data) {
    if (data.size() > blob.size - received) {
      throw corrupt(ref.to_string(), "blob " + blob.digest + " is larger than the manifest says");
    }
    hasher.update(data);
    for (size_t at = 0; at < data.size();) {
      const ssize_t n = ::write(fd, data.data() + at, data.size() - at);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw io_error(tmp, "write failed", errno);
      at += static_cast<size_t>(n);
    }
    received += data.size();
    return true;
  };
  const HttpResponse r = rep.send(get, ref);
  if (r.status != 200) refuse("fetching blob " + blob.digest + " of " + ref.to_string(), r);
  if (received != blob.size) {
    throw corrupt(ref.to_string(), "blob " + blob.digest + " came with " +
                                       std::to_string(received) + " of " +
                                       std::to_string(blob.size) + " bytes");
  }
  const std::string got = "sha256:" + to_hex(hasher.finish());
  if (got != blob.digest) {
    throw corrupt(ref.to_string(),
                  "blob served has digest " + got + ", the manifest says " + blob.digest);
  }
  if (::fsync(fd) != 0) throw io_error(tmp, "fsync failed", errno);
  ::fchmod(fd, 0644);
  if (::rename(tmp.c_str(), out_path.c_str()) != 0) {
    throw io_error(out_path, "cannot rename into place", errno);
  }
  cleanup.keep();
}

}  // namespace torshpkg::distribution
