// torshpkg install, list, remove, gc and deps: the local package store.
#include "torshpkg/store.h"

#include <json/json.h>

#include <iostream>
#include <memory>

#include "cli_util.h"
#include "commands.h"

namespace torshpkg::cli {
namespace {

Json::Value package_json(const StoredPackage& p) {
  Json::Value v(Json::objectValue);
  v["name"] = p.name;
  v["version"] = p.version;
  v["digest"] = "sha256:" + p.digest;
  v["size"] = Json::UInt64(p.size);
  v["path"] = p.path;
  return v;
}

void print_json(const Json::Value& v) {
  Json::StreamWriterBuilder w;
  w["indentation"] = "  ";
  std::cout << Json::writeString(w, v) << "\n";
}

}  // namespace

Action add_install_command(CLI::App& app) {
  struct Args {
    std::string pkg;
    std::string store = Store::default_root();
    std::string trusted_keys = "/etc/torshpkg/trusted-keys";
    bool allow_unsigned = false;
    std::string journal;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "install", "Verify a package and copy it into the local store (atomically)");
  sub->add_option("PKG", a->pkg, "Package file")->required();
  sub->add_option("--store", a->store,
                  "Store folder (default $TORSHPKG_STORE or /var/lib/torshpkg/store)");
  sub->add_option("--trusted-keys", a->trusted_keys, "Folder of trusted .pub keys");
  sub->add_flag("--allow-unsigned", a->allow_unsigned, "Install without a trusted signature");
  sub->add_option("--journal", a->journal, "Lineage journal to record the install in");
  return [a] {
    InstallPolicy policy;
    policy.trusted_keys_dir = a->trusted_keys;
    policy.allow_unsigned = a->allow_unsigned;
    const InstallResult r = Store(a->store).install(a->pkg, policy);
    record_lineage_event(a->journal, "installed", r.package.path,
                         {{"store", absolute_path(a->store)}, {"source", absolute_path(a->pkg)}});
    std::cout << (r.already_installed ? "already installed " : "installed ") << r.package.name
              << "@" << r.package.version << " (sha256:" << r.package.digest << ")"
              << (r.signer.empty() ? " unsigned" : ", signed by " + r.signer) << "\n";
    return kExitOk;
  };
}

Action add_list_command(CLI::App& app) {
  struct Args {
    std::string store = Store::default_root();
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("list", "List the packages in the local store");
  sub->add_option("--store", a->store, "Store folder");
  sub->add_flag("--json", a->json, "One JSON object: {\"store\", \"packages\": [...]}");
  return [a] {
    const std::vector<StoredPackage> all = Store(a->store).list();
    if (a->json) {
      Json::Value out(Json::objectValue);
      out["store"] = a->store;
      out["packages"] = Json::Value(Json::arrayValue);
      for (const StoredPackage& p : all) out["packages"].append(package_json(p));
      print_json(out);
      return kExitOk;
    }
    for (const StoredPackage& p : all) {
      std::cout << p.name << "@" << p.version << "  " << human_bytes(p.size)
                << "  sha256:" << p.digest.substr(0, 16) << "\n";
    }
    return kExitOk;
  };
}

Action add_remove_command(CLI::App& app) {
  struct Args {
    std::string ref;
    std::string store = Store::default_root();
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub =
      app.add_subcommand("remove", "Remove NAME@VERSION from the local store (gc frees its bytes)");
  sub->add_option("NAME@VERSION", a->ref, "Package name and exact version")->required();
  sub->add_option("--store", a->store, "Store folder");
  return [a] {
    const size_t at = a->ref.find('@');
    if (at == std::string::npos)
      throw invalid_argument("expected NAME@VERSION, got '" + a->ref + "'");
    Store(a->store).remove(a->ref.substr(0, at), a->ref.substr(at + 1));
    std::cout << "removed " << a->ref << "\n";
    return kExitOk;
  };
}

Action add_gc_command(CLI::App& app) {
  struct Args {
    std::string store = Store::default_root();
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "gc", "Delete store blobs no reference names and abandoned temporary files");
  sub->add_option("--store", a->store, "Store folder");
  return [a] {
    const GcResult r = Store(a->store).gc();
    std::cout << "removed " << r.blobs_removed << " blobs and " << r.temp_files_removed
              << " temporary files, " << human_bytes(r.bytes_freed) << " freed\n";
    return kExitOk;
  };
}

Action add_deps_command(CLI::App& app) {
  struct Args {
    std::string pkg;
    std::string store = Store::default_root();
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "deps",
      "Resolve a package's dependencies against the local store (exit 1 if one is missing)");
  sub->add_option("PKG", a->pkg, "Package file, or NAME@REQ in the store")->required();
  sub->add_option("--store", a->store, "Store folder");
  sub->add_flag("--json", a->json, "One JSON object: {\"package\", \"dependencies\": [...]}");
  return [a] {
    const Store store(a->store);
    const std::string path = store.locate(a->pkg);
    const Manifest m = Package::open(path)->manifest();
    const std::vector<ResolvedDependency> deps = resolve_dependencies(store, m);
    size_t missing = 0;
    Json::Value out(Json::objectValue);
    out["package"] = m.name + "@" + m.version;
    out["dependencies"] = Json::Value(Json::arrayValue);
    if (!a->json) std::cout << m.name << "@" << m.version << "\n";
    for (const ResolvedDependency& r : deps) {
      const bool absent = !r.package;
      if (absent && !r.dependency.optional) ++missing;
      Json::Value v(Json::objectValue);
      v["parent"] = r.parent;
      v["name"] = r.dependency.name;
      v["requirement"] = r.dependency.version_req;
      v["optional"] = r.dependency.optional;
      v["depth"] = Json::UInt64(r.depth);
      v["resolved"] = absent ? Json::Value() : Json::Value(r.package->version);
      if (!absent) v["digest"] = "sha256:" + r.package->digest;
      v["installed"] = Json::Value(Json::arrayValue);
      for (const std::string& i : r.installed) v["installed"].append(i);
      out["dependencies"].append(v);
      if (a->json) continue;
      std::cout << std::string(2 * r.depth, ' ') << r.dependency.name << " "
                << r.dependency.version_req << (r.dependency.optional ? " (optional)" : "")
                << " -> ";
      if (!absent) {
        std::cout << r.package->version << "\n";
        continue;
      }
      std::string have;
      for (const std::string& i : r.installed) have += (have.empty() ? "" : ", ") + i;
      std::cout << (r.dependency.optional ? "not installed (optional)" : "MISSING") << ": "
                << (have.empty() ? "no version installed" : "installed " + have + ", none matches")
                << "\n";
    }
    out["missing"] = Json::UInt64(missing);
    if (a->json) print_json(out);
    if (missing > 0) {
      throw not_found(m.name + "@" + m.version, std::to_string(missing) + " required dependenc" +
                                                    (missing == 1 ? "y is" : "ies are") +
                                                    " not in the store " + a->store);
    }
    return kExitOk;
  };
}

}  // namespace torshpkg::cli
