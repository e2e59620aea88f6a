#include "backup.h"

#include <json/json.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "torshpkg/byte_source.h"
#include "torshpkg/error.h"
#include "torshpkg/libarchive.h"
#include "torshpkg/sha256.h"
#include "torshpkg/store.h"

namespace torshpkg::distribution {
namespace {

namespace fsys = std::filesystem;

constexpr const char* kSums = "SHA256SUMS";
constexpr const char* kInfo = "torshpkg-backup.json";

struct ArchiveWriter {
  archive* a;
  ~ArchiveWriter() { la::archive_write_free(a); }
};
struct ArchiveReader {
  archive* a;
  ~ArchiveReader() { la::archive_read_free(a); }
};

void add_file(archive* a, const std::string& name, const std::string& path,
              const std::string& out) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw io_error(path, "cannot stat", errno);
  archive_entry* e = la::archive_entry_new();
  la::archive_entry_set_pathname(e, name.c_str());
  la::archive_entry_set_size(e, st.st_size);
  la::archive_entry_set_filetype(e, AE_IFREG);
  la::archive_entry_set_perm(e, 0644);
  la::archive_entry_set_mtime(e, st.st_mtime, 0);
  const int rc = la::archive_write_header(a, e);
  la::archive_entry_free(e);
  if (rc != ARCHIVE_OK) throw Error(ErrorKind::kIo, out + ": " + la::archive_error_string(a));
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0 &&
        la::archive_write_data(a, buf.data(), static_cast<size_t>(in.gcount())) < 0) {
      throw Error(ErrorKind::kIo, out + ": " + la::archive_error_string(a));
    }
  }
}

void add_bytes(archive* a, const std::string& name, const std::string& bytes,
               const std::string& out) {
  archive_entry* e = la::archive_entry_new();
  la::archive_entry_set_pathname(e, name.c_str());
  la::archive_entry_set_size(e, static_cast<la_int64_t>(bytes.size()));
  la::archive_entry_set_filetype(e, AE_IFREG);
  la::archive_entry_set_perm(e, 0644);
  la::archive_entry_set_mtime(e, std::time(nullptr), 0);
  const int rc = la::archive_write_header(a, e);
  la::archive_entry_free(e);
  if (rc != ARCHIVE_OK || la::archive_write_data(a, bytes.data(), bytes.size()) < 0) {
    throw Error(ErrorKind::kIo, out + ": " + la::archive_error_string(a));
  }
}

std::string digest_of(const std::string& path) {
  return sha256_hex(*open_file_source(path));
}

// Whether a member path is one a backup holds (anything else is refused).
bool allowed_member(const std::string& name) {
  if (name.empty() || name.size() > 4096 || name.front() == '/' ||
      name.find("..") != std::string::npos || name.find('\\') != std::string::npos) {
    return false;
  }
  if (name == kSums || name == kInfo) return true;
  if (name.starts_with("store/blobs/sha256/")) {
    const std::string f = name.substr(19);
    return f.size() == 64 + 9 && f.ends_with(".torshpkg") && digest_from_hex(f.substr(0, 64));
  }
  if (name.starts_with("store/refs/")) {
    const std::string rest = name.substr(11);
    const size_t slash = rest.find('/');
    return slash != std::string::npos && is_valid_package_name(rest.substr(0, slash)) &&
           Version::parse(rest.substr(slash + 1)).has_value();
  }
  if (name.starts_with("trusted-keys/")) {
    const std::string f = name.substr(13);
    return f.ends_with(".pub") && f.find('/') == std::string::npos && f.size() > 4;
  }
  if (name.starts_with("lineage/")) {
    const std::string f = name.substr(8);
    return !f.empty() && f.find('/') == std::string::npos && f.front() != '.';
  }
  return false;
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0 || sa.st_size != sb.st_size) {
    return false;
  }
  return digest_of(a) == digest_of(b);
}

// Copies a checked file into place through a temporary name, so a reader never sees half of it.
void place(const std::string& staged, const std::string& dest, mode_t mode) {
  const fsys::path dir = fsys::path(dest).parent_path();
  if (!dir.empty()) fsys::create_directories(dir);
  const std::string tmp = dest + ".restore-tmp";
  fsys::copy_file(staged, tmp, fsys::copy_options::overwrite_existing);
  ::chmod(tmp.c_str(), mode);
  if (::rename(tmp.c_str(), dest.c_str()) != 0) throw io_error(dest, "cannot restore", errno);
}

}  // namespace

BackupSummary write_backup(const BackupPaths& paths, const std::string& out) {
  BackupSummary s;
  std::vector<std::pair<std::string, std::string>> files;  // member, source path
  for (const StoredPackage& p : Store(paths.store).list()) {
    files.emplace_back("store/blobs/sha256/" + p.digest + ".torshpkg", p.path);
    files.emplace_back("store/refs/" + p.name + "/" + p.version,
                       paths.store + "/refs/" + p.name + "/" + p.version);
    ++s.refs;
  }
  std::set<std::string> unique_blobs;
  for (const auto& [m, p] : files) {
    if (m.starts_with("store/blobs/")) unique_blobs.insert(m);
  }
  s.blobs = unique_blobs.size();
  if (fsys::is_regular_file(paths.journal)) {
    const std::string name = fsys::path(paths.journal).filename().string();
    files.emplace_back("lineage/" + name, paths.journal);
    if (fsys::is_regular_file(paths.journal + ".head")) {
      files.emplace_back("lineage/" + name + ".head", paths.journal + ".head");
    }
    s.journal = true;
  }
  if (fsys::is_directory(paths.trusted_keys)) {
    for (const auto& e : fsys::directory_iterator(paths.trusted_keys)) {
      if (e.is_regular_file() && e.path().extension() == ".pub") {
        files.emplace_back("trusted-keys/" + e.path().filename().string(), e.path().string());
        ++s.keys;
      }
    }
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());

  const std::string tmp = out + ".tmp-" + std::to_string(::getpid());
  ArchiveWriter w{la::archive_write_new()};
  la::archive_write_set_format_pax_restricted(w.a);
  if (la::archive_write_open_filename(w.a, tmp.c_str()) != ARCHIVE_OK) {
    throw Error(ErrorKind::kIo, out + ": " + la::archive_error_string(w.a));
  }
  struct Remove {
    std::string path;
    bool keep = false;
    ~Remove() {
      if (!keep) ::unlink(path.c_str());
    }
  } remove{tmp};
  std::string sums;
  for (const auto& [member, path] : files) {
    add_file(w.a, member, path, out);
    sums += digest_of(path) + "  " + member + "\n";
    s.bytes += fsys::file_size(path);
  }
  add_bytes(w.a, kSums, sums, out);
  Json::Value info(Json::objectValue);
  info["format"] = 1;
  info["created"] = static_cast<Json::Int64>(std::time(nullptr));
  info["blobs"] = Json::UInt64(s.blobs);
  info["refs"] = Json::UInt64(s.refs);
  info["keys"] = Json::UInt64(s.keys);
  info["journal"] = s.journal;
  info["sha256sums"] = to_hex(sha256(sums));
  add_bytes(w.a, kInfo, Json::writeString(Json::StreamWriterBuilder(), info) + "\n", out);
  if (la::archive_write_close(w.a) != ARCHIVE_OK) {
    throw Error(ErrorKind::kIo, out + ": " + la::archive_error_string(w.a));
  }
  if (::rename(tmp.c_str(), out.c_str()) != 0)
    throw io_error(out, "cannot rename into place", errno);
  remove.keep = true;
  return s;
}

BackupSummary restore_backup(const std::string& in, const BackupPaths& paths, bool overwrite) {
  // 1. Extract into a staging folder, refusing any member outside the layout.
  const fsys::path parent = fsys::absolute(paths.store).parent_path();
  fsys::create_directories(parent);
  std::string staging = (parent / ".torshpkg-restore-XXXXXX").string();
  if (::mkdtemp(staging.data()) == nullptr)
    throw io_error(parent.string(), "cannot create staging folder", errno);
  struct Cleanup {
    std::string path;
    ~Cleanup() {
      std::error_code ec;
      fsys::remove_all(path, ec);
    }
  } cleanup{staging};
  ArchiveReader r{la::archive_read_new()};
  la::archive_read_support_format_tar(r.a);
  la::archive_read_support_filter_all(r.a);
  if (la::archive_read_open_filename(r.a, in.c_str(), 1 << 20) != ARCHIVE_OK) {
    throw corrupt(in, std::string("not a backup: ") + la::archive_error_string(r.a));
  }
  std::set<std::string> members;
  archive_entry* e = nullptr;
  while (true) {
    const int rc = la::archive_read_next_header(r.a, &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK)
      throw corrupt(in, std::string("damaged archive: ") + la::archive_error_string(r.a));
    const std::string name = la::archive_entry_pathname(e) ? la::archive_entry_pathname(e) : "";
    if (la::archive_entry_filetype(e) != AE_IFREG || !allowed_member(name)) {
      throw corrupt(in, "unexpected member '" + name + "'");
    }
    if (!members.insert(name).second) throw corrupt(in, "member '" + name + "' appears twice");
    const fsys::path dest = fsys::path(staging) / name;
    fsys::create_directories(dest.parent_path());
    std::ofstream out(dest, std::ios::binary);
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int drc;
    while ((drc = la::archive_read_data_block(r.a, &buf, &size, &offset)) == ARCHIVE_OK) {
      out.write(static_cast<const char*>(buf), static_cast<std::streamsize>(size));
    }
    if (drc != ARCHIVE_EOF) throw corrupt(in, "damaged member '" + name + "'");
    if (!out) throw io_error(dest.string(), "cannot write", errno);
  }
  // 2. Check SHA256SUMS against every file, and the store's invariants.
  if (!members.contains(kSums)) throw corrupt(in, "no SHA256SUMS: not a torshpkg backup");
  std::ifstream sums_in(fsys::path(staging) / kSums);
  std::map<std::string, std::string> sums;
  for (std::string line; std::getline(sums_in, line);) {
    if (line.size() < 67 || line[64] != ' ' || line[65] != ' ')
      throw corrupt(in, "bad SHA256SUMS line");
    sums[line.substr(66)] = line.substr(0, 64);
  }
  BackupSummary s;
  for (const std::string& m : members) {
    if (m == kSums || m == kInfo) continue;
    const auto it = sums.find(m);
    if (it == sums.end()) throw corrupt(in, "'" + m + "' is not in SHA256SUMS");
    const std::string got = digest_of((fsys::path(staging) / m).string());
    if (got != it->second) throw corrupt(in, "'" + m + "' does not match SHA256SUMS");
    if (m.starts_with("store/blobs/") && got != m.substr(19, 64)) {
      throw corrupt(in, "blob '" + m + "' does not hold the bytes its name says");
    }
    s.bytes += fsys::file_size(fsys::path(staging) / m);
  }
  for (const auto& [m, digest] : sums) {
    if (!members.contains(m)) throw corrupt(in, "'" + m + "' is listed but missing");
  }
  for (const std::string& m : members) {
    if (!m.starts_with("store/refs/")) continue;
    std::ifstream ref(fsys::path(staging) / m);
    std::string digest;
    std::getline(ref, digest);
    if (!members.contains("store/blobs/sha256/" + digest + ".torshpkg")) {
      throw corrupt(in, "reference '" + m + "' names a blob the backup lacks");
    }
  }
  // 3. Conflicts, before anything moves.
  const auto target_of = [&](const std::string& m) -> std::string {
    if (m.starts_with("store/")) return paths.store + "/" + m.substr(6);
    if (m.starts_with("trusted-keys/")) return paths.trusted_keys + "/" + m.substr(13);
    if (m.starts_with("lineage/")) {
      return m.ends_with(".head") ? paths.journal + ".head" : paths.journal;
    }
    return "";
  };
  for (const std::string& m : members) {
    const std::string target = target_of(m);
    if (target.empty() || m.starts_with("store/blobs/")) continue;
    if (fsys::exists(target) && !same_file(target, (fsys::path(staging) / m).string()) &&
        !overwrite) {
      throw invalid_argument(target + " exists with other content (restore --force replaces it)");
    }
  }
  // 4. Into place: blobs first, so no reference ever names a missing blob.
  for (const bool blobs : {true, false}) {
    for (const std::string& m : members) {
      const std::string target = target_of(m);
      if (target.empty() || m.starts_with("store/blobs/") != blobs) continue;
      const std::string staged = (fsys::path(staging) / m).string();
      if (fsys::exists(target) && same_file(target, staged)) continue;
      place(staged, target, blobs ? 0444 : 0644);
      if (blobs)
        ++s.blobs;
      else if (m.starts_with("store/refs/"))
        ++s.refs;
      else if (m.starts_with("trusted-keys/"))
        ++s.keys;
      else
        s.journal = true;
    }
  }
  return s;
}

}  // namespace torshpkg::distribution
