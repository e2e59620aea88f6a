// The torshpkg subcommands. Each registers its options on the app and returns the action to run
// when it is the one chosen; actions return the process exit code or throw torshpkg::Error.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace torshpkg::cli {

using Action = std::function<int()>;

Action add_create_command(CLI::App& app);
Action add_info_command(CLI::App& app);
Action add_ls_command(CLI::App& app);
Action add_cat_command(CLI::App& app);
Action add_extract_command(CLI::App& app);
Action add_verify_command(CLI::App& app);
Action add_keygen_command(CLI::App& app);
Action add_sign_command(CLI::App& app);
Action add_mount_command(CLI::App& app);
Action add_umount_command(CLI::App& app);
Action add_lineage_command(CLI::App& app);
Action add_status_command(CLI::App& app);
Action add_tensors_command(CLI::App& app);
Action add_load_command(CLI::App& app);
Action add_convert_command(CLI::App& app);
Action add_diff_command(CLI::App& app);
Action add_install_command(CLI::App& app);
Action add_list_command(CLI::App& app);
Action add_remove_command(CLI::App& app);
Action add_gc_command(CLI::App& app);
Action add_deps_command(CLI::App& app);
Action add_push_command(CLI::App& app);
Action add_pull_command(CLI::App& app);
Action add_replicate_command(CLI::App& app);
Action add_backup_command(CLI::App& app);
Action add_restore_command(CLI::App& app);

}  // namespace torshpkg::cli
