#include "oci.h"

#include <fcntl.h>
#include <json/json.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "http.h"
#include "torshpkg/base64.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/package.h"
#include "torshpkg/semver.h"
#include "torshpkg/sha256.h"
#include "torshpkg/strict_json.h"

namespace torshpkg::distribution {
namespace {

std::string sha256_of(std::string_view bytes) {
  return "sha256:" +
         to_hex(sha256(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())));
}

std::string json_text(const Json::Value& v) {
  Json::StreamWriterBuilder w;
  w["indentation"] = "";
  w["emitUTF8"] = true;
  return Json::writeString(w, v);
}

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

[[noreturn]] void refuse(const std::string& what, const HttpResponse& r) {
  const ErrorKind kind = r.status == 404 ? ErrorKind::kNotFound : ErrorKind::kIo;
  throw Error(kind, what + ": HTTP " + std::to_string(r.status) + " " + registry_message(r));
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

struct OciClient::Rep {
  OciOptions options;
  HttpClient http;
  std::map<std::string, std::string> authorization;  // registry -> "Authorization: ..." header
  Json::Value docker_config;

  explicit Rep(OciOptions o)
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

  std::string base(const OciRef& ref) const {
    const bool plain = options.insecure || is_loopback_registry(ref.registry);
    return (plain ? "http://" : "https://") + ref.registry + "/v2/" + ref.repository;
  }

  // user:password for a registry from the docker config, empty when none.
  std::string credentials(const std::string& registry) const {
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

  // Sends with the registry's credentials, answering a 401 challenge once.
  HttpResponse send(HttpRequest request, const OciRef& ref) {
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
      if (token.empty())
        throw Error(ErrorKind::kIo, ref.registry + ": token service gave no token");
      authorization[ref.registry] = "Authorization: Bearer " + token;
    } else {
      refuse(ref.registry + ": unsupported authentication challenge", r);
    }
    return with_auth(request);
  }

  std::string absolute(const OciRef& ref, const std::string& location) const {
    if (location.starts_with("http://") || location.starts_with("https://")) return location;
    const bool plain = options.insecure || is_loopback_registry(ref.registry);
    return (plain ? "http://" : "https://") + ref.registry + location;
  }

  bool blob_exists(const OciRef& ref, const std::string& digest) {
    HttpRequest head;
    head.method = "HEAD";
    head.url = base(ref) + "/blobs/" + digest;
    const HttpResponse r = send(head, ref);
    if (r.status == 200) return true;
    if (r.status == 404) return false;
    refuse("checking blob " + digest + " in " + ref.to_string(), r);
  }

  // Asks the registry to link a blob another repository of it holds (no bytes move); false when
  // it does not (it then opened an upload, which is cancelled).
  bool mount_blob(const OciRef& ref, const std::string& digest, const std::string& from) {
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

  // Uploads [0, size) of `source` (or `bytes`) as blob `digest`: chunked PATCHes, then PUT.
  void upload(const OciRef& ref, const std::string& digest,
              const std::shared_ptr<const ByteSource>& source, std::span<const uint8_t> bytes) {
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
};

OciClient::OciClient(OciOptions options) : rep_(new Rep(std::move(options))) {}
OciClient::~OciClient() {
  delete rep_;
}

PushResult OciClient::push(const std::string& package_path, const OciRef& ref) {
  if (ref.tag.empty()) throw invalid_argument("push needs a tag: " + ref.to_string());
  const std::shared_ptr<const ByteSource> source = open_file_source(package_path);
  const auto pkg = Package::open(source);
  const Manifest& m = pkg->manifest();
  PushResult result;
  result.blob_size = source->size();
  result.blob_digest = "sha256:" + sha256_hex(*source);
  std::string signers;
  for (const Signature& s : pkg->signatures()) signers += (signers.empty() ? "" : ",") + s.key_id;

  Json::Value config(Json::objectValue);
  config["name"] = m.name;
  config["version"] = m.version;
  config["description"] = m.description;
  config["package_id"] = m.package_id;
  config["created"] = m.created;
  config["manifest_digest"] = "sha256:" + pkg->manifest_digest();
  config["resources"] = Json::UInt64(m.resources.size());
  config["signers"] = Json::Value(Json::arrayValue);
  for (const Signature& s : pkg->signatures()) config["signers"].append(s.key_id);
  config["dependencies"] = Json::Value(Json::arrayValue);
  for (const Dependency& d : m.dependencies) {
    Json::Value v(Json::objectValue);
    v["name"] = d.name;
    v["version_req"] = d.version_req;
    v["optional"] = d.optional;
    config["dependencies"].append(v);
  }
  const std::string config_text = json_text(config);
  const std::string config_digest = sha256_of(config_text);

  result.blob_existed = rep_->blob_exists(ref, result.blob_digest);
  if (!result.blob_existed) rep_->upload(ref, result.blob_digest, source, {});
  if (!rep_->blob_exists(ref, config_digest)) {
    rep_->upload(
        ref, config_digest, nullptr,
        std::span(reinterpret_cast<const uint8_t*>(config_text.data()), config_text.size()));
  }

  Json::Value manifest(Json::objectValue);
  manifest["schemaVersion"] = 2;
  manifest["mediaType"] = std::string(kManifestMediaType);
  manifest["artifactType"] = std::string(kArtifactType);
  manifest["config"]["mediaType"] = std::string(kConfigMediaType);
  manifest["config"]["digest"] = config_digest;
  manifest["config"]["size"] = Json::UInt64(config_text.size());
  Json::Value layer(Json::objectValue);
  layer["mediaType"] = std::string(kPackageMediaType);
  layer["digest"] = result.blob_digest;
  layer["size"] = Json::UInt64(result.blob_size);
  layer["annotations"]["org.opencontainers.image.title"] = m.name + "-" + m.version + ".torshpkg";
  manifest["layers"].append(layer);
  Json::Value& notes = manifest["annotations"];
  notes["org.opencontainers.image.title"] = m.name;
  notes["org.opencontainers.image.version"] = m.version;
  notes["dev.torshpkg.name"] = m.name;
  notes["dev.torshpkg.version"] = m.version;
  notes["dev.torshpkg.signers"] = signers;
  notes["dev.torshpkg.manifest-digest"] = "sha256:" + pkg->manifest_digest();
  if (!m.created.empty()) notes["org.opencontainers.image.created"] = m.created;
  const std::string manifest_text = json_text(manifest);
  HttpRequest put;
  put.method = "PUT";
  put.url = rep_->base(ref) + "/manifests/" + ref.tag;
  put.headers = {"Content-Type: " + std::string(kManifestMediaType)};
  put.body =
      std::span(reinterpret_cast<const uint8_t*>(manifest_text.data()), manifest_text.size());
  const HttpResponse r = rep_->send(put, ref);
  if (r.status != 201) refuse("putting the manifest of " + ref.to_string(), r);
  result.manifest_digest = sha256_of(manifest_text);
  const std::string told = r.header("docker-content-digest");
  if (!told.empty() && told != result.manifest_digest) {
    throw corrupt(ref.to_string(), "the registry stored the manifest as " + told + ", not " +
                                       result.manifest_digest);
  }
  return result;
}

// A manifest as served: its bytes, digest and parsed JSON.
struct FetchedManifest {
  std::string bytes;
  std::string digest;
  Json::Value json;
};

struct Descriptor {
  std::string media_type;
  std::string digest;
  uint64_t size = 0;
};

namespace {

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

}  // namespace

FetchedManifest fetch_manifest(OciClient::Rep& rep, const OciRef& ref);
void download_blob(OciClient::Rep& rep, const OciRef& ref, const Descriptor& blob,
                   const std::string& out_path);

FetchedManifest fetch_manifest(OciClient::Rep& rep, const OciRef& ref) {
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
void download_blob(OciClient::Rep& rep, const OciRef& ref, const Descriptor& blob,
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

PullResult OciClient::pull(const OciRef& ref, const std::string& out_path) {
  const FetchedManifest m = fetch_manifest(*rep_, ref);
  PullResult result;
  result.manifest_digest = m.digest;
  const Json::Value* layer = nullptr;
  if (m.json["layers"].isArray()) {
    for (const Json::Value& l : m.json["layers"]) {
      if (l.isObject() && l["mediaType"].isString() &&
          l["mediaType"].asString() == kPackageMediaType) {
        layer = &l;
      }
    }
  }
  if (layer == nullptr) {
    throw corrupt(ref.to_string(), "not a torshpkg artifact (no layer of type " +
                                       std::string(kPackageMediaType) + ")");
  }
  const Descriptor blob = descriptor(*layer, ref.to_string());
  result.blob_digest = blob.digest;
  result.size = blob.size;
  result.name = m.json["annotations"]["dev.torshpkg.name"].asString();
  result.version = m.json["annotations"]["dev.torshpkg.version"].asString();
  download_blob(*rep_, ref, blob, out_path);
  // The bytes match the registry's manifest; the package must also be what the reference and
  // the manifest's annotations promise, or a registry or mirror could serve any package a
  // trusted key ever signed (an older version, another name) for this tag.
  try {
    const auto package = Package::open(out_path);
    const Manifest& pm = package->manifest();
    const std::string served = pm.name + "@" + pm.version;
    if (result.name.empty() || result.version.empty()) {
      throw corrupt(ref.to_string(),
                    "the artifact's manifest lacks the dev.torshpkg.name and "
                    "dev.torshpkg.version annotations that say what it holds");
    }
    if (pm.name != result.name || pm.version != result.version) {
      throw corrupt(ref.to_string(), "served " + served + " where its annotations promise " +
                                         result.name + "@" + result.version);
    }
    if (ref.digest.empty() && Version::parse(ref.tag) && ref.tag != pm.version) {
      throw corrupt(ref.to_string(),
                    "served " + served + " for the tag " + ref.tag + " (a version tag)");
    }
  } catch (...) {
    ::unlink(out_path.c_str());
    throw;
  }
  return result;
}

ReplicateResult OciClient::replicate(const OciRef& source, const OciRef& target, bool all_tags,
                                     const std::string& work_dir) {
  ReplicateResult result;
  std::vector<OciRef> sources;
  if (all_tags) {
    HttpRequest list;
    list.url = rep_->base(source) + "/tags/list?n=10000";
    const HttpResponse r = rep_->send(list, source);
    if (r.status != 200)
      refuse("listing the tags of " + source.registry + "/" + source.repository, r);
    const auto bad_list = [&] { return corrupt(source.to_string(), "tag list is not valid JSON"); };
    const Json::Value v =
        parse_strict_json(r.body, 16, [&](const std::string&) { return bad_list(); });
    if (!v.isObject() || !v["tags"].isArray()) throw bad_list();
    for (const Json::Value& t : v["tags"]) {
      OciRef s = source;
      s.tag = t.asString();
      s.digest.clear();
      sources.push_back(std::move(s));
    }
  } else {
    sources.push_back(source);
  }
  const bool same_registry = source.registry == target.registry;
  for (const OciRef& from : sources) {
    OciRef to = target;
    if (all_tags || to.tag.empty()) to.tag = from.tag;
    if (to.tag.empty()) throw invalid_argument("replicate needs a tag for " + target.to_string());
    to.digest.clear();
    const FetchedManifest m = fetch_manifest(*rep_, from);
    for (const Descriptor& blob : blobs_of(m, from.to_string())) {
      if (rep_->blob_exists(to, blob.digest)) {
        ++result.blobs_present;
        continue;
      }
      if (same_registry && rep_->mount_blob(to, blob.digest, from.repository)) {
        ++result.blobs_mounted;
        continue;
      }
      const std::string file = work_dir + "/.torshpkg-blob-" + blob.digest.substr(7);
      download_blob(*rep_, from, blob, file);
      struct Remove {
        std::string path;
        ~Remove() { ::unlink(path.c_str()); }
      } remove{file};
      rep_->upload(to, blob.digest, open_file_source(file), {});
      ++result.blobs_copied;
      result.bytes_copied += blob.size;
    }
    HttpRequest put;
    put.method = "PUT";
    put.url = rep_->base(to) + "/manifests/" + to.tag;
    const std::string media = m.json["mediaType"].isString() ? m.json["mediaType"].asString()
                                                             : std::string(kManifestMediaType);
    put.headers = {"Content-Type: " + media};
    put.body = std::span(reinterpret_cast<const uint8_t*>(m.bytes.data()), m.bytes.size());
    const HttpResponse r = rep_->send(put, to);
    if (r.status != 201) refuse("putting the manifest of " + to.to_string(), r);
    const std::string told = r.header("docker-content-digest");
    if (!told.empty() && told != m.digest) {
      throw corrupt(to.to_string(), "the target stored the manifest as " + told);
    }
    result.tags.push_back(to.tag + "@" + m.digest);
  }
  return result;
}

PullResult pull_with_mirrors(OciClient& client, const OciRef& ref,
                             const std::vector<std::string>& mirrors, const std::string& out_path,
                             const std::function<void(const std::string&)>& warn,
                             std::string* used) {
  std::vector<OciRef> refs;
  for (const std::string& m : mirrors) {
    OciRef mirrored = ref;
    mirrored.registry = m;
    refs.push_back(std::move(mirrored));
  }
  refs.push_back(ref);
  for (size_t i = 0;; ++i) {
    try {
      PullResult r = client.pull(refs[i], out_path);
      if (used != nullptr) *used = refs[i].to_string();
      return r;
    } catch (const Error& e) {
      if (i + 1 == refs.size()) throw;
      if (warn) warn(refs[i].registry + ": " + e.what() + "; trying the next source");
    }
  }
}

}  // namespace torshpkg::distribution
