#include "store_util.h"

#include <sys/stat.h>

#include "torshpkg/error.h"

namespace torshpkg::cli {

std::string locate_package(const Store& store, const std::string& arg) {
  struct stat st {};
  if (::stat(arg.c_str(), &st) == 0) return arg;
  const auto ref = parse_package_ref(arg);
  if (!ref) throw not_found(arg, "no such file (nor a NAME@REQ)");
  const VersionReq req = VersionReq::parse(ref->req);
  const auto found = store.resolve(ref->name, req);
  if (found) return found->path;
  std::string have;
  for (const StoredPackage& p : store.versions(ref->name))
    have += (have.empty() ? "" : ", ") + p.version;
  throw not_found(arg, "no file of that name, and no version of " + ref->name + " in the store " +
                           store.root() + " matches " + ref->req +
                           (have.empty() ? " (none installed)" : " (installed: " + have + ")"));
}

}  // namespace torshpkg::cli
