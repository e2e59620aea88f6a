// A package in an OCI registry, mounted without pulling it: the reference resolved to the
// package blob (the manifest fetched with its digest checked, as `pull` does), and the blob read
// with range requests through RemoteSource, with the registry's credentials (renewed when a
// Bearer token expires).
#pragma once

#include <memory>
#include <string>

#include "oci.h"
#include "remote_source.h"
#include "torshpkg/manifest.h"

namespace torshpkg::distribution {

struct RemoteArtifact {
  std::shared_ptr<RemoteSource> source;  // the package blob
  std::string manifest_digest;           // of the artifact's manifest
  std::string blob_digest;               // of the package blob (what a full copy must hash to)
  // Throws Error(kCorrupt) unless the opened package is what the reference and the manifest's
  // annotations promise (name, version; a version tag's version), as `pull` checks.
  std::function<void(const Manifest&)> check;
};

// Throws as `pull` does for the manifest (kNotFound, kCorrupt for a digest mismatch or an
// artifact that is not a package, kIo), and Error(kCorrupt) when the blob's size differs from
// the manifest's.
RemoteArtifact open_remote_artifact(const OciRef& ref, const OciOptions& options,
                                    RemoteSourceOptions remote = {});

}  // namespace torshpkg::distribution
