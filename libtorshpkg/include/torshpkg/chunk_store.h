// A store of verified chunks that outlives a package: a package read from far away (a web
// server, a registry) keeps the stored chunks it has verified, and finds them again, also when
// another version of the package holds the same chunk.
//
// A chunk is keyed by its content key (docs/FORMAT.md 7.3): the SHA-256 of its block hashes,
// which depends on its bytes alone, not on the package or the resource, so two versions share
// every chunk they have in common. What a store returns is never trusted: the package checks
// it against its own block hashes and leaf hash (which bind the package, the resource and the
// chunk's place) before any byte of it is used, and reads from its source otherwise.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <stop_token>
#include <string>

#include "torshpkg/sha256.h"

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

class ChunkStore {
 public:
  virtual ~ChunkStore() = default;
  // Fills `out` with the chunk stored under `key` when there is one of exactly out.size()
  // bytes; false otherwise. Never throws for a missing, short or unreadable entry.
  virtual bool get(const Digest& key, std::span<uint8_t> out) const = 0;
  // Keeps a verified chunk (best effort: a full disk or an unwritable folder keeps nothing).
  virtual void put(const Digest& key, std::span<const uint8_t> bytes) const = 0;
};

struct DiskChunkStoreStats {
  uint64_t bytes = 0;  // in the store, as this process counts them
  uint64_t entries = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evicted = 0;  // entries removed to stay within the bound
};

// Chunks as files under `dir` (created if missing): DIR/ab/abcd...  (the key in hex), written
// to a temporary name and renamed, so a crash leaves whole entries or none (a torn one would
// fail the package's check anyway). At most `max_bytes` of entries: the least recently used
// are removed first (use is the file's modification time, so it carries across restarts and
// processes). Several processes may share a folder; each keeps the bound by its own count,
// and scans the folder again when it is over and has removed 64 entries since its last scan
// (other processes add and remove them). Throws Error(kIo) when the folder cannot be made or read.
class DiskChunkStore final : public ChunkStore {
 public:
  DiskChunkStore(std::string dir, uint64_t max_bytes);
  ~DiskChunkStore() override;
  bool get(const Digest& key, std::span<uint8_t> out) const override;
  void put(const Digest& key, std::span<const uint8_t> bytes) const override;
  DiskChunkStoreStats stats() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

class Package;

// Reads every chunk a package's chunk store keeps (stored resources with blocks; see
// Package::set_chunk_store), so that the store ends up holding the whole package: what
// `--prefetch all` runs in the background. A chunk that fails is skipped (a reader meets the
// error when it asks); returns early once `stop` is requested.
void fill_chunk_store(const Package& package, const std::stop_token& stop);

}  // namespace torshpkg

#pragma GCC visibility pop
