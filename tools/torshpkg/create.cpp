// torshpkg create: build a package from files, folders and archives.
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "commands.h"
#include "torshpkg/archive_import.h"
#include "torshpkg/package_writer.h"

namespace torshpkg::cli {
namespace {

struct CreateArgs {
  std::string out;
  std::string name;
  std::string version;
  std::string description;
  std::string author;
  std::string license;
  std::vector<std::string> meta;
  std::string compress;
  std::vector<std::string> compress_for;
  std::string chunk_size;
  std::string block_size;
  std::vector<std::string> add;
  std::vector<std::string> add_dir;
  std::vector<std::string> from_archive;
  std::vector<std::string> dependency;
  std::vector<std::string> lineage;
  std::vector<std::string> provenance;
  std::string sign_key;
  std::string journal;
  std::string encrypt;
  std::vector<std::string> encrypt_for;
  std::vector<std::string> password_files;
  std::vector<std::string> key_files;
  bool force = false;
  bool quiet = false;
};

// "[TYPE:]REST" -> TYPE when the part before the first ':' names a resource type.
std::optional<ResourceType> split_type(std::string& text) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos) return std::nullopt;
  const auto type = resource_type_from_name(text.substr(0, colon));
  if (type) text.erase(0, colon + 1);
  return type;
}

std::pair<std::string, std::string> split_assignment(const std::string& text,
                                                     const std::string& option,
                                                     const std::string& form) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos) {
    throw invalid_argument(option + " expects " + form + ", got '" + text + "'");
  }
  return {text.substr(0, eq), text.substr(eq + 1)};
}

Dependency parse_dependency(const std::string& text) {
  // NAME:VERSION_REQ[:optional][:features=a,b]
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t colon = text.find(':', start);
    parts.push_back(text.substr(start, colon == std::string::npos ? colon : colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  if (parts.size() < 2) {
    throw invalid_argument(
        "--dependency expects NAME:VERSION_REQ[:optional][:features=a,b], got '" + text + "'");
  }
  Dependency d;
  d.name = parts[0];
  d.version_req = parts[1];
  for (size_t i = 2; i < parts.size(); ++i) {
    if (parts[i] == "optional") {
      d.optional = true;
    } else if (parts[i].starts_with("features=")) {
      const std::string list = parts[i].substr(9);
      size_t s = 0;
      while (s <= list.size()) {
        const size_t comma = list.find(',', s);
        const std::string f = list.substr(s, comma == std::string::npos ? comma : comma - s);
        if (!f.empty()) d.features.push_back(f);
        if (comma == std::string::npos) break;
        s = comma + 1;
      }
    } else {
      throw invalid_argument("--dependency: unknown part '" + parts[i] + "' in '" + text + "'");
    }
  }
  return d;
}

LineageRecord parse_lineage(const std::string& text) {
  // RELATION:PARENT[:DESCRIPTION]
  const size_t c1 = text.find(':');
  if (c1 == std::string::npos) {
    throw invalid_argument("--lineage expects RELATION:PARENT[:DESCRIPTION], got '" + text + "'");
  }
  LineageRecord l;
  l.relation = text.substr(0, c1);
  const size_t c2 = text.find(':', c1 + 1);
  l.parent = text.substr(c1 + 1, c2 == std::string::npos ? c2 : c2 - c1 - 1);
  if (c2 != std::string::npos) l.description = text.substr(c2 + 1);
  return l;
}

// Adds every regular file below `dir`, sorted by path, under `prefix`.
void add_directory(PackageWriter& writer, const std::string& prefix, const std::string& dir,
                   std::optional<ResourceType> type) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw not_found(dir, "not a directory");
  std::vector<std::pair<std::string, std::string>> files;
  for (fs::recursive_directory_iterator it(dir, ec), end; it != end; it.increment(ec)) {
    if (ec) throw io_error(dir, "cannot walk directory", ec.value());
    const fs::directory_entry& e = *it;
    if (e.is_symlink()) {
      throw invalid_argument(e.path().string() +
                             ": symlinks are not added (copy the target instead)");
    }
    if (e.is_directory()) continue;
    if (!e.is_regular_file()) throw invalid_argument(e.path().string() + ": not a regular file");
    const std::string rel = fs::relative(e.path(), dir).generic_string();
    files.emplace_back(prefix.empty() ? rel : prefix + "/" + rel, e.path().string());
  }
  if (ec) throw io_error(dir, "cannot walk directory", ec.value());
  std::sort(files.begin(), files.end());
  for (const auto& [path, file] : files) writer.add_file(path, file, type);
}

int run_create(const CreateArgs& a) {
  Manifest header;
  header.name = a.name;
  header.version = a.version;
  header.description = a.description;
  header.author = a.author;
  header.license = a.license;
  for (const std::string& kv : a.meta) {
    auto [k, v] = split_assignment(kv, "--meta", "KEY=VALUE");
    if (k.empty()) throw invalid_argument("--meta: empty key in '" + kv + "'");
    header.metadata[k] = v;
  }
  for (const std::string& l : a.lineage) header.lineage.push_back(parse_lineage(l));
  if (!a.provenance.empty() && header.lineage.empty()) {
    throw invalid_argument("--provenance describes lineage records: give --lineage too");
  }
  for (const std::string& kv : a.provenance) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw invalid_argument("--provenance expects KEY=VALUE, got '" + kv + "'");
    }
    for (LineageRecord& l : header.lineage) l.provenance[kv.substr(0, eq)] = kv.substr(eq + 1);
  }

  WriteOptions options = write_options(a.compress, a.chunk_size, a.block_size);
  refuse_existing(a.out, a.force);

  PackageWriter writer(header);
  for (std::string spec : a.add) {
    const auto type = split_type(spec);
    auto [path, file] = split_assignment(spec, "--add", "[TYPE:]PATH=FILE");
    writer.add_file(path, file, type);
  }
  for (std::string spec : a.add_dir) {
    const auto type = split_type(spec);
    auto [prefix, dir] = split_assignment(spec, "--add-dir", "[TYPE:]PREFIX=DIR");
    while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
    add_directory(writer, prefix, dir, type);
  }
  const std::string out_dir = [&] {
    const size_t slash = a.out.rfind('/');
    return slash == std::string::npos ? std::string(".") : a.out.substr(0, slash == 0 ? 1 : slash);
  }();
  for (const std::string& archive : a.from_archive) add_archive(writer, archive, out_dir);
  for (const std::string& d : a.dependency) writer.add_dependency(parse_dependency(d));

  // Per-resource overrides, applied by a writer wrapper: re-add with the codec set.
  std::vector<std::pair<std::string, CodecSpec>> overrides;
  for (const std::string& spec : a.compress_for) {
    auto [pattern, codec] = split_assignment(spec, "--compress-for", "PATTERN=ALG[:LEVEL]");
    overrides.emplace_back(pattern, parse_codec_spec(codec));
  }
  if (!overrides.empty()) {
    writer.set_compression_rule([overrides](const std::string& path) -> std::optional<CodecSpec> {
      for (const auto& [pattern, codec] : overrides) {
        if (::fnmatch(pattern.c_str(), path.c_str(), 0) == 0) return codec;
      }
      return std::nullopt;
    });
  }

  std::vector<std::pair<std::string, Cipher>> cipher_rules;
  for (const std::string& spec : a.encrypt_for) {
    auto [pattern, name] = split_assignment(spec, "--encrypt-for", "PATTERN=CIPHER");
    const auto cipher = cipher_from_name(name);
    if (!cipher) throw invalid_argument("--encrypt-for: unknown cipher '" + name + "'");
    cipher_rules.emplace_back(pattern, *cipher);
  }
  if (!cipher_rules.empty()) {
    writer.set_encryption_rule([cipher_rules](const std::string& path) -> std::optional<Cipher> {
      for (const auto& [pattern, cipher] : cipher_rules) {
        if (::fnmatch(pattern.c_str(), path.c_str(), 0) == 0) return cipher;
      }
      return std::nullopt;
    });
  }
  const bool wants_encryption =
      !a.encrypt.empty() || std::any_of(cipher_rules.begin(), cipher_rules.end(),
                                        [](const auto& r) { return r.second != Cipher::kNone; });
  if (wants_encryption) {
    if (!a.encrypt.empty()) {
      const auto cipher = cipher_from_name(a.encrypt);
      if (!cipher || *cipher == Cipher::kNone) {
        throw invalid_argument("--encrypt takes aes-256-gcm or chacha20-poly1305, not '" +
                               a.encrypt + "'");
      }
      options.encryption = *cipher;
    }
    for (const std::string& f : a.password_files) options.secrets.push_back(read_password_file(f));
    for (const std::string& f : a.key_files) options.secrets.push_back(read_key_file(f));
    if (options.secrets.empty())
      throw invalid_argument("encryption needs --password-file or --key-file");
  } else if (!a.password_files.empty() || !a.key_files.empty()) {
    throw invalid_argument("--password-file and --key-file need --encrypt or --encrypt-for");
  }
  std::optional<PrivateKey> key;
  apply_sign_key(a.sign_key, key, options);
  install_cancel_handlers();
  options.cancel = &g_cancelled;
  ProgressBar bar("create", !a.quiet);
  options.progress = [&](uint64_t done, uint64_t total) { bar.update(done, total); };
  const Manifest m = writer.write(a.out, options);
  bar.finish();
  uint64_t plain = 0;
  for (const ResourceEntry& r : m.resources) plain += r.size;
  struct stat st {};
  ::stat(a.out.c_str(), &st);
  record_lineage_event(
      a.journal, "created", a.out,
      key ? std::map<std::string, std::string>{{"signer", key->public_key().key_id()}}
          : std::map<std::string, std::string>{});
  if (!a.quiet) {
    std::cout << "created " << a.out << ": " << m.name << " " << m.version << ", "
              << m.resources.size() << " resources, " << human_bytes(plain) << " -> "
              << human_bytes(static_cast<uint64_t>(st.st_size))
              << (key ? ", signed by " + key->public_key().key_id() : std::string()) << "\n";
  }
  return kExitOk;
}

}  // namespace

Action add_create_command(CLI::App& app) {
  auto args = std::make_shared<CreateArgs>();
  CLI::App* sub = app.add_subcommand("create", "Create a package");
  sub->add_option("OUT", args->out, "Package file to write")->required();
  sub->add_option("--name", args->name, "Package name")->required();
  sub->add_option("--version", args->version, "Semantic version, e.g. 1.0.0")->required();
  sub->add_option("--description", args->description, "Description");
  sub->add_option("--author", args->author, "Author");
  sub->add_option("--license", args->license, "License (SPDX id)");
  sub->add_option("--meta", args->meta, "Metadata KEY=VALUE (repeatable)");
  sub->add_option("--compress", args->compress,
                  "Default codec: none, gzip[:1-9], zstd[:1-22], xz[:0-9] (default zstd:3)");
  sub->add_option(
      "--compress-for", args->compress_for,
      "Codec for resources whose path matches a glob: PATTERN=ALG[:LEVEL] (repeatable)");
  sub->add_option("--chunk-size", args->chunk_size,
                  "Plain bytes per chunk, a power of two from 4K to 64M (default: 256K for "
                  "compressed resources, 1M for stored ones)");
  sub->add_option("--block-size", args->block_size, kBlockSizeHelp);
  sub->add_option("--add", args->add, "Add a file: [TYPE:]PATH=FILE (repeatable)");
  sub->add_option("--add-dir", args->add_dir,
                  "Add a folder's files under PREFIX: [TYPE:]PREFIX=DIR (repeatable)");
  sub->add_option("--from-archive", args->from_archive,
                  "Import every file of a tar/tar.gz/tar.zst/tar.xz/zip archive (repeatable)");
  sub->add_option("--dependency", args->dependency,
                  "NAME:VERSION_REQ[:optional][:features=a,b] (repeatable)");
  sub->add_option("--lineage", args->lineage, "RELATION:PARENT[:DESCRIPTION] (repeatable)");
  sub->add_option("--provenance", args->provenance,
                  "KEY=VALUE recorded with the lineage, e.g. creator=, source_url=, "
                  "source_commit=, build_environment= (repeatable)");
  sub->add_option("--sign-key", args->sign_key, "Sign the package with this Ed25519 private key");
  sub->add_option("--journal", args->journal,
                  "Lineage journal to record the creation in (default $TORSHPKG_JOURNAL, or "
                  "/var/lib/torshpkg/lineage.jsonl when that folder exists)");
  sub->add_option("--encrypt", args->encrypt,
                  "Encrypt every non-empty resource: aes-256-gcm or chacha20-poly1305");
  sub->add_option(
      "--encrypt-for", args->encrypt_for,
      "Cipher (or none) for resources whose path matches a glob: PATTERN=CIPHER (repeatable)");
  sub->add_option("--password-file", args->password_files,
                  "With --encrypt: a key slot for this password (Argon2id; repeatable)");
  sub->add_option("--key-file", args->key_files,
                  "With --encrypt: a key slot for this key file (32+ bytes, HKDF; repeatable)");
  sub->add_flag("-f,--force", args->force, "Replace OUT if it exists");
  sub->add_flag("-q,--quiet", args->quiet, "No progress bar or summary");
  sub->footer(
      "TYPE is one of ModelWeights, Config, Tokenizer, Source, Data, Documentation, License,\n"
      "Binary, Text, Metadata; without it the type is guessed from the file name.");
  return [args] { return run_create(*args); };
}

}  // namespace torshpkg::cli
