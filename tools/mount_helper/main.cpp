// mount.torshpkg: the helper mount(8) runs for `mount -t torshpkg` and fstab lines such as
//   /srv/m.torshpkg /run/models/m torshpkg ro,trusted_keys=/etc/torshpkg/trusted-keys,nofail 0 0
// It turns the -o options into `torshpkg mount` arguments and runs it, so the mount goes through
// torshpkgd when it runs and is standalone otherwise; a plain umount undoes it.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

// Options mount(8) and fstab use for themselves; the helper accepts and ignores them ("owner"
// and "group" without a value are fstab's: who may mount; with one, they are torshpkg's).
bool is_userspace_option(const std::string& o) {
  static const char* const kIgnored[] = {"ro",     "rw",      "defaults", "auto",  "noauto",
                                         "nofail", "_netdev", "user",     "users", "nouser",
                                         "owner",  "group",   "comment"};
  for (const char* i : kIgnored) {
    if (o == i) return true;
  }
  return o.rfind("x-", 0) == 0 || o.rfind("comment=", 0) == 0;
}

int usage(const char* why) {
  std::fprintf(stderr, "mount.torshpkg: %s\n", why);
  std::fprintf(stderr,
               "usage: mount.torshpkg PACKAGE DIR [-o OPTIONS]\n"
               "options: trusted_keys=DIR, allow_unsigned, require_key=ID, password_file=F,\n"
               "         key_file=F, cache_size=BYTES, owner=USER, group=GROUP, mode=0440,\n"
               "         umask=0077, nonempty, kernel_readahead=KIB, socket=PATH, standalone,\n"
               "         buffered_reads, and FUSE options; the mount is always read-only\n");
  return 2;
}

// The torshpkg binary: next to this helper's target when it is a link into the build or
// install tree, else the configured bindir, else PATH.
std::string torshpkg_path() {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    std::string dir(self);
    dir.resize(dir.rfind('/') + 1);
    for (const char* rel : {"torshpkg", "../tools/torshpkg", "../bin/torshpkg"}) {
      const std::string candidate = dir + rel;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  const std::string configured = std::string(TORSHPKG_BINDIR) + "/torshpkg";
  if (::access(configured.c_str(), X_OK) == 0) return configured;
  return "torshpkg";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  std::string options;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-o" && i + 1 < argc) {
      options += (options.empty() ? "" : ",") + std::string(argv[++i]);
    } else if (arg.rfind("-o", 0) == 0 && arg.size() > 2) {
      options += (options.empty() ? "" : ",") + arg.substr(2);
    } else if (arg == "-t" && i + 1 < argc) {
      ++i;  // the type: torshpkg
    } else if (arg.size() > 1 && arg[0] == '-') {
      // -s (sloppy), -f (fake), -n (no mtab), -v (verbose): nothing to do for a FUSE mount
      if (arg.find('f') != std::string::npos) return 0;
      verbose = verbose || arg.find('v') != std::string::npos;
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) return usage("expected a package and a mount point");
  std::vector<std::string> args = {torshpkg_path(), "mount", positional[0], positional[1]};
  size_t start = 0;
  while (start <= options.size()) {
    size_t end = options.find(',', start);
    if (end == std::string::npos) end = options.size();
    const std::string o = options.substr(start, end - start);
    start = end + 1;
    if (o.empty() || is_userspace_option(o)) continue;
    const size_t eq = o.find('=');
    const std::string key = o.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : o.substr(eq + 1);
    const bool has_value = eq != std::string::npos && !value.empty();
    if (key == "allow_unsigned" || key == "standalone" || key == "buffered_reads" ||
        key == "nonempty") {
      if (eq != std::string::npos) return usage(("option " + key + " takes no value").c_str());
      std::string flag = "--" + key;
      for (char& c : flag) c = c == '_' ? '-' : c;
      args.push_back(flag);
    } else if (key == "trusted_keys" || key == "password_file" || key == "key_file" ||
               key == "cache_size" || key == "owner" || key == "group" || key == "mode" ||
               key == "umask" || key == "require_key" || key == "socket" ||
               key == "kernel_readahead") {
      if (!has_value) return usage(("option " + key + " needs a value").c_str());
      std::string flag = "--" + key;
      for (char& c : flag) c = c == '_' ? '-' : c;
      args.push_back(flag);
      args.push_back(value);
    } else {
      args.push_back("-o");  // a FUSE option: the mount runs standalone to apply it
      args.push_back(o);
    }
  }
  if (!verbose) {  // mount helpers are quiet unless asked; errors still go to stderr
    const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) ::dup2(null, STDOUT_FILENO);
  }
  std::vector<char*> exec_args;
  for (std::string& a : args) exec_args.push_back(a.data());
  exec_args.push_back(nullptr);
  ::execvp(exec_args[0], exec_args.data());
  std::fprintf(stderr, "mount.torshpkg: cannot run %s: %s\n", args[0].c_str(),
               std::strerror(errno));
  return 1;
}
