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
#include "registry_client.h"
#include "torshpkg/base64.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/package.h"
#include "torshpkg/semver.h"
#include "torshpkg/sha256.h"
#include "torshpkg/strict_json.h"

namespace torshpkg::distribution {
namespace {

std::string json_text(const Json::Value& v) {
  Json::StreamWriterBuilder w;
  w["indentation"] = "";
  w["emitUTF8"] = true;
  return Json::writeString(w, v);
}

}  // namespace

struct OciClient::Rep : RegistryClient {
  using RegistryClient::RegistryClient;
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

Descriptor package_layer(const FetchedManifest& m, const OciRef& ref) {
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
  return descriptor(*layer, ref.to_string());
}

void check_served_package(const OciRef& ref, const FetchedManifest& m, const Manifest& pm) {
  // The bytes match the registry's manifest; the package must also be what the reference and
  // the manifest's annotations promise, or a registry or mirror could serve any package a
  // trusted key ever signed (an older version, another name) for this tag.
  const std::string name = m.json["annotations"]["dev.torshpkg.name"].asString();
  const std::string version = m.json["annotations"]["dev.torshpkg.version"].asString();
  const std::string served = pm.name + "@" + pm.version;
  if (name.empty() || version.empty()) {
    throw corrupt(ref.to_string(),
                  "the artifact's manifest lacks the dev.torshpkg.name and "
                  "dev.torshpkg.version annotations that say what it holds");
  }
  if (pm.name != name || pm.version != version) {
    throw corrupt(ref.to_string(),
                  "served " + served + " where its annotations promise " + name + "@" + version);
  }
  if (ref.digest.empty() && Version::parse(ref.tag) && ref.tag != pm.version) {
    throw corrupt(ref.to_string(),
                  "served " + served + " for the tag " + ref.tag + " (a version tag)");
  }
}

PullResult OciClient::pull(const OciRef& ref, const std::string& out_path) {
  const FetchedManifest m = fetch_manifest(*rep_, ref);
  PullResult result;
  result.manifest_digest = m.digest;
  const Descriptor blob = package_layer(m, ref);
  result.blob_digest = blob.digest;
  result.size = blob.size;
  result.name = m.json["annotations"]["dev.torshpkg.name"].asString();
  result.version = m.json["annotations"]["dev.torshpkg.version"].asString();
  download_blob(*rep_, ref, blob, out_path);
  try {
    check_served_package(ref, m, Package::open(out_path)->manifest());
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
