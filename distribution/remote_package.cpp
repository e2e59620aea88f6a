// A package read where it is (see remote_package.h).
#include "remote_package.h"

#include <mutex>

#include "mirrors.h"
#include "oci_ref.h"
#include "registry_client.h"
#include "torshpkg/error.h"

namespace torshpkg::distribution {

namespace {

RemotePackage open_artifact(const OciRef& ref, const OciOptions& options,
                            RemoteSourceOptions remote) {
  // Kept for the mount's life: a token is renewed through it (one request at a time).
  struct Registry {
    explicit Registry(const OciOptions& o) : client(o) {}
    std::mutex mutex;
    RegistryClient client;
  };
  const auto registry = std::make_shared<Registry>(options);
  const FetchedManifest m = fetch_manifest(registry->client, ref);
  const Descriptor blob = package_layer(m, ref);
  const std::string url = registry->client.base(ref) + "/blobs/" + blob.digest;
  {
    const auto it = registry->client.authorization.find(ref.registry);
    if (it != registry->client.authorization.end()) remote.headers = {it->second};
  }
  remote.reauthorize = [registry, ref, url]() -> std::vector<std::string> {
    std::lock_guard lock(registry->mutex);
    registry->client.authorization.erase(ref.registry);
    // A HEAD of the blob answers the registry's challenge, which leaves the header to send.
    HttpRequest head;
    head.method = "HEAD";
    head.url = url;
    registry->client.send(head, ref);
    const auto it = registry->client.authorization.find(ref.registry);
    if (it == registry->client.authorization.end()) return {};
    return {it->second};
  };
  RemotePackage out;
  out.source = open_remote_source(url, remote);
  if (out.source->size() != blob.size) {
    throw corrupt(ref.to_string(), "the package blob has " + std::to_string(out.source->size()) +
                                       " bytes, its manifest says " + std::to_string(blob.size));
  }
  out.check = [ref, m](const Manifest& pm) { check_served_package(ref, m, pm); };
  return out;
}

}  // namespace

bool is_remote_package(const std::string& source) {
  return is_remote_url(source) || source.starts_with("oci://");
}

RemotePackage open_remote_package(const std::string& source, const RemotePackageOptions& options,
                                  RemoteSourceOptions remote) {
  if (source.starts_with("oci://"))
    return open_artifact(parse_oci_ref(source), options.oci, remote);
  return {open_remote_source(mirror_sources(source, options.mirrors), remote), {}};
}

}  // namespace torshpkg::distribution
