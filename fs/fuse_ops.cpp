// The libfuse3 low-level callbacks: each translates one request into a call on PackageFs and
// replies. No policy, caching or decoding lives here.
#include "fuse_ops.h"

#include <fcntl.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "package_fs.h"
#include "torshpkg/error.h"

namespace torshpkg::fs {
namespace {

// The package never changes while mounted, so the kernel may cache names and attributes long.
constexpr double kTimeout = 86400.0;
constexpr unsigned kMaxRead = 1u << 20;

PackageFs& fs_of(fuse_req_t req) {
  return *static_cast<PackageFs*>(fuse_req_userdata(req));
}

// Runs a callback that answers a request; whatever it throws is answered with its errno.
template <auto Op, typename... Args>
void guarded(fuse_req_t req, Args... args) noexcept {
  try {
    Op(req, args...);
  } catch (...) {
    fuse_reply_err(req, errno_for(std::current_exception()));
  }
}

void fill_entry(PackageFs& fs, const Node& node, fuse_entry_param& e) {
  std::memset(&e, 0, sizeof e);
  e.ino = node.ino;
  e.generation = 1;
  e.attr = fs.attributes(node);
  e.attr_timeout = kTimeout;
  e.entry_timeout = kTimeout;
}

void op_init(void*, fuse_conn_info* conn) {
  conn->max_read = kMaxRead;
  conn->max_readahead = kMaxRead;
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  PackageFs& fs = fs_of(req);
  const Node* node = fs.tree().lookup(parent, name);
  if (node == nullptr) return (void)fuse_reply_err(req, ENOENT);
  fuse_entry_param e;
  fill_entry(fs, *node, e);
  fuse_reply_entry(req, &e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  PackageFs& fs = fs_of(req);
  const Node* node = fs.tree().get(ino);
  if (node == nullptr) return (void)fuse_reply_err(req, ENOENT);
  const struct stat st = fs.attributes(*node);
  fuse_reply_attr(req, &st, kTimeout);
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  const Node* node = fs_of(req).tree().get(ino);
  if (node == nullptr) return (void)fuse_reply_err(req, ENOENT);
  if (!node->is_dir) return (void)fuse_reply_err(req, ENOTDIR);
  fi->keep_cache = 1;
  fi->cache_readdir = 1;
  fuse_reply_open(req, fi);
}

// Directory offsets: 0 "." , 1 "..", then children in name order from 2.
void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, bool plus) {
  PackageFs& fs = fs_of(req);
  const Node* dir = fs.tree().get(ino);
  if (dir == nullptr || !dir->is_dir) return (void)fuse_reply_err(req, ENOTDIR);
  std::vector<char> buf(size);
  size_t used = 0;
  off_t index = 0;
  const auto add = [&](const char* name, const Node& node) {
    if (index++ < offset) return true;
    size_t n;
    if (plus) {
      fuse_entry_param e;
      fill_entry(fs, node, e);
      // "." and ".." must not be looked up (no reference counting by the kernel for them).
      if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0)
        e.ino = 0, e.attr.st_ino = node.ino;
      n = fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &e, index);
    } else {
      const struct stat st = fs.attributes(node);
      n = fuse_add_direntry(req, buf.data() + used, size - used, name, &st, index);
    }
    if (n > size - used) return false;
    used += n;
    return true;
  };
  if (!add(".", *dir) || !add("..", *fs.tree().get(dir->parent)))
    return (void)fuse_reply_buf(req, buf.data(), used);
  // Children from the offset on, without walking the ones listed by earlier calls.
  const size_t first = static_cast<size_t>(std::max<off_t>(index, offset) - 2);
  index = std::max<off_t>(index, offset);
  for (size_t i = first; i < dir->children.size(); ++i) {
    const Node& child = *fs.tree().get(dir->children[i]);
    if (!add(child.name.c_str(), child)) break;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  readdir_common(req, ino, size, off, false);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  readdir_common(req, ino, size, off, true);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  const Node* node = fs_of(req).tree().get(ino);
  if (node == nullptr) return (void)fuse_reply_err(req, ENOENT);
  if (node->is_dir) return (void)fuse_reply_err(req, EISDIR);
  if ((fi->flags & O_ACCMODE) != O_RDONLY) return (void)fuse_reply_err(req, EROFS);
  const fuse_ctx* ctx = fuse_req_ctx(req);
  fs_of(req).opened(ctx->pid, ctx->uid);
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  PackageFs& fs = fs_of(req);
  const Node* node = fs.tree().get(ino);
  if (node == nullptr || node->is_dir) return (void)fuse_reply_err(req, EISDIR);
  // The reply points into the verified cached chunks: the bytes are copied once, into the kernel.
  thread_local ReadSlices slices;
  thread_local std::vector<iovec> iov;
  try {
    fs.read_slices(*node, static_cast<uint64_t>(off), size, slices);
    iov.clear();
    for (const auto& part : slices.parts) {
      iov.push_back({const_cast<uint8_t*>(part.data()), part.size()});
    }
    fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
    fs.served(slices.size);
    slices.chunks.clear();
  } catch (const std::exception& e) {
    fs.read_failed(node->file->path, e.what());
    slices.chunks.clear();
    fuse_reply_err(req, errno_for(std::current_exception()));
  }
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  PackageFs& fs = fs_of(req);
  struct statvfs st {};
  st.f_bsize = 4096;
  st.f_frsize = 4096;
  st.f_blocks = (fs.total_bytes() + 4095) / 4096;
  st.f_files = fs.tree().size();
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  PackageFs& fs = fs_of(req);
  const Node* node = fs.tree().get(ino);
  if (node == nullptr) return (void)fuse_reply_err(req, ENOENT);
  const auto value = fs.xattr(*node, name);
  if (!value) return (void)fuse_reply_err(req, ENODATA);
  if (size == 0) return (void)fuse_reply_xattr(req, value->size());
  if (size < value->size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, value->data(), value->size());
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  PackageFs& fs = fs_of(req);
  const Node* node = fs.tree().get(ino);
  if (node == nullptr) return (void)fuse_reply_err(req, ENOENT);
  std::string list;
  for (const std::string& n : fs.xattr_names(*node)) list.append(n).push_back('\0');
  if (size == 0) return (void)fuse_reply_xattr(req, list.size());
  if (size < list.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, list.data(), list.size());
}

const fuse_lowlevel_ops kOps = [] {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = guarded<op_lookup>;
  ops.getattr = guarded<op_getattr>;
  ops.opendir = guarded<op_opendir>;
  ops.readdir = guarded<op_readdir>;
  ops.readdirplus = guarded<op_readdirplus>;
  ops.open = guarded<op_open>;
  ops.read = guarded<op_read>;
  ops.statfs = guarded<op_statfs>;
  ops.getxattr = guarded<op_getxattr>;
  ops.listxattr = guarded<op_listxattr>;
  return ops;
}();

}  // namespace

const fuse_lowlevel_ops& lowlevel_ops() {
  return kOps;
}

int errno_for(const std::exception_ptr& error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const Error& e) {
    switch (e.kind()) {
      case ErrorKind::kWrongKey:
        return EACCES;
      case ErrorKind::kNotFound:
        return ENOENT;
      default:
        return EIO;
    }
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  } catch (...) {
    return EIO;
  }
}

}  // namespace torshpkg::fs
