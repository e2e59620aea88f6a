// torshpkg load: load every tensor of a safetensors file into host or GPU memory, and report
// how fast (and, with --sha256, what was loaded).
#include <json/json.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <thread>

#include "cli_util.h"
#include "commands.h"
#include "torshpkg/package.h"
#include "torshpkg/tensor_loader.h"

namespace torshpkg::cli {
namespace {

unsigned default_threads() {
  return std::clamp(std::thread::hardware_concurrency(), 2u, 8u);
}

struct LoadArgs {
  std::string file;
  std::string resource;
  std::string device = "cpu";
  unsigned threads = default_threads();
  std::string piece_size = "8M";
  bool sha256 = false;
  bool json = false;
  SecretOptions secrets;
};

// The bytes to load: the file itself, or a file of the package it is.
std::shared_ptr<ByteSource> open_source(const LoadArgs& a) {
  if (a.resource.empty()) return open_file_source(a.file);
  std::shared_ptr<const Package> pkg = open_package(a.file, a.secrets);
  const FileNode* f = pkg->find(a.resource);
  if (f == nullptr) {
    throw not_found(a.file, "no file " + a.resource + " in the package (see `torshpkg ls`)");
  }
  return package_file_source(pkg, *f);
}

Json::Value stats_json(const LoadArgs& a, const LoadedTensors& loaded) {
  const LoadStats& s = loaded.stats();
  Json::Value out(Json::objectValue);
  out["file"] = a.file;
  if (!a.resource.empty()) out["resource"] = a.resource;
  out["device"] = to_string(loaded.target());
  out["tensor_count"] = Json::UInt64(loaded.header().tensors.size());
  out["bytes"] = Json::UInt64(s.bytes);
  out["seconds"] = s.seconds;
  out["gb_per_s"] = s.gigabytes_per_second();
  out["threads"] = s.threads;
  out["piece_bytes"] = Json::UInt64(s.piece_bytes);
  out["pieces"] = Json::UInt64(s.pieces);
  Json::Value stages(Json::objectValue);
  stages["init_s"] = s.init_seconds;
  stages["setup_s"] = s.setup_seconds;
  stages["staging_s"] = s.staging_seconds;
  stages["read_s"] = s.read_seconds;
  stages["copy_s"] = s.copy_seconds;
  stages["wait_s"] = s.wait_seconds;
  out["stages"] = stages;
  return out;
}

}  // namespace

Action add_load_command(CLI::App& app) {
  auto a = std::make_shared<LoadArgs>();
  CLI::App* sub = app.add_subcommand(
      "load", "Load every tensor of a safetensors file into host or GPU memory and time it");
  sub->add_option("FILE", a->file,
                  "A .safetensors file (also inside a mounted package), or a package with "
                  "--resource")
      ->required();
  sub->add_option("--resource", a->resource,
                  "Load this file of the package FILE (e.g. resources/model.safetensors) straight "
                  "from the package, each chunk verified as it streams in");
  sub->add_option("--device", a->device, "cpu, cuda or cuda:N (default cpu)");
  sub->add_option("--threads", a->threads, "Reader threads (default: cores, 2 to 8)")
      ->check(CLI::Range(1, 256));
  sub->add_option("--piece-size", a->piece_size,
                  "Bytes per read and per pinned staging buffer (default 8M)");
  sub->add_flag("--sha256", a->sha256,
                "Also the SHA-256 of each tensor, computed from the loaded memory (copied back "
                "from the GPU)");
  sub->add_flag("--json", a->json, "One JSON object with the figures (and digests)");
  a->secrets.add_to(*sub);
  return [a] {
    LoadOptions options;
    options.target = parse_load_target(a->device);
    options.threads = a->threads;
    options.piece_bytes = static_cast<size_t>(parse_byte_size(a->piece_size, "--piece-size"));
    const std::shared_ptr<ByteSource> source = open_source(*a);
    std::unique_ptr<LoadedTensors> loaded;
    try {
      loaded = load_tensors(*source, options);
    } catch (const Error& e) {
      const std::string what = e.what();
      if (e.kind() == ErrorKind::kUnsupported && a->resource.empty() &&
          what.find("it is a torshpkg package") != std::string::npos) {
        throw Error(e.kind(), what + "; give --resource PATH (e.g. resources/model.safetensors)");
      }
      throw;
    }
    const LoadStats& s = loaded->stats();
    if (a->json) {
      Json::Value out = stats_json(*a, *loaded);
      if (a->sha256) {
        out["tensors"] = Json::Value(Json::arrayValue);
        for (const TensorInfo& t : loaded->header().tensors) {
          Json::Value v(Json::objectValue);
          v["name"] = t.name;
          v["dtype"] = std::string(dtype_name(t.dtype));
          v["sha256"] = loaded->sha256(t);
          out["tensors"].append(v);
        }
      }
      Json::StreamWriterBuilder w;
      w["indentation"] = "  ";
      std::cout << Json::writeString(w, out) << "\n";
      return kExitOk;
    }
    std::printf("loaded %zu tensors, %s into %s in %.3f s: %.2f GB/s (%u threads, %s pieces)\n",
                loaded->header().tensors.size(), human_bytes(s.bytes).c_str(),
                to_string(loaded->target()).c_str(), s.seconds, s.gigabytes_per_second(), s.threads,
                human_bytes(s.piece_bytes).c_str());
    std::printf(
        "stages: device init %.3f s (not counted), setup %.3f s; summed over threads: staging "
        "%.3f s, read %.3f s, copy %.3f s, wait %.3f s\n",
        s.init_seconds, s.setup_seconds, s.staging_seconds, s.read_seconds, s.copy_seconds,
        s.wait_seconds);
    if (a->sha256) {
      for (const TensorInfo& t : loaded->header().tensors) {
        std::printf("%s  %s\n", loaded->sha256(t).c_str(), t.name.c_str());
      }
    }
    return kExitOk;
  };
}

}  // namespace torshpkg::cli
