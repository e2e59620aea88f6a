// Helpers shared by the unit tests.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "torshpkg/byte_source.h"
#include "torshpkg/error.h"
#include "torshpkg/manifest.h"
#include "torshpkg/package.h"

namespace torshpkg::testing {

inline Manifest header(const std::string& name = "demo", const std::string& version = "1.0.0") {
  Manifest m;
  m.name = name;
  m.version = version;
  return m;
}

// A fresh folder removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "torshpkg-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::vector<uint8_t> random_bytes(size_t n, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

// Compressible bytes: short random words repeated.
inline std::vector<uint8_t> text_bytes(size_t n, uint32_t seed = 2) {
  std::mt19937 rng(seed);
  static const char* kWords[] = {"tensor ", "weight ", "layer ", "bias ", "norm ", "attention\n"};
  std::vector<uint8_t> out;
  out.reserve(n);
  while (out.size() < n) {
    const char* w = kWords[rng() % 6];
    for (const char* p = w; *p && out.size() < n; ++p) out.push_back(static_cast<uint8_t>(*p));
  }
  return out;
}

// The whole content of a file of the package's tree.
inline std::vector<uint8_t> read_all(const Package& pkg, const std::string& path) {
  const FileNode* f = pkg.find(path);
  if (f == nullptr) {
    ADD_FAILURE() << "no file " << path;
    return {};
  }
  std::vector<uint8_t> out(f->size);
  EXPECT_EQ(pkg.read(*f, 0, out), out.size()) << path;
  return out;
}

// The kind of the torshpkg::Error that `fn` throws; kUnsupported stands for "no error" in the
// tests that use this (none of them expects kUnsupported itself).
inline ErrorKind kind_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.kind();
  }
  return ErrorKind::kUnsupported;
}

inline void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// A source that forwards everything to another: tests derive from it to watch or hold reads.
class ForwardingSource : public ByteSource {
 public:
  explicit ForwardingSource(std::shared_ptr<ByteSource> inner) : inner_(std::move(inner)) {}
  uint64_t size() const override { return inner_->size(); }
  const std::string& name() const override { return inner_->name(); }
  void read_at(uint64_t offset, std::span<uint8_t> out, ReadOptions options) const override {
    inner_->read_at(offset, out, options);
  }
  void advise(uint64_t offset, uint64_t length, Advice advice) const override {
    inner_->advise(offset, length, advice);
  }

 private:
  std::shared_ptr<ByteSource> inner_;
};

// Forwards to another source and counts the bytes read from it (buffered or past the page
// cache), and records each buffered read.
class ReadCountingSource final : public ForwardingSource {
 public:
  using ForwardingSource::ForwardingSource;
  void read_at(uint64_t offset, std::span<uint8_t> out, ReadOptions options) const override {
    bytes += out.size();
    if (!options.uncached) {
      std::lock_guard lock(mutex_);
      reads.emplace_back(offset, out.size());
    }
    ForwardingSource::read_at(offset, out, options);
  }
  mutable std::atomic<uint64_t> bytes{0};
  mutable std::vector<std::pair<uint64_t, uint64_t>> reads;

 private:
  mutable std::mutex mutex_;
};

// Forwards to another source and records what is announced to it with kWillNeed, in order
// (announcements may come from several threads: opening a package, readahead).
class HintRecordingSource final : public ForwardingSource {
 public:
  using ForwardingSource::ForwardingSource;
  void advise(uint64_t offset, uint64_t length, Advice advice) const override {
    if (advice == Advice::kWillNeed) {
      std::lock_guard lock(mutex_);
      hints.emplace_back(offset, length);
    }
    ForwardingSource::advise(offset, length, advice);
  }
  mutable std::vector<std::pair<uint64_t, uint64_t>> hints;

 private:
  mutable std::mutex mutex_;
};

}  // namespace torshpkg::testing
