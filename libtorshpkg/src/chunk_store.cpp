// Verified chunks on disk, keyed by content (see torshpkg/chunk_store.h).
#include "torshpkg/chunk_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <system_error>
#include <vector>

#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/package.h"

namespace torshpkg {

struct DiskChunkStore::State {
  std::string dir;
  uint64_t max_bytes = 0;
  mutable std::mutex mutex;
  // What this process knows of the folder: each entry's size and its last use, for eviction.
  mutable std::map<std::string, std::pair<uint64_t, int64_t>> entries;  // path -> (size, use)
  mutable uint64_t bytes = 0;
  mutable std::atomic<uint64_t> hits{0}, misses{0}, evicted{0};
  mutable int64_t clock = 0;  // uses in this process, after those found on disk
  static constexpr unsigned kRescanEvery = 64;
  mutable unsigned evictions_since_scan = kRescanEvery;  // the first eviction scans

  std::string path_of(const Digest& key) const {
    const std::string hex = to_hex(key);
    return dir + "/" + hex.substr(0, 2) + "/" + hex;
  }

  // Everything in the folder, oldest use first (file modification times).
  void scan() const {
    entries.clear();
    bytes = 0;
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file(ec) || it->path().filename().string().starts_with(".")) continue;
      struct stat st {};
      if (::stat(it->path().c_str(), &st) != 0) continue;
      const int64_t use =
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
      entries[it->path().string()] = {static_cast<uint64_t>(st.st_size), use};
      bytes += static_cast<uint64_t>(st.st_size);
      clock = std::max(clock, use);
    }
  }

  // Makes room for `incoming` bytes (with mutex held): the least recently used go first. The
  // folder is scanned again (other processes add and remove entries) only every kRescanEvery
  // evictions, not for every chunk a full store takes in.
  void evict_for(uint64_t incoming) const {
    if (bytes + incoming <= max_bytes) return;
    if (evictions_since_scan >= kRescanEvery) {
      scan();
      evictions_since_scan = 0;
    }
    while (bytes + incoming > max_bytes && !entries.empty()) {
      auto oldest = entries.begin();
      for (auto it = entries.begin(); it != entries.end(); ++it) {
        if (it->second.second < oldest->second.second) oldest = it;
      }
      ::unlink(oldest->first.c_str());
      bytes -= oldest->second.first;
      entries.erase(oldest);
      evicted += 1;
      evictions_since_scan += 1;
    }
  }
};

DiskChunkStore::DiskChunkStore(std::string dir, uint64_t max_bytes)
    : state_(std::make_unique<State>()) {
  state_->dir = std::move(dir);
  state_->max_bytes = max_bytes;
  std::error_code ec;
  std::filesystem::create_directories(state_->dir, ec);
  if (ec || ::access(state_->dir.c_str(), R_OK | W_OK | X_OK) != 0) {
    throw io_error(state_->dir, "cannot use as a chunk cache folder", ec ? ec.value() : errno);
  }
  std::lock_guard lock(state_->mutex);
  state_->scan();
}

DiskChunkStore::~DiskChunkStore() = default;

bool DiskChunkStore::get(const Digest& key, std::span<uint8_t> out) const {
  State& s = *state_;
  const std::string path = s.path_of(key);
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  struct stat st {};
  if (!fd || ::fstat(fd.get(), &st) != 0 || static_cast<uint64_t>(st.st_size) != out.size()) {
    s.misses += 1;
    return false;
  }
  try {
    pread_exact(fd.get(), out, 0, path);
  } catch (const Error&) {
    s.misses += 1;
    return false;
  }
  // A use: the entry is the last to go.
  ::futimens(fd.get(), nullptr);
  {
    std::lock_guard lock(s.mutex);
    auto it = s.entries.find(path);
    if (it == s.entries.end()) {
      s.entries[path] = {out.size(), ++s.clock};
      s.bytes += out.size();
    } else {
      it->second.second = ++s.clock;
    }
  }
  s.hits += 1;
  return true;
}

void DiskChunkStore::put(const Digest& key, std::span<const uint8_t> bytes) const {
  State& s = *state_;
  if (bytes.size() > s.max_bytes) return;
  const std::string path = s.path_of(key);
  std::lock_guard lock(s.mutex);
  if (s.entries.count(path)) return;
  s.evict_for(bytes.size());
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  thread_local std::mt19937_64 random{std::random_device{}()};
  const std::string tmp =
      std::filesystem::path(path).parent_path().string() + "/.tmp-" + std::to_string(random());
  const UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return;
  try {
    write_all(fd.get(), bytes, tmp);
  } catch (const Error&) {
    ::unlink(tmp.c_str());
    return;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return;
  }
  s.entries[path] = {bytes.size(), ++s.clock};
  s.bytes += bytes.size();
}

DiskChunkStoreStats DiskChunkStore::stats() const {
  std::lock_guard lock(state_->mutex);
  return {.bytes = state_->bytes,
          .entries = state_->entries.size(),
          .hits = state_->hits,
          .misses = state_->misses,
          .evicted = state_->evicted};
}

void fill_chunk_store(const Package& package, const std::stop_token& stop) {
  std::vector<uint8_t> chunk;
  for (const ResourceEntry& r : package.manifest().resources) {
    if (r.block_size == 0) continue;
    chunk.resize(r.chunk_size);
    for (uint64_t i = 0; i < r.chunk_count && !stop.stop_requested(); ++i) {
      const uint64_t plain = std::min<uint64_t>(r.chunk_size, r.size - i * r.chunk_size);
      try {
        package.read_chunk(r, i, std::span(chunk.data(), plain));
      } catch (const Error&) {
        // Counted and reported where a reader meets it; the fill goes on.
      }
    }
  }
}

}  // namespace torshpkg
