// torshpkg backup and restore: the store, the lineage journal and the trusted keys in one
// checksummed archive.
#include "backup.h"

#include <cstdlib>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "commands.h"
#include "torshpkg/store.h"

namespace torshpkg::cli {
namespace {

struct StateArgs {
  std::string store = Store::default_root();
  std::string journal = [] {
    const char* env = std::getenv("TORSHPKG_JOURNAL");
    return std::string(env != nullptr && *env != '\0' ? env : "/var/lib/torshpkg/lineage.jsonl");
  }();
  std::string trusted_keys = "/etc/torshpkg/trusted-keys";

  void add_to(CLI::App& sub) {
    sub.add_option("--store", store,
                   "Store folder (default $TORSHPKG_STORE or /var/lib/torshpkg/store)");
    sub.add_option(
        "--journal", journal,
        "Lineage journal (default $TORSHPKG_JOURNAL or /var/lib/torshpkg/lineage.jsonl)");
    sub.add_option("--trusted-keys", trusted_keys,
                   "Trusted keys folder (default /etc/torshpkg/trusted-keys)");
  }
  distribution::BackupPaths paths() const { return {store, journal, trusted_keys}; }
};

}  // namespace

Action add_backup_command(CLI::App& app) {
  struct Args {
    std::string out;
    StateArgs state;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "backup", "Write the store, the lineage journal and the trusted keys into one archive");
  sub->add_option("OUT", a->out, "Archive to write (a tar with SHA256SUMS)")->required();
  a->state.add_to(*sub);
  return [a] {
    const distribution::BackupSummary s = distribution::write_backup(a->state.paths(), a->out);
    std::cout << "backed up " << s.blobs << " packages (" << s.refs << " references), " << s.keys
              << " trusted keys" << (s.journal ? ", the lineage journal" : "") << ": "
              << human_bytes(s.bytes) << " -> " << a->out << "\n";
    return kExitOk;
  };
}

Action add_restore_command(CLI::App& app) {
  struct Args {
    std::string in;
    StateArgs state;
    bool force = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand(
      "restore", "Check a backup completely, then restore it (a damaged one changes nothing)");
  sub->add_option("IN", a->in, "Archive written by torshpkg backup")->required();
  a->state.add_to(*sub);
  sub->add_flag("-f,--force", a->force, "Replace references, journal or keys that differ");
  return [a] {
    const distribution::BackupSummary s =
        distribution::restore_backup(a->in, a->state.paths(), a->force);
    std::cout << "restored " << s.blobs << " packages, " << s.refs << " references, " << s.keys
              << " trusted keys" << (s.journal ? ", the lineage journal" : "") << " from " << a->in
              << "\n";
    return kExitOk;
  };
}

}  // namespace torshpkg::cli
