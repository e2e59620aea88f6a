// A package read where it is, without a download: an http(s):// URL (its mirrors tried before
// it), or an oci:// reference resolved to the package blob (the manifest fetched with its
// digest checked, as `pull` does) whose blob is read at the registry with its credentials
// (renewed when a Bearer token expires). Both are RemoteSources: every read a range request,
// every chunk verified by the package. `torshpkg mount` and torshpkgd's lazy entries open
// packages this way.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "oci.h"
#include "remote_source.h"
#include "torshpkg/manifest.h"

namespace torshpkg::distribution {

// True for the sources open_remote_package takes: http://, https:// and oci://.
bool is_remote_package(const std::string& source);

struct RemotePackageOptions {
  std::vector<std::string> mirrors;  // for an http(s):// URL: base URLs tried first, in order
  OciOptions oci;                    // for an oci:// reference: credentials, plain HTTP
};

struct RemotePackage {
  std::shared_ptr<RemoteSource> source;
  // For an oci:// reference: throws Error(kCorrupt) unless the opened package is what the
  // reference and the manifest's annotations promise (name, version; a version tag's
  // version), as `pull` checks. Does nothing for a URL.
  std::function<void(const Manifest&)> check;
};

// Throws as open_remote_source does for a URL; for a reference as `pull` does for the manifest
// (kNotFound, kCorrupt for a digest mismatch or an artifact that is not a package, kIo), and
// Error(kCorrupt) when the blob's size differs from the manifest's.
RemotePackage open_remote_package(const std::string& source, const RemotePackageOptions& options,
                                  RemoteSourceOptions remote = {});

}  // namespace torshpkg::distribution
