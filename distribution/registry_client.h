// The registry side of the OCI client: one registry's HTTP API with the docker config's
// credentials (Basic, or a Bearer token when the registry's challenge asks for one), blob
// existence checks, cross-repository mounts and chunked uploads, manifests fetched with their
// digest checked, and blobs downloaded with theirs.
#pragma once

#include <json/json.h>

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http.h"
#include "oci.h"
#include "torshpkg/manifest.h"

namespace torshpkg::distribution {

class RegistryClient {
 public:
  // Reads the docker config (OciOptions::docker_config, else $DOCKER_CONFIG, else $HOME's).
  explicit RegistryClient(OciOptions options);
  // The repository's API root: http(s)://REGISTRY/v2/REPOSITORY.
  std::string base(const OciRef& ref) const;
  // user:password for a registry from the docker config, empty when none.
  std::string credentials(const std::string& registry) const;
  // Sends with the registry's credentials, answering a 401 challenge once.
  HttpResponse send(HttpRequest request, const OciRef& ref);
  // A Location header's URL made absolute against the registry.
  std::string absolute(const OciRef& ref, const std::string& location) const;
  bool blob_exists(const OciRef& ref, const std::string& digest);
  // Asks the registry to link a blob another repository of it holds (no bytes move); false when
  // it does not (it then opened an upload, which is cancelled).
  bool mount_blob(const OciRef& ref, const std::string& digest, const std::string& from);
  // Uploads [0, size) of `source` (or `bytes`) as blob `digest`: chunked PATCHes, then PUT.
  void upload(const OciRef& ref, const std::string& digest,
              const std::shared_ptr<const ByteSource>& source, std::span<const uint8_t> bytes);

  OciOptions options;
  HttpClient http;
  std::map<std::string, std::string> authorization;  // registry -> "Authorization: ..." header
  Json::Value docker_config;
};

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

// A descriptor of a manifest, checked (a sha256 digest and a size); `where` names the manifest.
Descriptor descriptor(const Json::Value& v, const std::string& where);
// The config and layers a manifest names.
std::vector<Descriptor> blobs_of(const FetchedManifest& m, const std::string& where);
// The manifest `ref` names, its digest checked against the reference's when it has one.
FetchedManifest fetch_manifest(RegistryClient& rep, const OciRef& ref);
// Streams a blob into a temporary file beside `out_path`, hashing as it arrives; renames it into
// place only when digest and size match.
void download_blob(RegistryClient& rep, const OciRef& ref, const Descriptor& blob,
                   const std::string& out_path);

// The package blob of a torshpkg artifact's manifest (Error(kCorrupt) when it has none).
Descriptor package_layer(const FetchedManifest& m, const OciRef& ref);
// That the package a reference served is what the reference and the manifest's annotations
// promise (name, version; a version tag's version): Error(kCorrupt) otherwise.
void check_served_package(const OciRef& ref, const FetchedManifest& m, const Manifest& pm);

// Throws the Error an HTTP answer `r` to `what` means, with the registry's message.
[[noreturn]] void refuse(const std::string& what, const HttpResponse& r);
// "sha256:<hex>" of `bytes`.
std::string sha256_of(std::string_view bytes);

}  // namespace torshpkg::distribution
