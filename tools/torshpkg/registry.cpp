// torshpkg push and pull: packages to and from OCI registries.
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "commands.h"
#include "http_pull.h"
#include "mirrors.h"
#include "oci.h"
#include "torshpkg/store.h"

namespace torshpkg::cli {

Action add_push_command(CLI::App& app) {
  struct Args {
    std::string pkg;
    std::string ref;
    bool insecure = false;
    std::string docker_config;
    std::string chunk_size = "16M";
    bool quiet = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("push", "Push a package to an OCI registry");
  sub->add_option("PKG", a->pkg, "Package file")->required();
  sub->add_option("REF", a->ref, "HOST[:PORT]/REPOSITORY:TAG, e.g. localhost:5000/models/llama:1.0")
      ->required();
  sub->add_flag("--insecure", a->insecure, "Plain HTTP to a registry that is not on loopback");
  sub->add_option("--docker-config", a->docker_config,
                  "Credentials file (default $DOCKER_CONFIG/config.json or ~/.docker/config.json)");
  sub->add_option("--chunk-size", a->chunk_size,
                  "Bytes per upload request (default 16M; smaller for proxies that limit bodies)");
  sub->add_flag("-q,--quiet", a->quiet, "No progress bar or summary");
  return [a] {
    const distribution::OciRef ref = distribution::parse_oci_ref(a->ref);
    ProgressBar bar("push", !a->quiet);
    distribution::OciOptions options;
    options.chunk_bytes = parse_byte_size(a->chunk_size, "--chunk-size");
    if (options.chunk_bytes == 0) throw invalid_argument("--chunk-size must be above 0");
    options.insecure = a->insecure;
    options.docker_config = a->docker_config;
    options.progress = [&](uint64_t done, uint64_t total) { bar.update(done, total); };
    distribution::OciClient client(options);
    const distribution::PushResult r = client.push(a->pkg, ref);
    bar.finish();
    if (!a->quiet) {
      std::cout << "pushed " << a->pkg << " to " << ref.to_string() << "@" << r.manifest_digest
                << " (" << human_bytes(r.blob_size)
                << (r.blob_existed ? ", blob already there" : "") << ")\n";
    }
    return kExitOk;
  };
}

Action add_pull_command(CLI::App& app) {
  struct Args {
    std::string ref;
    std::string out;
    bool install = false;
    bool allow_downgrade = false;
    std::string store = Store::default_root();
    std::string trusted_keys = "/etc/torshpkg/trusted-keys";
    bool allow_unsigned = false;
    bool insecure = false;
    std::string docker_config;
    bool quiet = false;
    bool force = false;
    std::vector<std::string> mirrors;
    std::string mirrors_file = distribution::default_mirrors_file();
    std::string sha256;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "pull", "Pull a package from an OCI registry or an HTTP(S) server (every digest checked)");
  sub->add_option("REF", a->ref,
                  "HOST[:PORT]/REPOSITORY[:TAG], ...@sha256:HEX, or an http(s):// URL")
      ->required();
  sub->add_option("--mirror", a->mirrors,
                  "Try this first (repeatable, in order): a registry HOST[:PORT] for OCI "
                  "references, a base URL for http(s) ones; the origin is tried last");
  sub->add_option("--mirrors-file", a->mirrors_file,
                  "Mirror list, tried after --mirror (default $TORSHPKG_MIRRORS or "
                  "/etc/torshpkg/mirrors.json)");
  sub->add_option("--sha256", a->sha256, "Expected SHA-256 of the package file (http(s) pulls)");
  sub->add_option("-o,--output", a->out, "Write the package here");
  sub->add_flag("--install", a->install, "Install it into the local store (verified)");
  sub->add_option("--store", a->store, "Store folder for --install");
  sub->add_option("--trusted-keys", a->trusted_keys, "Folder of trusted .pub keys for --install");
  sub->add_flag("--allow-unsigned", a->allow_unsigned, "--install without a trusted signature");
  sub->add_flag("--allow-downgrade", a->allow_downgrade,
                "--install even when REF gave this store a later version or another package "
                "before");
  sub->add_flag("--insecure", a->insecure, "Plain HTTP to a registry that is not on loopback");
  sub->add_option("--docker-config", a->docker_config, "Credentials file");
  sub->add_flag("-f,--force", a->force, "Replace the output file if it exists");
  sub->add_flag("-q,--quiet", a->quiet, "No progress bar or summary");
  return [a] {
    if (a->out.empty() == !a->install) throw invalid_argument("give -o FILE or --install (one)");
    if (!a->out.empty()) refuse_existing(a->out, a->force);
    const bool http = a->ref.starts_with("http://") || a->ref.starts_with("https://");
    const distribution::MirrorList configured = distribution::load_mirrors(a->mirrors_file);
    ProgressBar bar("pull", !a->quiet);
    const auto warn = [&](const std::string& message) {
      std::cerr << "torshpkg: warning: " << message << "\n";
    };
    std::string target = a->out;
    std::string staging;
    if (a->install) {
      std::filesystem::create_directories(a->store + "/tmp");
      staging = a->store + "/tmp/pull-" + std::to_string(::getpid()) + ".torshpkg";
      target = staging;
    }
    struct Remove {
      std::string path;
      ~Remove() {
        if (!path.empty()) ::unlink(path.c_str());
      }
    } remove_staging{staging};
    distribution::PullResult r;
    std::string source = a->ref;
    if (http) {
      distribution::HttpPullOptions options;
      options.mirrors = a->mirrors;
      for (const std::string& m : configured.for_url(a->ref)) options.mirrors.push_back(m);
      options.sha256 = a->sha256;
      options.http.insecure_tls = a->insecure;
      options.progress = [&](uint64_t done, uint64_t total) { bar.update(done, total); };
      options.warn = warn;
      const distribution::HttpPullResult h = distribution::http_pull(a->ref, target, options);
      r.blob_digest = "sha256:" + h.sha256;
      r.size = h.size;
      source = h.url;
    } else {
      const distribution::OciRef origin = distribution::parse_oci_ref(a->ref);
      distribution::OciOptions options;
      options.insecure = a->insecure;
      options.docker_config = a->docker_config;
      options.progress = [&](uint64_t done, uint64_t total) { bar.update(done, total); };
      distribution::OciClient client(options);
      std::vector<std::string> mirrors = a->mirrors;
      for (const std::string& m : configured.for_registry(origin.registry)) mirrors.push_back(m);
      r = distribution::pull_with_mirrors(client, origin, mirrors, target, warn, &source);
    }
    bar.finish();
    record_lineage_event("", "pulled", target,
                         {{"source", source},
                          {"manifest_digest", r.manifest_digest},
                          {"blob_digest", r.blob_digest}});
    if (a->install) {
      InstallPolicy policy;
      policy.trusted_keys_dir = a->trusted_keys;
      policy.allow_unsigned = a->allow_unsigned;
      // Before installing: this reference must not go back to an older version or another
      // package than it gave this store before.
      {
        const Manifest pulled = Package::open(staging)->manifest();
        Store(a->store).check_and_record_source(a->ref, pulled.name, pulled.version,
                                                a->allow_downgrade);
      }
      const InstallResult in = Store(a->store).take(staging, policy);
      if (!a->quiet) {
        std::cout << "pulled " << source << " (" << r.blob_digest << ") and "
                  << (in.already_installed ? "found it installed: " : "installed ")
                  << in.package.name << "@" << in.package.version << "\n";
      }
      return kExitOk;
    }
    if (!a->quiet) {
      std::cout << "pulled " << source << " -> " << a->out << " (" << human_bytes(r.size) << ", "
                << r.blob_digest << ")\n";
    }
    return kExitOk;
  };
}

}  // namespace torshpkg::cli

namespace torshpkg::cli {

Action add_replicate_command(CLI::App& app) {
  struct Args {
    std::string source;
    std::string target;
    bool all_tags = false;
    bool insecure = false;
    std::string docker_config;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "replicate", "Copy packages between registries (digests checked, idempotent)");
  sub->add_option("SRC_REF", a->source, "HOST[:PORT]/REPOSITORY[:TAG]")->required();
  sub->add_option("DST_REF", a->target, "HOST[:PORT]/REPOSITORY[:TAG] (the source's tag if none)")
      ->required();
  sub->add_flag("--all-tags", a->all_tags, "Every tag of the source repository");
  sub->add_flag("--insecure", a->insecure, "Plain HTTP to registries not on loopback");
  sub->add_option("--docker-config", a->docker_config, "Credentials file");
  return [a] {
    distribution::OciRef source = distribution::parse_oci_ref(a->source);
    distribution::OciRef target = distribution::parse_oci_ref(a->target);
    // A target written without a tag keeps the source's.
    const std::string t = a->target.substr(a->target.find('/') + 1);
    if (t.find(':') == std::string::npos && t.find('@') == std::string::npos) target.tag.clear();
    distribution::OciOptions options;
    options.insecure = a->insecure;
    options.docker_config = a->docker_config;
    distribution::OciClient client(options);
    const distribution::ReplicateResult r = client.replicate(
        source, target, a->all_tags, std::filesystem::temp_directory_path().string());
    for (const std::string& tag : r.tags) {
      std::cout << "replicated " << target.registry << "/" << target.repository << ":" << tag
                << "\n";
    }
    std::cout << r.blobs_copied << " blobs copied (" << human_bytes(r.bytes_copied) << "), "
              << r.blobs_mounted << " mounted, " << r.blobs_present << " already there\n";
    return kExitOk;
  };
}

}  // namespace torshpkg::cli
