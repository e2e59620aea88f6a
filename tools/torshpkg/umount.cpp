// torshpkg umount: unmount a package, through torshpkgd when it holds the mount.
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

#include "cli_util.h"
#include "commands.h"
#include "daemon_client.h"
#include "mount_point.h"
#include "torshpkg/file_io.h"

namespace torshpkg::cli {

Action add_umount_command(CLI::App& app) {
  struct Args {
    std::string dir;
    bool lazy = false;
    std::string socket;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("umount", "Unmount a mounted package");
  sub->add_option("DIR", a->dir, "Mount point")->required();
  sub->add_flag("--lazy", a->lazy, "Detach now, finish when the last reader closes");
  sub->add_option("--socket", a->socket, "torshpkgd's control socket");
  return [a] {
    // A mount the daemon holds is unmounted by the daemon, so it records it and lets go.
    Json::Value request(Json::objectValue);
    request["op"] = "umount";
    request["mountpoint"] = fs::canonical_mount_path(a->dir);
    request["lazy"] = a->lazy;
    try {
      if (daemon_request(daemon_socket(a->socket), request)) return kExitOk;
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kNotFound) throw;  // not the daemon's: unmount it here
    }
    // Only a torshpkg mount, and only when it is the one on top: a plain umount of the path
    // would take whatever was mounted over it.
    const std::string point = fs::canonical_mount_path(a->dir);
    const auto top = fs::top_mount_at(point);
    if (!top) throw not_found(a->dir, "not a mount point (nothing is mounted there)");
    if (top->fstype != "fuse.torshpkg") {
      throw invalid_argument(a->dir + ": the mount on top is " + top->fstype +
                             ", not a torshpkg package; unmount it first (not touched)");
    }
    if (::umount2(point.c_str(), a->lazy ? MNT_DETACH : 0) == 0) return kExitOk;
    int err = errno;
    if (err == EPERM) {
      // Not root: the setuid helper unmounts what this user mounted; what it says decides the
      // message (busy, or not this user's mount).
      Pipe out = make_pipe();
      const pid_t pid = ::fork();
      if (pid < 0) throw io_error("fork", "cannot start fusermount3", errno);
      if (pid == 0) {
        ::dup2(out.write.get(), STDERR_FILENO);
        if (a->lazy) {
          ::execlp("fusermount3", "fusermount3", "-u", "-z", point.c_str(), nullptr);
        } else {
          ::execlp("fusermount3", "fusermount3", "-u", point.c_str(), nullptr);
        }
        ::_exit(127);
      }
      out.write.reset();
      std::string said = read_to_end(out.read.get());
      int status = 0;
      ::waitpid(pid, &status, 0);
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return kExitOk;
      if (said.find("busy") != std::string::npos) {
        err = EBUSY;
      } else if (const size_t colon = said.find(": "); colon != std::string::npos) {
        while (!said.empty() && said.back() == '\n') said.pop_back();
        throw Error(ErrorKind::kIo, a->dir + ": cannot unmount: " + said.substr(colon + 2));
      }
    }
    if (err == EBUSY) {
      throw Error(ErrorKind::kIo, a->dir +
                                      ": busy: files are open on it; close them, or give --lazy "
                                      "to detach it now and finish when they close");
    }
    throw io_error(a->dir, "cannot unmount", err);
  };
}

}  // namespace torshpkg::cli
