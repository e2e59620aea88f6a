#include "torshpkg/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/keys.h"
#include "torshpkg/package.h"
#include "torshpkg/semver.h"
#include "torshpkg/sha256.h"
#include "torshpkg/signature.h"

namespace torshpkg {
namespace {

void make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    throw io_error(path, "cannot create folder", errno);
  }
}

// flock(2) on a file, released when the object goes.
class FileLock {
 public:
  FileLock(const std::string& path, int operation)
      : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    if (!fd_) throw io_error(path, "cannot open lock file", errno);
    while (::flock(fd_.get(), operation) != 0) {
      if (errno != EINTR) throw io_error(path, "cannot lock", errno);
    }
  }

 private:
  UniqueFd fd_;
};

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_small(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return "";
  char buf[256];
  const ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n <= 0) return "";
  std::string s(buf, static_cast<size_t>(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

bool is_hex_digest(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

void Store::check_and_record_source(const std::string& source, const std::string& name,
                                    const std::string& version, bool allow_downgrade) const {
  make_dir(root_);
  make_dir(root_ + "/sources");
  const std::string path = root_ + "/sources/" + to_hex(sha256(std::string_view(source)));
  const FileLock lock(path + ".lock", LOCK_EX);
  std::string before_name, before_version;
  {
    std::ifstream in(path);
    std::string recorded_source;
    std::getline(in, recorded_source);
    std::getline(in, before_name);
    std::getline(in, before_version);
    if (recorded_source != source) before_name.clear();
  }
  if (!before_name.empty() && !allow_downgrade) {
    if (before_name != name) {
      throw corrupt(source, "gave " + name + "@" + version + " where it gave the package " +
                                before_name +
                                " before (a substitution?); give --allow-downgrade "
                                "(allow_downgrade) to accept it");
    }
    const auto now = Version::parse(version);
    const auto then = Version::parse(before_version);
    if (now && then && *now < *then) {
      throw corrupt(source, "gave " + name + "@" + version + ", older than the " + before_version +
                                " it gave before (a rollback?); give "
                                "--allow-downgrade (allow_downgrade) to accept it");
    }
  }
  const std::string text = source + "\n" + name + "\n" + version + "\n";
  AtomicFile out(path);
  write_all(out.fd(), std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()), path);
  out.commit();
}

Store::Store(std::string root) : root_(std::move(root)) {
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
}

std::string Store::default_root() {
  const char* env = std::getenv("TORSHPKG_STORE");
  return env != nullptr && *env != '\0' ? env : "/var/lib/torshpkg/store";
}

InstallResult Store::install(const std::string& path, const InstallPolicy& policy) const {
  return install_file(path, policy, false);
}

InstallResult Store::take(const std::string& tmp_path, const InstallPolicy& policy) const {
  return install_file(tmp_path, policy, true);
}

InstallResult Store::install_file(const std::string& path, const InstallPolicy& policy,
                                  bool take) const {
  for (const std::string& d :
       {root_, root_ + "/blobs", root_ + "/blobs/sha256", root_ + "/refs", root_ + "/tmp"}) {
    make_dir(d);
  }
  // 1. The file to check and move in: a copy in tmp/ (or, taken, the caller's file there),
  // hashed as it is read and locked so that gc leaves it alone.
  std::string tmp = path;
  UniqueFd out;
  if (take) {
    std::error_code ec;
    const auto dir = std::filesystem::canonical(std::filesystem::path(path).parent_path(), ec);
    if (ec || dir != std::filesystem::canonical(root_ + "/tmp", ec)) {
      throw invalid_argument(path + ": only files in " + root_ + "/tmp can be taken");
    }
    out = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!out) throw io_error(path, "cannot open", errno);
  } else {
    tmp = root_ + "/tmp/install-XXXXXX";
    out = UniqueFd(::mkstemp(tmp.data()));
    if (!out) throw io_error(root_ + "/tmp", "cannot create a temporary file", errno);
  }
  struct Cleanup {
    std::string path;
    ~Cleanup() {
      if (!path.empty()) ::unlink(path.c_str());
    }
  } cleanup{tmp};
  ::flock(out.get(), LOCK_EX);
  const auto in = open_file_source(path);
  Sha256 hasher;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(in->size(), 8u << 20)));
  for (uint64_t at = 0; at < in->size();) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), in->size() - at));
    in->read_at(at, std::span(buf.data(), n));
    hasher.update(std::span<const uint8_t>(buf.data(), n));
    if (!take) write_all(out.get(), std::span<const uint8_t>(buf.data(), n), tmp);
    at += n;
  }
  if (::fsync(out.get()) != 0) throw io_error(tmp, "fsync failed", errno);
  ::fchmod(out.get(), 0444);
  const std::string digest = to_hex(hasher.finish());

  // 2. Check the copy: what is installed is what was checked.
  const auto pkg = Package::open(tmp);
  InstallResult result;
  if (!policy.allow_unsigned) {
    result.signer = verify_trusted_signature(*pkg, TrustedKeys::load_dir(policy.trusted_keys_dir));
  }
  pkg->verify(true);
  const Manifest& m = pkg->manifest();
  result.package = {m.name, m.version, digest, root_ + "/blobs/sha256/" + digest + ".torshpkg",
                    in->size()};

  // 3. Blob and reference, under the store lock.
  const FileLock lock(root_ + "/lock", LOCK_EX);
  const std::string ref_dir = root_ + "/refs/" + m.name;
  const std::string ref = ref_dir + "/" + m.version;
  const std::string existing = read_small(ref);
  if (!existing.empty() && existing != digest) {
    throw invalid_argument(m.name + "@" + m.version + " is installed with other bytes (sha256:" +
                           existing + "); remove it first");
  }
  struct stat st {};
  if (::stat(result.package.path.c_str(), &st) != 0) {
    if (::rename(tmp.c_str(), result.package.path.c_str()) != 0) {
      throw io_error(result.package.path, "cannot move into the store", errno);
    }
    cleanup.path.clear();
  }
  result.already_installed = existing == digest;
  if (!result.already_installed) {
    make_dir(ref_dir);
    AtomicFile f(ref);
    write_all(f.fd(), std::span(reinterpret_cast<const uint8_t*>((digest + "\n").data()), 65), ref);
    f.commit();
  }
  return result;
}

std::vector<StoredPackage> Store::versions(const std::string& name) const {
  std::vector<StoredPackage> out;
  if (!is_valid_package_name(name)) return out;
  const std::string dir = root_ + "/refs/" + name;
  for (const std::string& version : entries(dir)) {
    if (!Version::parse(version)) continue;
    const std::string digest = read_small(dir + "/" + version);
    if (!is_hex_digest(digest)) continue;
    StoredPackage p{name, version, digest, root_ + "/blobs/sha256/" + digest + ".torshpkg", 0};
    struct stat st {};
    if (::stat(p.path.c_str(), &st) != 0) continue;  // a reference whose blob went missing
    p.size = static_cast<uint64_t>(st.st_size);
    out.push_back(std::move(p));
  }
  std::sort(out.begin(), out.end(), [](const StoredPackage& a, const StoredPackage& b) {
    return *Version::parse(a.version) < *Version::parse(b.version);
  });
  return out;
}

std::vector<StoredPackage> Store::list() const {
  std::vector<StoredPackage> out;
  for (const std::string& name : entries(root_ + "/refs")) {
    for (StoredPackage& p : versions(name)) out.push_back(std::move(p));
  }
  return out;
}

std::optional<StoredPackage> Store::find(const std::string& name,
                                         const std::string& version) const {
  for (StoredPackage& p : versions(name)) {
    if (p.version == version) return p;
  }
  return std::nullopt;
}

std::optional<StoredPackage> Store::resolve(const std::string& name, const VersionReq& req) const {
  std::optional<StoredPackage> best;
  for (StoredPackage& p : versions(name)) {
    if (req.matches(*Version::parse(p.version))) best = std::move(p);  // sorted ascending
  }
  return best;
}

void Store::remove(const std::string& name, const std::string& version) const {
  const FileLock lock(root_ + "/lock", LOCK_EX);
  if (!is_valid_package_name(name) || !Version::parse(version)) {
    throw invalid_argument("'" + name + "@" + version + "' is not NAME@VERSION");
  }
  const std::string ref = root_ + "/refs/" + name + "/" + version;
  if (::unlink(ref.c_str()) != 0) {
    if (errno == ENOENT) throw not_found(root_, name + "@" + version + " is not installed");
    throw io_error(ref, "cannot remove", errno);
  }
  ::rmdir((root_ + "/refs/" + name).c_str());  // only when empty
}

GcResult Store::gc() const {
  GcResult r;
  const FileLock lock(root_ + "/lock", LOCK_EX);
  std::set<std::string> referenced;
  for (const std::string& name : entries(root_ + "/refs")) {
    for (const std::string& version : entries(root_ + "/refs/" + name)) {
      referenced.insert(read_small(root_ + "/refs/" + name + "/" + version));
    }
  }
  const std::string blobs = root_ + "/blobs/sha256";
  for (const std::string& file : entries(blobs)) {
    const std::string digest = file.substr(0, file.find('.'));
    if (referenced.contains(digest)) continue;
    struct stat st {};
    const std::string path = blobs + "/" + file;
    if (::stat(path.c_str(), &st) == 0 && ::unlink(path.c_str()) == 0) {
      ++r.blobs_removed;
      r.bytes_freed += static_cast<uint64_t>(st.st_size);
    }
  }
  for (const std::string& file : entries(root_ + "/tmp")) {
    const std::string path = root_ + "/tmp/" + file;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;  // an install holds it
    struct stat st {};
    ::fstat(fd.get(), &st);
    if (::unlink(path.c_str()) == 0) {
      ++r.temp_files_removed;
      r.bytes_freed += static_cast<uint64_t>(st.st_size);
    }
  }
  return r;
}

std::string Store::locate(const std::string& arg) const {
  struct stat st {};
  if (::stat(arg.c_str(), &st) == 0) return arg;
  const auto ref = parse_package_ref(arg);
  if (!ref) throw not_found(arg, "no such file (nor a NAME@REQ)");
  if (const auto found = resolve(ref->name, VersionReq::parse(ref->req))) return found->path;
  std::string have;
  for (const StoredPackage& p : versions(ref->name)) have += (have.empty() ? "" : ", ") + p.version;
  throw not_found(arg, "no file of that name, and no version of " + ref->name + " in the store " +
                           root_ + " matches " + ref->req +
                           (have.empty() ? " (none installed)" : " (installed: " + have + ")"));
}

std::vector<DependencyMount> plan_dependency_mounts(const Store& store, const Manifest& root,
                                                    const std::string& parent) {
  std::vector<DependencyMount> out;
  std::set<std::string> names;
  for (const ResolvedDependency& r : resolve_dependencies(store, root)) {
    if (!r.package) {
      if (r.dependency.optional) continue;
      throw not_found(r.parent, "dependency " + r.dependency.name + " " + r.dependency.version_req +
                                    " is not in the store " + store.root() +
                                    " (see `torshpkg deps`)");
    }
    if (!names.insert(r.dependency.name).second) continue;
    out.push_back({r.dependency.name, r.package->path,
                   (std::filesystem::path(parent) / r.dependency.name).string()});
  }
  return out;
}

std::vector<ResolvedDependency> resolve_dependencies(const Store& store, const Manifest& root) {
  constexpr size_t kMaxDepth = 64;
  std::vector<ResolvedDependency> out;
  std::set<std::string> expanded = {root.name + "@" + root.version};
  struct Pending {
    Manifest manifest;
    size_t depth;
  };
  std::vector<Pending> level = {{root, 1}};
  while (!level.empty()) {
    std::vector<Pending> next;
    for (const Pending& p : level) {
      if (p.depth > kMaxDepth) throw invalid_argument("dependencies nested deeper than 64");
      for (const Dependency& d : p.manifest.dependencies) {
        ResolvedDependency r;
        r.parent = p.manifest.name + "@" + p.manifest.version;
        r.dependency = d;
        r.depth = p.depth;
        for (const StoredPackage& v : store.versions(d.name)) r.installed.push_back(v.version);
        r.package = store.resolve(d.name, VersionReq::parse(d.version_req));
        if (r.package && expanded.insert(d.name + "@" + r.package->version).second) {
          next.push_back({Package::open(r.package->path)->manifest(), p.depth + 1});
        }
        out.push_back(std::move(r));
      }
    }
    level = std::move(next);
  }
  return out;
}

std::optional<PackageRef> parse_package_ref(const std::string& text) {
  const size_t at = text.find('@');
  PackageRef r;
  r.name = text.substr(0, at);
  if (at != std::string::npos) r.req = text.substr(at + 1);
  if (!is_valid_package_name(r.name) || r.req.empty()) return std::nullopt;
  return r;
}

}  // namespace torshpkg
