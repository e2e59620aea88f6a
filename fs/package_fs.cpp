#include "package_fs.h"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <thread>

#include "torshpkg/error.h"

namespace torshpkg::fs {

namespace {
// Threads of the pool when some resource is read with direct I/O: the depth of the disk queue
// that the page cache's readahead provides otherwise. Twice the 16 chunks of a readahead window,
// since each thread then hashes its chunk (on 2 cores most of them wait for a core, not the
// disk): cold 512 MiB reads measured a median of 866 MB/s with 32 against about 690 with 16.
constexpr size_t kDirectReaders = 32;
}  // namespace

PackageFs::PackageFs(std::unique_ptr<Package> package, FsOptions options)
    : package_(std::move(package)),
      options_(std::move(options)),
      tree_(*package_),
      cache_(options_.cache_bytes, options_.shared_budget),
      last_read_(std::chrono::steady_clock::now().time_since_epoch().count()) {
  for (const FileNode& f : package_->files()) total_bytes_ += f.size;
  const auto& all = package_->manifest().resources;
  reads_ = std::make_unique<ReadState[]>(all.size());
  if (options_.readahead_bytes > 0 && !all.empty()) {
    // Chunks are read whole and sequential runs announced (read_ahead): the kernel's own
    // readahead in the package file would only add reads nobody asked for (a disk's 8 MiB
    // window made each random 1 MiB chunk read fetch 2 MiB).
    package_->reads_are_planned();
    const bool direct =
        std::any_of(all.begin(), all.end(), [&](const auto& r) { return reads_direct(r); });
    const size_t threads =
        direct ? kDirectReaders : std::max(1u, std::thread::hardware_concurrency());
    pool_ = std::make_unique<Prefetcher>(
        threads,
        [this](uint32_t id, uint64_t index) {
          const ResourceEntry& r = package_->manifest().resources[id];
          cache_.fill_claimed({id, index}, fill(r, index));
        },
        options_.idle_thread_exit, options_.thread_limit);
  }
  std::tm tm{};
  if (::strptime(package_->manifest().created.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm) != nullptr) {
    created_ = ::timegm(&tm);
  }
}

struct stat PackageFs::attributes(const Node& node) const {
  struct stat st {};
  st.st_ino = node.ino;
  st.st_uid = options_.uid;
  st.st_gid = options_.gid;
  const mode_t read = options_.mode & 0444;
  const mode_t search = read >> 2;
  if (node.is_dir) {
    st.st_mode = S_IFDIR | read | search;
    st.st_nlink = static_cast<nlink_t>(2 + node.folders);
  } else {
    const bool executable = node.file->kind == FileNode::Kind::kResource &&
                            package_->manifest().resources[node.file->item].executable;
    st.st_mode = S_IFREG | read | (executable ? search : 0);
    st.st_nlink = 1;
    st.st_size = static_cast<off_t>(node.file->size);
    st.st_blocks = static_cast<blkcnt_t>((node.file->size + 511) / 512);
  }
  st.st_blksize = 1 << 20;
  st.st_mtime = st.st_ctime = st.st_atime = created_;
  return st;
}

size_t PackageFs::plain_len(const ResourceEntry& r, uint64_t index) {
  return static_cast<size_t>(std::min<uint64_t>(r.chunk_size, r.size - index * r.chunk_size));
}

ChunkCache::Fill PackageFs::fill(const ResourceEntry& r, uint64_t index) const {
  return [this, &r, index](ChunkBuffer& out) {
    package_->read_chunk(r, index, std::span<uint8_t>(out.data(), out.size()),
                         options_.direct_reads);
  };
}

Chunk PackageFs::chunk(const ResourceEntry& r, uint64_t index, bool holds_chunks) {
  return cache_.get_or_fill({r.id, index}, plain_len(r, index), fill(r, index), holds_chunks);
}

void PackageFs::prefetch(const ResourceEntry& r, uint64_t first, uint64_t count, bool urgent) {
  // Claimed chunks only (those cached, claimed or being decoded are skipped), queued as runs.
  uint64_t run = first;
  const uint64_t end = first + count;
  for (uint64_t c = first; c <= end; ++c) {
    if (c < end && cache_.claim({r.id, c}, plain_len(r, c))) continue;
    if (c > run && !pool_->request(r.id, run, c - run, urgent)) {
      for (uint64_t k = run; k < c; ++k) cache_.unclaim({r.id, k});  // no thread to decode them
    }
    run = c + 1;
  }
}

size_t PackageFs::read(const Node& node, uint64_t offset, std::span<uint8_t> out) {
  thread_local ReadSlices slices;
  read_slices(node, offset, out.size(), slices);
  size_t done = 0;
  for (const auto& part : slices.parts) {
    std::memcpy(out.data() + done, part.data(), part.size());
    done += part.size();
  }
  slices.chunks.clear();  // do not keep chunks alive past the read
  return done;
}

void PackageFs::read_slices(const Node& node, uint64_t offset, size_t length, ReadSlices& out) {
  out.chunks.clear();
  out.parts.clear();
  out.size = 0;
  last_read_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                   std::memory_order_relaxed);
  const FileNode& f = *node.file;
  if (offset >= f.size || length == 0) return;
  const size_t len = static_cast<size_t>(std::min<uint64_t>(length, f.size - offset));
  if (f.kind != FileNode::Kind::kResource) {
    out.own.resize(len);
    out.size = package_->read(f, offset, out.own);
    out.parts.emplace_back(out.own.data(), out.size);
    return;
  }
  const ResourceEntry& r = package_->manifest().resources[f.item];
  const bool announced = read_ahead(r, offset, offset + len);
  // A request that spans chunks (a 1 MiB read at an odd offset spans two) and that readahead
  // did not announce: the disk is asked for all their stored bytes at once and the prefetch
  // threads decode the later chunks while this thread decodes the first, so the disk reads and
  // the decoding overlap.
  const uint64_t first = offset / r.chunk_size;
  const uint64_t last = (offset + len - 1) / r.chunk_size;
  if (pool_ && last > first && !announced && r.block_size == 0) {
    announce(r, first, last - first + 1);
    prefetch(r, first + 1, last - first, true);
  }
  // Bytes read block by block land in `own`, sized once, at the first such piece, so that the
  // parts pointing into it stay put; a request served from chunks leaves its memory untouched
  // (a worker thread of each of thousands of mounts would otherwise hold a page-filled MiB).
  size_t own_used = 0;
  bool own_sized = false;
  while (out.size < len) {
    const uint64_t at = offset + out.size;
    const uint64_t index = at / r.chunk_size;
    const uint64_t within = at - index * r.chunk_size;
    const size_t whole = plain_len(r, index);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len - out.size, whole - within));
    Chunk c = r.block_size != 0 && n < whole ? cache_.find({r.id, index})
                                             : chunk(r, index, !out.chunks.empty());
    if (c) {
      out.parts.emplace_back(c->data() + within, n);
      out.chunks.push_back(std::move(c));
    } else {
      // Part of a chunk nobody has decoded: only the blocks it touches are read and checked.
      if (!own_sized) {
        out.own.resize(len);
        own_sized = true;
      }
      const auto dest = std::span(out.own).subspan(own_used, n);
      package_->read(*node.file, at, dest);
      out.parts.emplace_back(dest.data(), n);
      own_used += n;
    }
    out.size += n;
  }
}

bool PackageFs::read_ahead(const ResourceEntry& r, uint64_t offset, uint64_t end) {
  // The kernel issues readahead requests concurrently, so a sequential reader's requests may
  // arrive slightly out of order: a read within two chunks of where the last one ended continues
  // the run. Readahead starts once the run is long enough that it cannot be one random read the
  // kernel split into several requests (a 1 MiB pread at an odd offset arrives as two).
  ReadState& state = reads_[r.id];
  const uint64_t previous_end = state.last_end.exchange(end);
  const uint64_t window = 2ull * r.chunk_size;
  const bool continues =
      previous_end > 0 && offset <= previous_end + window && offset + window >= previous_end;
  uint64_t run_start = offset;
  if (continues) {
    run_start = std::min(state.run_start.load(), offset);
  } else {
    state.run_start.store(offset);
  }
  const bool sequential = continues && end - run_start >= options_.sequential_after_bytes;
  // The previous request was sequential too: its window, from where it ended, holds this one.
  const bool announced = state.sequential.exchange(sequential) && continues && pool_;
  if (!pool_ || !sequential || end >= r.size) return announced;
  const uint64_t first = (end + r.chunk_size - 1) / r.chunk_size;
  const uint64_t count = std::max<uint64_t>(1, options_.readahead_bytes / r.chunk_size);
  const uint64_t last = std::min(first + count, r.chunk_count);
  // Only the chunks the window gained since the last request are new: ask the disk for their
  // stored bytes at once (so the prefetch threads verify and decode while the disk keeps
  // reading) and queue them, so each request costs nothing once the window is in flight.
  uint64_t requested = state.requested_end.load();
  const uint64_t from = requested >= first && requested <= last ? requested : first;
  if (from >= last || !state.requested_end.compare_exchange_strong(requested, last)) {
    return announced;
  }
  announce(r, from, last - from);
  prefetch(r, from, last - from, false);
  return announced;
}

void PackageFs::announce(const ResourceEntry& r, uint64_t first, uint64_t count) {
  if (reads_direct(r)) return;
  try {
    package_->will_need(r, first, count);
  } catch (const Error&) {
    // A damaged chunk index: reading those chunks reports it.
  }
}

bool PackageFs::reads_direct(const ResourceEntry& r) const {
  return options_.direct_reads && package_->stored_plain(r);
}

void PackageFs::opened(pid_t pid, uid_t uid) {
  constexpr size_t kMaxOpeners = 65536;
  {
    std::lock_guard lock(openers_mutex_);
    if (openers_.size() >= kMaxOpeners) openers_.clear();  // pids are reused anyway
    if (!openers_.insert(pid).second) return;
  }
  if (options_.on_first_open) options_.on_first_open(pid, uid);
}

void PackageFs::read_failed(const std::string& path, const std::string& error) {
  ++read_failures_;
  if (options_.on_read_error) options_.on_read_error(path, error);
}

FsStats PackageFs::stats() const {
  return FsStats{.bytes_served = bytes_served_.load(),
                 .read_failures = read_failures_.load(),
                 .cache_hits = cache_.hits(),
                 .cache_misses = cache_.misses(),
                 .cache_bytes = cache_.bytes(),
                 .cache_in_flight_bytes = cache_.in_flight_bytes(),
                 .cache_capacity = cache_.capacity()};
}

size_t PackageFs::prefetch_threads() const {
  return pool_ ? pool_->threads() : 0;
}

uint64_t PackageFs::release_memory() {
  return cache_.trim();
}

std::chrono::steady_clock::duration PackageFs::idle_for() const {
  const auto last = std::chrono::steady_clock::duration(last_read_.load(std::memory_order_relaxed));
  return std::chrono::steady_clock::now().time_since_epoch() - last;
}

std::optional<std::string> PackageFs::xattr(const Node& node, std::string_view name) const {
  if (node.is_dir) return std::nullopt;
  const FileNode& f = *node.file;
  if (name == "user.torshpkg.signer") {
    return options_.signer.empty() ? std::nullopt : std::optional<std::string>(options_.signer);
  }
  if (f.kind != FileNode::Kind::kResource) {
    if (name == "user.torshpkg.type") {
      return f.kind == FileNode::Kind::kManifest ? "Manifest" : "Dependency";
    }
    return std::nullopt;
  }
  const ResourceEntry& r = package_->manifest().resources[f.item];
  if (name == "user.torshpkg.type") return std::string(to_string(r.type));
  if (name == "user.torshpkg.compression") return format_codec_spec(r.compression);
  if (name == "user.torshpkg.encryption") return std::string(cipher_name(r.encryption));
  if (name == "user.torshpkg.sha256" && !r.sha256.empty()) return r.sha256;
  return std::nullopt;
}

std::vector<std::string> PackageFs::xattr_names(const Node& node) const {
  std::vector<std::string> names;
  for (const char* n : {"user.torshpkg.type", "user.torshpkg.sha256", "user.torshpkg.compression",
                        "user.torshpkg.encryption", "user.torshpkg.signer"}) {
    if (xattr(node, n)) names.emplace_back(n);
  }
  return names;
}

}  // namespace torshpkg::fs
