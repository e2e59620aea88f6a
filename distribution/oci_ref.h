// References to things in OCI registries: HOST[:PORT]/REPOSITORY[:TAG][@DIGEST], the grammar
// the distribution spec gives repository names and tags, and which registries are spoken to
// over plain HTTP (loopback ones, as docker does).
#pragma once

#include <string>
#include <string_view>

namespace torshpkg::distribution {

struct OciRef {
  std::string registry;    // "localhost:5000", "ghcr.io"
  std::string repository;  // "models/llama"
  std::string tag;         // "1.0" (empty when by digest)
  std::string digest;      // "sha256:<hex>" (empty when by tag)
  std::string reference() const { return digest.empty() ? tag : digest; }
  std::string to_string() const;
};

// "[oci://]HOST[:PORT]/REPO[/...][:TAG][@sha256:HEX]"; the tag defaults to "latest". Throws
// Error(kInvalidArgument) saying what is wrong.
OciRef parse_oci_ref(std::string_view text);
bool is_loopback_registry(const std::string& registry);

}  // namespace torshpkg::distribution
