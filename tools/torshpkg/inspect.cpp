// torshpkg info, ls, cat and verify: read-only views of a package.
#include <json/json.h>
#include <sys/stat.h>

#include <cstdio>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "cli_util.h"
#include "commands.h"
#include "torshpkg/keys.h"
#include "torshpkg/package.h"
#include "torshpkg/printable.h"
#include "torshpkg/signature.h"

namespace torshpkg::cli {
namespace {

void print_json(const Json::Value& v) {
  Json::StreamWriterBuilder b;
  b["indentation"] = "  ";
  b["emitUTF8"] = true;
  std::cout << Json::writeString(b, v) << "\n";
}

uint64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// The manifest as it is signed, plus where the package lies and whether it is signed.
// "unsigned" or "signed by ID[, ID...] (not verified)".
std::string signers_text(const Package& pkg) {
  if (pkg.signatures().empty()) return "unsigned";
  std::string ids;
  for (const Signature& sig : pkg.signatures()) ids += (ids.empty() ? "" : ", ") + sig.key_id;
  return "signed by " + ids;
}

Json::Value info_json(const Package& pkg) {
  Json::Value v;
  Json::CharReaderBuilder builder;
  std::string errors;
  std::istringstream in(pkg.manifest_bytes());
  if (!Json::parseFromStream(builder, in, &v, &errors)) {
    throw corrupt(pkg.file_name(), "manifest.json: " + errors);
  }
  v["file"] = pkg.file_name();
  v["file_size"] = Json::UInt64(file_size(pkg.file_name()));
  v["signed"] = !pkg.signatures().empty();
  Json::Value signers(Json::arrayValue);
  for (const Signature& sig : pkg.signatures()) signers.append(sig.key_id);
  v["signer_key_ids"] = signers;
  return v;
}

void print_info(const Package& pkg) {
  const Manifest& m = pkg.manifest();
  // Every string from the manifest is shown escaped: none can repaint the lines around it.
  const auto P = [](std::string_view s) { return printable(s); };
  std::cout << "name:        " << P(m.name) << "\n"
            << "version:     " << P(m.version) << "\n";
  if (!m.description.empty()) std::cout << "description: " << P(m.description) << "\n";
  if (!m.author.empty()) std::cout << "author:      " << P(m.author) << "\n";
  if (!m.license.empty()) std::cout << "license:     " << P(m.license) << "\n";
  std::cout << "created:     " << P(m.created) << "\n"
            << "package id:  " << m.package_id << "\n"
            << "format:      torshpkg v" << m.format_version << "\n"
            << "file size:   " << human_bytes(file_size(pkg.file_name())) << "\n"
            << "signature:   " << signers_text(pkg) << "\n";
  if (!m.metadata.empty()) {
    std::cout << "metadata:\n";
    for (const auto& [k, v] : m.metadata) std::cout << "  " << P(k) << " = " << P(v) << "\n";
  }
  uint64_t plain = 0, stored = 0;
  for (const ResourceEntry& r : m.resources) {
    plain += r.size;
    stored += r.stored_size;
  }
  if (pkg.encrypted()) {
    std::cout << "encryption:  " << m.key_slots.size() << " key slot(s):";
    for (const KeySlot& k : m.key_slots) std::cout << " " << k.type;
    std::cout << "\n";
  }
  std::cout << "resources:   " << m.resources.size() << " (" << human_bytes(plain) << ", stored "
            << human_bytes(stored) << ")\n";
  for (const ResourceEntry& r : m.resources) {
    std::cout << "  " << std::left << std::setw(40) << P(r.entry_name()) << " " << std::setw(13)
              << to_string(r.type) << " " << std::right << std::setw(12) << r.size << " "
              << std::setw(12) << r.stored_size << "  " << format_codec_spec(r.compression)
              << (r.encryption != Cipher::kNone ? " " + std::string(cipher_name(r.encryption)) : "")
              << "\n";
  }
  if (!m.dependencies.empty()) {
    std::cout << "dependencies:\n";
    for (const Dependency& d : m.dependencies) {
      std::cout << "  " << P(d.name) << " " << P(d.version_req)
                << (d.optional ? " (optional)" : "");
      if (!d.features.empty()) {
        std::cout << " features:";
        for (const std::string& f : d.features) std::cout << " " << P(f);
      }
      std::cout << "\n";
    }
  }
  if (!m.lineage.empty()) {
    std::cout << "lineage:\n";
    for (const LineageRecord& l : m.lineage) {
      std::cout << "  " << P(l.relation) << " " << P(l.parent);
      if (!l.description.empty()) std::cout << " (" << P(l.description) << ")";
      std::cout << "\n";
      for (const auto& [k, v] : l.provenance) std::cout << "    " << P(k) << ": " << P(v) << "\n";
    }
  }
}

}  // namespace

Action add_info_command(CLI::App& app) {
  struct Args {
    std::string pkg;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub =
      app.add_subcommand("info", "Show a package's metadata, resources and dependencies");
  sub->add_option("PKG", a->pkg, "Package file")->required();
  sub->add_flag("--json", a->json, "Print JSON");
  return [a] {
    const auto pkg = Package::open(a->pkg);
    if (a->json) {
      print_json(info_json(*pkg));
    } else {
      print_info(*pkg);
    }
    return kExitOk;
  };
}

Action add_ls_command(CLI::App& app) {
  struct Args {
    std::string pkg;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("ls", "List the files a package shows, one path per line");
  sub->add_option("PKG", a->pkg, "Package file")->required();
  sub->add_flag("--json", a->json, "Print JSON: path, size, kind and type of each file");
  return [a] {
    const auto pkg = Package::open(a->pkg);
    if (a->json) {
      Json::Value list(Json::arrayValue);
      for (const FileNode& f : pkg->files()) {
        Json::Value e(Json::objectValue);
        e["path"] = f.path;
        e["size"] = Json::UInt64(f.size);
        switch (f.kind) {
          case FileNode::Kind::kManifest:
            e["kind"] = "manifest";
            break;
          case FileNode::Kind::kDependency:
            e["kind"] = "dependency";
            break;
          case FileNode::Kind::kResource:
            e["kind"] = "resource";
            e["type"] = std::string(to_string(pkg->manifest().resources[f.item].type));
            break;
        }
        list.append(e);
      }
      print_json(list);
    } else {
      std::string out;
      for (const FileNode& f : pkg->files()) out += printable(f.path) + "\n";
      write_stdout(out.data(), out.size());
    }
    return kExitOk;
  };
}

Action add_cat_command(CLI::App& app) {
  struct Args {
    std::string pkg;
    std::string path;
    std::string offset = "0";
    std::string length;
    SecretOptions secrets;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("cat", "Write a file's decoded bytes to stdout");
  sub->add_option("PKG", a->pkg, "Package file")->required();
  sub->add_option("PATH", a->path, "Path as `ls` prints it, e.g. resources/model.safetensors")
      ->required();
  sub->add_option("--offset", a->offset, "First byte to write (default 0)");
  sub->add_option("--length", a->length, "Bytes to write (default: to the end)");
  a->secrets.add_to(*sub);
  return [a] {
    const auto pkg = open_package(a->pkg, a->secrets);
    const FileNode* f = pkg->find(a->path);
    if (f == nullptr)
      throw not_found(a->pkg, "no file " + a->path + " in the package (see `torshpkg ls`)");
    const uint64_t offset = parse_byte_size(a->offset, "--offset");
    uint64_t remaining = f->size > offset ? f->size - offset : 0;
    if (!a->length.empty()) remaining = std::min(remaining, parse_byte_size(a->length, "--length"));
    const ReadPlan plan = plan_reads(*pkg, *f, offset);
    std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(remaining, plan.next)));
    uint64_t at = offset;
    size_t step = plan.first;
    while (remaining > 0) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>({remaining, buf.size(), step}));
      step = plan.next;
      const size_t n = pkg->read(*f, at, std::span(buf.data(), want));
      if (n == 0) break;
      write_stdout(buf.data(), n);
      at += n;
      remaining -= n;
    }
    return kExitOk;
  };
}

Action add_verify_command(CLI::App& app) {
  struct Args {
    std::string pkg;
    std::string trusted_keys;
    bool full = false;
    bool quiet = false;
    SecretOptions secrets;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "verify",
      "Check a package's structure, index digests and signature; --full also hashes every chunk");
  sub->add_option("PKG", a->pkg, "Package file")->required();
  sub->add_option("--trusted-keys", a->trusted_keys,
                  "Folder of trusted .pub keys: require a valid signature by one of them");
  sub->add_flag("--full", a->full, "Read, hash and decode every chunk");
  sub->add_flag("-q,--quiet", a->quiet, "Print nothing on success");
  a->secrets.add_to(*sub);
  return [a] {
    const auto pkg = open_package(a->pkg, a->secrets);
    std::string trust;
    if (!a->trusted_keys.empty()) {
      const TrustedKeys keys = TrustedKeys::load_dir(a->trusted_keys);
      trust = "signed by trusted key " + verify_trusted_signature(*pkg, keys);
    } else {
      trust = signers_text(*pkg) +
              (pkg->signatures().empty() ? "" : " (not checked: no --trusted-keys)");
    }
    ProgressBar bar("verify", !a->quiet);
    pkg->verify(a->full, [&](uint64_t done, uint64_t total) { bar.update(done, total); });
    bar.finish();
    if (!a->quiet) {
      uint64_t chunks = 0;
      for (const ResourceEntry& r : pkg->manifest().resources) chunks += r.chunk_count;
      std::cout << a->pkg << ": OK (" << pkg->manifest().resources.size() << " resources, "
                << (a->full ? std::to_string(chunks) + " chunks hashed and decoded"
                            : std::string("structure and index digests"))
                << (a->full && pkg->encrypted() && !pkg->unlocked()
                        ? " (encrypted chunks hashed, not decrypted: no key given)"
                        : "")
                << "; " << trust << ")\n";
    }
    return kExitOk;
  };
}

}  // namespace torshpkg::cli
