// torshpkg extract: write the package's tree (manifest.json, resources/, dependencies/) to a
// folder without ever following a symlink out of it.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <memory>
#include <random>

#include "cli_util.h"
#include "commands.h"
#include "torshpkg/file_io.h"
#include "torshpkg/package.h"

namespace torshpkg::cli {
namespace {

// Opens (creating when missing) the folder `name` inside `parent`, refusing symlinks.
UniqueFd open_subdir(int parent, const std::string& name, const std::string& shown) {
  if (::mkdirat(parent, name.c_str(), 0755) != 0 && errno != EEXIST) {
    throw io_error(shown, "cannot create folder", errno);
  }
  UniqueFd fd(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ELOOP || errno == ENOTDIR) {
      throw invalid_argument(shown + ": exists and is not a folder (symlinks are not followed)");
    }
    throw io_error(shown, "cannot open folder", errno);
  }
  return fd;
}

void extract_file(const Package& pkg, const FileNode& f, int root, const std::string& root_name,
                  std::vector<uint8_t>& buf, const std::function<void(uint64_t)>& advance) {
  // Paths were validated when the package was opened: relative, no "..", no empty parts.
  UniqueFd dir(::dup(root));
  size_t start = 0;
  for (size_t slash = f.path.find('/'); slash != std::string::npos;
       slash = f.path.find('/', start)) {
    dir = open_subdir(dir.get(), f.path.substr(start, slash - start),
                      root_name + "/" + f.path.substr(0, slash));
    start = slash + 1;
  }
  const std::string base = f.path.substr(start);
  const std::string shown = root_name + "/" + f.path;
  const std::string temp =
      "." + base.substr(0, 200) + ".tmp-" + std::to_string(std::random_device{}());
  // A resource that was executable where it was packaged is executable again (less the umask).
  const bool executable =
      f.kind == FileNode::Kind::kResource && pkg.manifest().resources[f.item].executable;
  UniqueFd out(::openat(dir.get(), temp.c_str(),
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        executable ? 0755 : 0644));
  if (out.get() < 0) throw io_error(shown, "cannot create file", errno);
  try {
    const ReadPlan plan = plan_reads(pkg, f, 0);
    if (buf.size() < plan.next) buf.resize(plan.next);
    uint64_t at = 0;
    while (at < f.size) {
      throw_if_cancelled();
      const size_t n = pkg.read(f, at, std::span(buf.data(), plan.next));
      for (size_t done = 0; done < n;) {
        const ssize_t w = ::write(out.get(), buf.data() + done, n - done);
        if (w < 0) {
          if (errno == EINTR) continue;
          throw io_error(shown, "write failed", errno);
        }
        done += static_cast<size_t>(w);
      }
      at += n;
      advance(n);
    }
    // renameat replaces whatever was there (a file or a symlink) without following it.
    if (::renameat(dir.get(), temp.c_str(), dir.get(), base.c_str()) != 0) {
      throw io_error(shown, "cannot rename into place", errno);
    }
  } catch (...) {
    ::unlinkat(dir.get(), temp.c_str(), 0);
    throw;
  }
}

}  // namespace

Action add_extract_command(CLI::App& app) {
  struct Args {
    std::string pkg;
    std::string dir;
    bool quiet = false;
    SecretOptions secrets;
  };
  auto a = std::make_shared<Args>();
  CLI::App* sub =
      app.add_subcommand("extract", "Write the package's files (as `ls` lists them) into a folder");
  sub->add_option("PKG", a->pkg, "Package file")->required();
  sub->add_option("DIR", a->dir, "Destination folder (created when missing)")->required();
  sub->add_flag("-q,--quiet", a->quiet, "No progress bar");
  a->secrets.add_to(*sub);
  return [a] {
    const auto pkg = open_package(a->pkg, a->secrets);
    if (::mkdir(a->dir.c_str(), 0755) != 0 && errno != EEXIST) {
      throw io_error(a->dir, "cannot create folder", errno);
    }
    UniqueFd root(::open(a->dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (root.get() < 0) throw io_error(a->dir, "cannot open folder", errno);
    install_cancel_handlers();
    uint64_t total = 0, done = 0;
    for (const FileNode& f : pkg->files()) total += f.size;
    ProgressBar bar("extract", !a->quiet);
    std::vector<uint8_t> buf;
    for (const FileNode& f : pkg->files()) {
      extract_file(*pkg, f, root.get(), a->dir, buf, [&](uint64_t n) {
        done += n;
        bar.update(done, total);
      });
    }
    return kExitOk;
  };
}

}  // namespace torshpkg::cli
