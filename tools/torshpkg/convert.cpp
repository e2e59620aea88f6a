// torshpkg convert: a model made by another tool into a package; torshpkg diff: compare the
// tensors of two packages or of a package and its source.
#include <json/json.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "commands.h"
#include "converter.h"
#include "source_zip.h"
#include "torshpkg/keys.h"

namespace torshpkg::cli {
namespace {

// A package name from a file or folder name: characters a name may not hold become '-'.
std::string name_from(const std::string& source) {
  namespace fsys = std::filesystem;
  const fsys::path p = fsys::absolute(source).lexically_normal();
  std::string stem = p.has_filename() ? p.stem().string() : p.parent_path().filename().string();
  for (char& c : stem) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '-';
  }
  while (!stem.empty() && !std::isalnum(static_cast<unsigned char>(stem.front()))) stem.erase(0, 1);
  return stem.empty() ? "model" : stem;
}

Json::Value shape_json(const std::vector<uint64_t>& shape) {
  Json::Value v(Json::arrayValue);
  for (const uint64_t d : shape) v.append(Json::UInt64(d));
  return v;
}

struct ConvertArgs {
  std::string source;
  std::string out;
  std::string name;
  std::string version = "1.0.0";
  std::string description;
  std::string license;
  std::string compress;
  std::string chunk_size;
  std::string block_size;
  std::string sign_key;
  std::string journal;
  bool force = false;
  bool quiet = false;
  bool keep_unsafe_pickles = false;
};

int run_convert(const ConvertArgs& a) {
  Manifest header;
  header.name = a.name.empty() ? name_from(a.source) : a.name;
  header.version = a.version;
  header.description = a.description;
  header.license = a.license;
  WriteOptions options = write_options(a.compress, a.chunk_size, a.block_size);
  refuse_existing(a.out, a.force);
  std::optional<PrivateKey> key;
  apply_sign_key(a.sign_key, key, options);
  install_cancel_handlers();
  options.cancel = &g_cancelled;
  ProgressBar bar("convert", !a.quiet);
  options.progress = [&](uint64_t done, uint64_t total) { bar.update(done, total); };
  const convert::ConvertResult r =
      convert::convert_to_package(a.source, a.out, header, options, a.keep_unsafe_pickles);
  bar.finish();
  record_lineage_event(a.journal, "created", a.out,
                       {{"converted_from", absolute_path(a.source)},
                        {"source_kind", std::string(convert::to_string(r.kind))}});
  if (!a.quiet) {
    struct stat st {};
    ::stat(a.out.c_str(), &st);
    std::cout << "converted " << a.source << " (" << convert::to_string(r.kind) << ") -> " << a.out
              << ": " << r.manifest.name << " " << r.manifest.version << ", " << r.tensors
              << " tensors, " << r.manifest.resources.size() << " resources, "
              << human_bytes(static_cast<uint64_t>(st.st_size))
              << (key ? ", signed by " + key->public_key().key_id() : std::string()) << "\n";
  }
  return kExitOk;
}

// A package is a ZIP archive whose members include manifest.json; anything else is a source.
bool is_package(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  try {
    const convert::SourceZip zip(open_file_source(path));
    return zip.find("manifest.json") != nullptr;
  } catch (const Error&) {
    return false;
  }
}

convert::TensorDigests digests_of(const std::string& path, const SecretOptions& secrets) {
  if (is_package(path)) return convert::digests_of_package(*open_package(path, secrets));
  return convert::digests_of_plan(convert::plan_conversion(path));
}

int run_diff(const std::string& a_path, const std::string& b_path, bool json,
             const SecretOptions& secrets) {
  const convert::TensorDigests a = digests_of(a_path, secrets);
  const convert::TensorDigests b = digests_of(b_path, secrets);
  Json::Value out(Json::objectValue);
  out["a"] = a_path;
  out["b"] = b_path;
  out["only_in_a"] = Json::Value(Json::arrayValue);
  out["only_in_b"] = Json::Value(Json::arrayValue);
  out["different"] = Json::Value(Json::arrayValue);
  size_t same = 0;
  for (const auto& [name, da] : a) {
    const auto it = b.find(name);
    if (it == b.end()) {
      out["only_in_a"].append(name);
      if (!json) std::cout << "only in " << a_path << ": " << name << "\n";
      continue;
    }
    const convert::TensorDigest& db = it->second;
    if (da.dtype == db.dtype && da.shape == db.shape && da.sha256 == db.sha256) {
      ++same;
      continue;
    }
    Json::Value d(Json::objectValue);
    d["name"] = name;
    d["dtype"] = Json::Value(Json::arrayValue);
    d["dtype"].append(std::string(dtype_name(da.dtype)));
    d["dtype"].append(std::string(dtype_name(db.dtype)));
    d["shape"] = Json::Value(Json::arrayValue);
    d["shape"].append(shape_json(da.shape));
    d["shape"].append(shape_json(db.shape));
    d["sha256"] = Json::Value(Json::arrayValue);
    d["sha256"].append(da.sha256);
    d["sha256"].append(db.sha256);
    out["different"].append(d);
    if (!json) {
      std::cout << "differs: " << name;
      if (da.dtype != db.dtype) {
        std::cout << "  dtype " << dtype_name(da.dtype) << " vs " << dtype_name(db.dtype);
      }
      if (da.shape != db.shape) {
        std::cout << "  shape " << shape_text(da.shape) << " vs " << shape_text(db.shape);
      }
      if (da.dtype == db.dtype && da.shape == db.shape) std::cout << "  bytes";
      std::cout << "\n";
    }
  }
  for (const auto& [name, db] : b) {
    if (a.contains(name)) continue;
    out["only_in_b"].append(name);
    if (!json) std::cout << "only in " << b_path << ": " << name << "\n";
  }
  const bool identical =
      out["only_in_a"].empty() && out["only_in_b"].empty() && out["different"].empty();
  out["identical"] = identical;
  out["same"] = Json::UInt64(same);
  if (json) {
    Json::StreamWriterBuilder w;
    w["indentation"] = "  ";
    std::cout << Json::writeString(w, out) << "\n";
  } else if (identical) {
    std::cout << same << " tensors, identical\n";
  } else {
    std::cout << same << " tensors identical, " << out["different"].size() << " differ, "
              << out["only_in_a"].size() + out["only_in_b"].size() << " on one side only\n";
  }
  return identical ? kExitOk : kExitIntegrity;
}

}  // namespace

Action add_convert_command(CLI::App& app) {
  auto a = std::make_shared<ConvertArgs>();
  CLI::App* sub = app.add_subcommand(
      "convert",
      "Convert a torch.save checkpoint, torch.package archive, .npy/.npz, ONNX model, "
      "safetensors file or Hugging Face folder into a package");
  sub->add_option("SRC", a->source, "The model file or folder")->required();
  sub->add_option("-o,--output", a->out, "Package to write")->required();
  sub->add_option("--name", a->name, "Package name (default: from SRC's name)");
  sub->add_option("--version", a->version, "Semantic version (default 1.0.0)");
  sub->add_option("--description", a->description, "Free text");
  sub->add_option("--license", a->license, "Free text");
  sub->add_option("--compress", a->compress, "none, gzip[:1-9], zstd[:1-22], xz[:0-9]");
  sub->add_option("--chunk-size", a->chunk_size,
                  "Plain bytes per chunk (default: 256K compressed, 1M stored)");
  sub->add_option("--block-size", a->block_size, kBlockSizeHelp);
  sub->add_option("--sign-key", a->sign_key, "Sign the package with this Ed25519 private key");
  sub->add_option("--journal", a->journal, "Lineage journal to record the conversion in");
  sub->add_flag("-f,--force", a->force, "Replace the output if it exists");
  sub->add_flag("-q,--quiet", a->quiet, "No progress bar or summary");
  sub->add_flag("--keep-unsafe-pickles", a->keep_unsafe_pickles,
                "Convert a source whose pickles reference code (a whole nn.Module, "
                "torch.package classes): they are kept, and the callables listed in the "
                "package's metadata (torshpkg.unsafe_pickle_callables)");
  return [a] { return run_convert(*a); };
}

Action add_diff_command(CLI::App& app) {
  struct Args {
    std::string a, b;
    bool json = false;
    SecretOptions secrets;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "diff",
      "Compare the tensors of two packages, or of a package and the source it was converted "
      "from (exit 3 when they differ)");
  sub->add_option("A", a->a, "A package, or a model file or folder convert reads")->required();
  sub->add_option("B", a->b, "Another")->required();
  sub->add_flag("--json", a->json,
                "One JSON object: identical, same, only_in_a, only_in_b, different");
  a->secrets.add_to(*sub);
  return [a] { return run_diff(a->a, a->b, a->json, a->secrets); };
}

}  // namespace torshpkg::cli
