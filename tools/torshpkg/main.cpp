// torshpkg: create, inspect, read and verify .torshpkg model packages.
#include <cstdio>
#include <map>
#include <new>

#include "cli_util.h"
#include "commands.h"
#include "torshpkg/error.h"
#include "torshpkg/printable.h"

namespace {

constexpr const char* kExitCodes =
    "Exit codes: 0 ok, 1 error, 2 usage, 3 integrity failure, 4 wrong key or password,\n"
    "130 interrupted.";

}  // namespace

int main(int argc, char** argv) {
  using namespace torshpkg::cli;
  CLI::App app{"torshpkg: signed, chunked, random-access ML model packages"};
  app.footer(kExitCodes);
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("torshpkg ") + TORSHPKG_VERSION);
  std::map<CLI::App*, Action> actions;
  for (const auto add :
       {&add_create_command,  &add_info_command,   &add_ls_command,      &add_cat_command,
        &add_extract_command, &add_verify_command, &add_keygen_command,  &add_sign_command,
        &add_mount_command,   &add_umount_command, &add_status_command,  &add_lineage_command,
        &add_tensors_command, &add_load_command,   &add_convert_command, &add_diff_command,
        &add_install_command, &add_list_command,   &add_remove_command,  &add_gc_command,
        &add_deps_command,    &add_push_command,   &add_pull_command,    &add_replicate_command,
        &add_backup_command,  &add_restore_command}) {
    Action action = add(app);
    actions[app.get_subcommands({}).back()] = std::move(action);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  try {
    for (auto& [sub, action] : actions) {
      if (sub->parsed()) return action();
    }
    return kExitUsage;
  } catch (const torshpkg::Error& e) {
    // Errors echo names from packages and the system: escaped, one line whatever they hold.
    std::fprintf(stderr, "torshpkg: %s\n", torshpkg::printable(e.what()).c_str());
    return exit_code_for(e.kind());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "torshpkg: out of memory\n");
    return kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torshpkg: %s\n", torshpkg::printable(e.what()).c_str());
    return kExitError;
  }
}
