#include "mount_access.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <optional>

#include "torshpkg/error.h"

namespace torshpkg::fs {
namespace {

std::optional<unsigned long> number(const std::string& s) {
  if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  return std::stoul(s);
}

struct User {
  uid_t uid = 0;
  std::optional<gid_t> primary_gid;
};

User lookup_user(const std::string& name) {
  if (const auto n = number(name)) return {static_cast<uid_t>(*n), std::nullopt};
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    throw invalid_argument("owner: no such user '" + name + "'");
  }
  return {pw.pw_uid, pw.pw_gid};
}

gid_t lookup_group(const std::string& name) {
  if (const auto n = number(name)) return static_cast<gid_t>(*n);
  std::vector<char> buf(65536);
  group gr{};
  group* found = nullptr;
  if (::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    throw invalid_argument("group: no such group '" + name + "'");
  }
  return gr.gr_gid;
}

mode_t parse_octal(const std::string& text, const std::string& what) {
  if (text.empty() || text.size() > 4 || text.find_first_not_of("01234567") != std::string::npos) {
    throw invalid_argument(what + " expects octal digits such as 0440, got '" + text + "'");
  }
  return static_cast<mode_t>(std::stoul(text, nullptr, 8));
}

}  // namespace

mode_t parse_mount_mode(const std::string& text, const std::string& what) {
  const mode_t mode = parse_octal(text, what);
  if ((mode & 07000) != 0) {
    throw invalid_argument(what + " " + text + ": setuid, setgid and sticky bits do not apply");
  }
  if ((mode & 0222) != 0) {
    throw invalid_argument(what + " " + text +
                           ": the mount is read-only; give read bits only (such as 0440)");
  }
  return mode & 0444;
}

MountAccess resolve_access(const AccessRequest& request, uid_t asker_uid, gid_t asker_gid,
                           bool secret) {
  MountAccess access;
  access.uid = asker_uid;
  access.gid = asker_gid;
  access.mode = secret ? 0400 : 0444;
  std::string owner = request.owner;
  std::string group = request.group;
  if (const size_t colon = owner.find(':'); colon != std::string::npos) {
    if (!group.empty()) throw invalid_argument("give the group either in owner or in group");
    group = owner.substr(colon + 1);
    owner.resize(colon);
    if (group.empty()) throw invalid_argument("owner '" + request.owner + "': empty group");
  }
  if (!owner.empty()) {
    const User user = lookup_user(owner);
    access.uid = user.uid;
    if (user.primary_gid) access.gid = *user.primary_gid;
  }
  if (!group.empty()) access.gid = lookup_group(group);
  if (!request.mode.empty() && !request.umask.empty()) {
    throw invalid_argument("give either a mode or a umask, not both");
  }
  if (!request.mode.empty()) access.mode = parse_mount_mode(request.mode, "mode");
  if (!request.umask.empty()) {
    const mode_t mask = parse_octal(request.umask, "umask");
    if ((mask & ~mode_t{0777}) != 0)
      throw invalid_argument("umask " + request.umask + ": too large");
    access.mode = 0444 & ~mask;
  }
  return access;
}

bool needs_allow_other(const MountAccess& access, uid_t mounter) {
  return (access.mode & 0044) != 0 || access.uid != mounter;
}

bool fuse_allows_other_for_users() {
  std::ifstream in("/etc/fuse.conf");
  std::string line;
  while (std::getline(in, line)) {
    const size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    const size_t end = line.find_last_not_of(" \t\r");
    if (line.substr(start, end - start + 1) == "user_allow_other") return true;
  }
  return false;
}

std::vector<std::string> standard_fuse_options(const std::string& package_path,
                                               const MountAccess& access) {
  std::vector<std::string> options = {"ro", "default_permissions", "subtype=torshpkg",
                                      "fsname=" + package_path, "max_read=1048576"};
  const uid_t mounter = ::getuid();
  if (needs_allow_other(access, mounter) && (mounter == 0 || fuse_allows_other_for_users())) {
    options.emplace_back("allow_other");
  }
  return options;
}

std::string mode_string(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

}  // namespace torshpkg::fs
