#include "cli_util.h"

#include <sys/uio.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "torshpkg/dynamic_library.h"
#include "torshpkg/lineage_journal.h"

namespace torshpkg::cli {

std::atomic<bool> g_cancelled{false};

namespace {
extern "C" void on_signal(int) {
  g_cancelled.store(true);
}
}  // namespace

int exit_code_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kCorrupt:
    case ErrorKind::kBadSignature:
      return kExitIntegrity;
    case ErrorKind::kWrongKey:
      return kExitWrongKey;
    case ErrorKind::kInvalidArgument:
      return kExitUsage;
    case ErrorKind::kInterrupted:
      return kExitInterrupted;
    case ErrorKind::kNotFound:
    case ErrorKind::kIo:
    case ErrorKind::kUnsupported:
      return kExitError;
  }
  return kExitError;
}

void install_cancel_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void throw_if_cancelled() {
  if (g_cancelled.load()) throw Error(ErrorKind::kInterrupted, "interrupted");
}

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string human_bytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, kUnits[u]);
  return buf;
}

ProgressBar::ProgressBar(std::string label, bool enabled)
    : label_(std::move(label)),
      enabled_(enabled && ::isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

ProgressBar::~ProgressBar() {
  finish();
}

void ProgressBar::update(uint64_t done, uint64_t total) {
  if (!enabled_ || total == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_ < std::chrono::milliseconds(100) && done < total) return;
  last_ = now;
  drawn_ = true;
  const double fraction = static_cast<double>(done) / static_cast<double>(total);
  const int width = 30;
  const int filled = static_cast<int>(fraction * width);
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
  std::fprintf(stderr, "\r%s [%.*s%*s] %3.0f%% %s/%s %s/s\033[K", label_.c_str(), filled,
               "==============================", width - filled, "", fraction * 100,
               human_bytes(done).c_str(), human_bytes(total).c_str(),
               human_bytes(static_cast<uint64_t>(rate)).c_str());
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (drawn_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    drawn_ = false;
  }
}

ReadPlan plan_reads(const Package& pkg, const FileNode& file, uint64_t offset) {
  constexpr uint64_t kMinRead = 16u << 20;
  if (file.kind != FileNode::Kind::kResource) return {kMinRead, kMinRead};
  const uint64_t cs = pkg.manifest().resources[file.item].chunk_size;
  const uint64_t next = std::max<uint64_t>(kMinRead / cs, 4) * cs;
  return {static_cast<size_t>(next - offset % cs), static_cast<size_t>(next)};
}

void SecretOptions::add_to(CLI::App& sub) {
  sub.add_option("--password-file", password_file,
                 "File holding the password of an encrypted package");
  sub.add_option("--key-file", key_file, "Key file (32 bytes or more) of an encrypted package");
}

std::optional<Secret> SecretOptions::load() const {
  if (!password_file.empty() && !key_file.empty()) {
    throw invalid_argument("give either --password-file or --key-file, not both");
  }
  if (!password_file.empty()) return read_password_file(password_file);
  if (!key_file.empty()) return read_key_file(key_file);
  return std::nullopt;
}

WriteOptions write_options(const std::string& compress, const std::string& chunk_size,
                           const std::string& block_size) {
  WriteOptions options;
  if (!compress.empty()) options.compression = parse_codec_spec(compress);
  if (!chunk_size.empty()) {
    const uint64_t cs = parse_byte_size(chunk_size, "--chunk-size");
    if (cs > UINT32_MAX) throw invalid_argument("--chunk-size: at most 64M");
    options.chunk_size = static_cast<uint32_t>(cs);
  }
  if (!block_size.empty()) {
    const uint64_t bs = parse_byte_size(block_size, "--block-size");
    if (bs > UINT32_MAX) throw invalid_argument("--block-size: at most the chunk size");
    options.block_size = static_cast<uint32_t>(bs);
  }
  return options;
}

void apply_sign_key(const std::string& path, std::optional<PrivateKey>& key,
                    WriteOptions& options) {
  if (path.empty()) return;
  key = PrivateKey::load(path);
  options.sign_key = &*key;
}

void refuse_existing(const std::string& out, bool force) {
  if (::access(out.c_str(), F_OK) == 0 && !force) {
    throw invalid_argument(out + ": already exists (use --force to replace it)");
  }
}

std::unique_ptr<Package> open_package(const std::string& path, const SecretOptions& secrets) {
  const std::optional<Secret> secret = secrets.load();
  return Package::open(path, secret ? &*secret : nullptr);
}

std::string absolute_path(const std::string& path) {
  char buf[PATH_MAX];
  return ::realpath(path.c_str(), buf) != nullptr ? std::string(buf) : path;
}

namespace {

// libsystemd, loaded the first time an event is mirrored to journald: only create and sign
// record events, and linking it would load it, libgcrypt, libgpg-error, libcap and liblz4 into
// every command at start. Null when it cannot be loaded (then there is no journald to tell).
decltype(&sd_journal_sendv) journal_sendv() {
  static const auto fn = [] {
    static DynamicLibrary lib({"libsystemd.so.0"}, "no libsystemd.so.0");
    decltype(&sd_journal_sendv) send = nullptr;
    lib.bind(send, "sd_journal_sendv");
    return send;
  }();
  return fn;
}

}  // namespace

void record_lineage_event(const std::string& journal, const std::string& event,
                          const std::string& path,
                          const std::map<std::string, std::string>& extra) {
  std::string target = journal;
  bool explicit_target = !target.empty();
  if (!explicit_target) {
    const char* env = std::getenv("TORSHPKG_JOURNAL");
    if (env != nullptr && *env != '\0') {
      target = env;
      explicit_target = true;
    } else if (::access("/var/lib/torshpkg", W_OK) == 0) {
      target = "/var/lib/torshpkg/lineage.jsonl";
    } else {
      return;  // not a torshpkg host: nothing to record into
    }
  }
  try {
    const auto package = Package::open(path);
    std::map<std::string, std::string> data = package_event_fields(*package, absolute_path(path));
    data.insert(extra.begin(), extra.end());
    const JournalEvent written = LineageJournal(target).append(event, data);
    // Mirrored to journald like the daemon's events (best effort: no journald, no copy).
    std::vector<std::string> fields =
        journal_fields(written, "torshpkg", event + " " + data["package"], LOG_INFO);
    std::vector<iovec> iov;
    for (std::string& f : fields) iov.push_back({f.data(), f.size()});
    if (const auto send = journal_sendv()) send(iov.data(), static_cast<int>(iov.size()));
  } catch (const Error& e) {
    if (explicit_target) throw;
    std::fprintf(stderr, "torshpkg: warning: not recorded in the lineage journal: %s\n", e.what());
  }
}

void write_stdout(const void* data, size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(STDOUT_FILENO, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw io_error("stdout", "write failed", errno);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

}  // namespace torshpkg::cli
