// Shared pieces of the torshpkg command line: exit codes, progress display, cancellation.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "torshpkg/byte_size.h"
#include "torshpkg/encryption.h"
#include "torshpkg/error.h"
#include "torshpkg/keys.h"
#include "torshpkg/package.h"
#include "torshpkg/package_writer.h"

namespace torshpkg::cli {

// Documented in README.md and `torshpkg --help`.
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,
  kExitUsage = 2,
  kExitIntegrity = 3,
  kExitWrongKey = 4,
  kExitInterrupted = 130,
};

int exit_code_for(ErrorKind kind);

// Set by SIGINT/SIGTERM once install_cancel_handlers() has run.
extern std::atomic<bool> g_cancelled;
void install_cancel_handlers();
void throw_if_cancelled();

std::string human_bytes(uint64_t bytes);
// A tensor shape as "[2, 3]".
std::string shape_text(const std::vector<uint64_t>& shape);

// A one-line progress bar on stderr, drawn only when stderr is a terminal and at most ten times
// a second. Thread-safe.
class ProgressBar {
 public:
  ProgressBar(std::string label, bool enabled);
  ~ProgressBar();
  void update(uint64_t done, uint64_t total);
  void finish();

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
};

// Size of the reads to issue for `file` starting at `offset`: whole chunks, many at once (so
// the reader decodes them in parallel and never decodes a chunk twice). Returns the first read's
// length (which ends on a chunk boundary) in `first` and the following reads' length.
struct ReadPlan {
  size_t first;
  size_t next;
};
ReadPlan plan_reads(const Package& pkg, const FileNode& file, uint64_t offset);

// The secret options shared by every command that reads resources.
struct SecretOptions {
  std::string password_file;
  std::string key_file;
  void add_to(CLI::App& sub);
  // nullopt when neither option was given; both at once is a usage error.
  std::optional<Secret> load() const;
};

// WriteOptions from --compress ALG[:LEVEL], --chunk-size BYTES and --block-size BYTES (any may
// be empty: the defaults). Throws Error(kInvalidArgument).
WriteOptions write_options(const std::string& compress, const std::string& chunk_size,
                           const std::string& block_size = "");
// The help of --block-size, shared by the commands that write packages.
inline constexpr const char* kBlockSizeHelp =
    "Bytes per verified block of stored resources, a power of two from 4K to the chunk size, "
    "or 0 to hash chunks whole as readers of format versions 1 and 2 need (default 4K)";
// Loads --sign-key into `key` (when given) and points options.sign_key at it.
void apply_sign_key(const std::string& path, std::optional<PrivateKey>& key, WriteOptions& options);
// Throws Error(kInvalidArgument) when `out` exists and `force` is not set.
void refuse_existing(const std::string& out, bool force);

// Opens a package, unlocking it with the secret when one is given.
std::unique_ptr<Package> open_package(const std::string& path, const SecretOptions& secrets);

// The absolute, symlink-free form of an existing path; the path as given when it cannot be
// resolved (the later open reports why).
std::string absolute_path(const std::string& path);

// Records a lineage event about the package at `path` (package, digest, path and `extra`) in
// the journal: `journal` when given (failure is an error), else $TORSHPKG_JOURNAL, else
// /var/lib/torshpkg/lineage.jsonl when that folder exists (failure there only warns).
void record_lineage_event(const std::string& journal, const std::string& event,
                          const std::string& path,
                          const std::map<std::string, std::string>& extra = {});

// Writes all of `data` to stdout; throws Error(kIo) on failure.
void write_stdout(const void* data, size_t size);

}  // namespace torshpkg::cli
