// Packages in OCI registries (the distribution API that Docker, the CNCF Distribution registry,
// Harbor, ECR, GHCR and others serve): a package is one blob of media type
// application/vnd.torshpkg.package.v1+zip, with a small JSON config blob summarizing its
// manifest and an OCI image manifest annotated with name, version and signer key ids, the way
// ORAS and KitOps ship artifacts.
//
// Registries on loopback hosts (localhost, 127.0.0.0/8, ::1) are spoken to over plain HTTP, as
// docker does; any other over HTTPS unless `insecure` (plain HTTP). Credentials come from a
// docker-style config.json ("auths": {"host:port": {"auth": base64(user:password)}}) and are
// sent as Basic, or exchanged for a Bearer token when the registry asks for one. Every blob and
// manifest pulled is checked against its digest before it is used.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "oci_ref.h"

namespace torshpkg::distribution {

inline constexpr std::string_view kPackageMediaType = "application/vnd.torshpkg.package.v1+zip";
inline constexpr std::string_view kConfigMediaType = "application/vnd.torshpkg.config.v1+json";
inline constexpr std::string_view kArtifactType = "application/vnd.torshpkg.package.v1";
inline constexpr std::string_view kManifestMediaType = "application/vnd.oci.image.manifest.v1+json";

struct OciOptions {
  bool insecure = false;
  std::string docker_config;  // default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json
  uint64_t chunk_bytes = 16u << 20;  // PATCH size for uploads
  long connect_timeout_s = 10;
  long stall_timeout_s = 30;  // abort a transfer under 1 byte/s for this long
  std::function<void(uint64_t done, uint64_t total)> progress;
};

struct PushResult {
  std::string manifest_digest;
  std::string blob_digest;
  uint64_t blob_size = 0;
  bool blob_existed = false;  // the registry had it: nothing uploaded
};

struct PullResult {
  std::string manifest_digest;
  std::string blob_digest;
  uint64_t size = 0;
  std::string name;
  std::string version;
};

struct ReplicateResult {
  std::vector<std::string> tags;  // "tag@sha256:..." as written to the target
  uint64_t blobs_copied = 0;
  uint64_t blobs_mounted = 0;  // linked within one registry, no bytes moved
  uint64_t blobs_present = 0;  // the target had them
  uint64_t bytes_copied = 0;
};

class OciClient {
 public:
  struct Rep;

  explicit OciClient(OciOptions options = {});
  ~OciClient();
  OciClient(const OciClient&) = delete;
  OciClient& operator=(const OciClient&) = delete;

  // Uploads the package (unless the registry has its blob), its config and the manifest, tagged
  // ref.tag. Throws Error(kCorrupt) when `package_path` is not a valid package, Error(kIo) for
  // transport failures and registry refusals (naming the status and the registry's message).
  PushResult push(const std::string& package_path, const OciRef& ref);

  // Downloads the package ref names into `out_path` (written beside it and renamed only once
  // its digest and size match the manifest). Throws Error(kCorrupt) on any digest mismatch,
  // Error(kNotFound) for a missing manifest or blob.
  PullResult pull(const OciRef& ref, const std::string& out_path);

  // Copies the artifact `source` names (or, with all_tags, every tag of its repository) to
  // `target` (its tag, or the source's): blobs the target has are skipped, blobs of the same
  // registry are mounted across repositories, others are downloaded into `work_dir` (digest
  // checked) and uploaded; the manifest is written with its bytes unchanged, so its digest is
  // the same on both sides. Running it again changes nothing.
  ReplicateResult replicate(const OciRef& source, const OciRef& target, bool all_tags,
                            const std::string& work_dir);

 private:
  Rep* rep_;
};

// Pulls `ref` from each mirror registry in order (HOST[:PORT] replacing the registry), then
// from its own registry; a source that fails (wrong bytes, missing, unreachable) is reported
// through `warn` and the next one tried. Throws the origin's error when all fail.
PullResult pull_with_mirrors(OciClient& client, const OciRef& ref,
                             const std::vector<std::string>& mirrors, const std::string& out_path,
                             const std::function<void(const std::string&)>& warn,
                             std::string* used = nullptr);

}  // namespace torshpkg::distribution
