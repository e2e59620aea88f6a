#include "torshpkg/tensor_loader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <mutex>
#include <random>
#include <set>

#include "test_util.h"
#include "torshpkg/error.h"
#include "torshpkg/package.h"
#include "torshpkg/package_writer.h"
#include "torshpkg/sha256.h"

namespace torshpkg {
namespace {

using testing::TempDir;

// A safetensors file of `count` tensors of every dtype in turn, with random bytes.
struct Fixture {
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<TensorToWrite> tensors;
};

Fixture make_tensors(size_t count, uint64_t elements, uint32_t seed) {
  Fixture f;
  std::mt19937 rng(seed);
  f.buffers.reserve(count + 2);
  for (size_t i = 0; i < count; ++i) {
    const Dtype d = kAllDtypes[i % std::size(kAllDtypes)];
    const std::vector<uint64_t> shape = {2, elements};
    f.buffers.emplace_back(*tensor_bytes(d, shape));
    for (auto& b : f.buffers.back()) b = static_cast<uint8_t>(rng());
    f.tensors.push_back(
        {"layer." + std::to_string(i) + "." + std::string(dtype_name(d)), d, shape, {}});
  }
  f.buffers.emplace_back(8, 0x42);
  f.tensors.push_back({"scalar", Dtype::kF64, {}, {}});
  f.buffers.emplace_back();
  f.tensors.push_back({"empty", Dtype::kBF16, {0, 7}, {}});
  for (size_t i = 0; i < f.tensors.size(); ++i) f.tensors[i].data = f.buffers[i];
  return f;
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Every loaded tensor equals what was written, by bytes and by digest.
void expect_loaded(const LoadedTensors& loaded, const Fixture& f) {
  ASSERT_EQ(loaded.header().tensors.size(), f.tensors.size());
  for (const TensorInfo& t : loaded.header().tensors) {
    const auto it = std::find_if(f.tensors.begin(), f.tensors.end(),
                                 [&](const TensorToWrite& w) { return w.name == t.name; });
    ASSERT_NE(it, f.tensors.end()) << t.name;
    std::vector<uint8_t> got(t.size());
    loaded.copy_to_host(t, 0, got);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), it->data.begin(), it->data.end())) << t.name;
    EXPECT_EQ(loaded.sha256(t), to_hex(sha256(it->data))) << t.name;
  }
}

TEST(TensorLoader, HostLoadIsExactForEveryThreadAndPieceCount) {
  TempDir dir;
  const Fixture f = make_tensors(40, 3000, 1);
  write_safetensors(dir / "m.safetensors", f.tensors, {{"format", "pt"}});
  const auto source = open_file_source(dir / "m.safetensors");
  for (const unsigned threads : {1u, 2u, 3u, 8u}) {
    for (const size_t piece : {size_t{4096}, size_t{65536}, size_t{8} << 20}) {
      LoadOptions o;
      o.threads = threads;
      o.piece_bytes = piece;
      const auto loaded = load_tensors(*source, o);
      expect_loaded(*loaded, f);
      const LoadStats& s = loaded->stats();
      EXPECT_EQ(s.bytes, source->size() - loaded->header().data_start);
      EXPECT_EQ(s.pieces, (source->size() - 1) / piece - loaded->header().data_start / piece + 1);
      EXPECT_EQ(s.threads, std::min<uint64_t>(threads, s.pieces));
      EXPECT_EQ(loaded->header().metadata.at("format"), "pt");
      EXPECT_EQ(reinterpret_cast<uintptr_t>(loaded->data()) % 4096, 0u);  // page aligned
    }
  }
}

// Records every read; its read unit is `unit`.
class RecordingSource final : public ByteSource {
 public:
  RecordingSource(std::vector<uint8_t> bytes, uint64_t unit, uint64_t fail_at = UINT64_MAX)
      : ByteSource(unit), bytes_(std::move(bytes)), fail_at_(fail_at) {}
  uint64_t size() const override { return bytes_.size(); }
  const std::string& name() const override { return name_; }
  void read_at(uint64_t offset, std::span<uint8_t> out, ReadOptions) const override {
    if (offset <= fail_at_ && fail_at_ < offset + out.size()) throw corrupt(name_, "bad chunk");
    std::copy_n(bytes_.begin() + static_cast<ptrdiff_t>(offset), out.size(), out.begin());
    const std::lock_guard lock(mutex_);
    reads_.insert({offset, out.size()});
  }
  std::set<std::pair<uint64_t, size_t>> reads() const {
    const std::lock_guard lock(mutex_);
    return reads_;
  }

 private:
  std::vector<uint8_t> bytes_;
  uint64_t fail_at_;
  std::string name_ = "recorded.safetensors";
  mutable std::mutex mutex_;
  mutable std::set<std::pair<uint64_t, size_t>> reads_;
};

TEST(TensorLoader, PiecesTileTheDataOnMultiplesOfThePreferredReadSize) {
  TempDir dir;
  const Fixture f = make_tensors(30, 5000, 2);
  write_safetensors(dir / "m.safetensors", f.tensors);
  RecordingSource source(file_bytes(dir / "m.safetensors"), 3 * 4096);
  LoadOptions o;
  o.threads = 4;
  o.piece_bytes = 5000;  // rounded up to 12288, the preferred size
  const auto loaded = load_tensors(source, o);
  expect_loaded(*loaded, f);
  EXPECT_EQ(loaded->stats().piece_bytes, 3u * 4096);
  uint64_t at = loaded->header().data_start;
  bool header_read_seen = false;
  for (const auto& [offset, length] : source.reads()) {
    if (offset < loaded->header().data_start) {  // the header's reads
      header_read_seen = true;
      continue;
    }
    EXPECT_EQ(offset, at) << "gap or overlap";
    at = offset + length;
    EXPECT_TRUE(at == source.size() || at % (3 * 4096) == 0) << "piece ends off a boundary";
  }
  EXPECT_TRUE(header_read_seen);
  EXPECT_EQ(at, source.size());
}

TEST(TensorLoader, AFailedReadFailsTheLoadWithItsError) {
  TempDir dir;
  const Fixture f = make_tensors(30, 5000, 3);
  write_safetensors(dir / "m.safetensors", f.tensors);
  auto bytes = file_bytes(dir / "m.safetensors");
  const uint64_t size = bytes.size();
  RecordingSource source(std::move(bytes), 0, size - 10);
  LoadOptions o;
  o.threads = 3;
  o.piece_bytes = 4096;
  try {
    load_tensors(source, o);
    FAIL() << "load succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorrupt);
    EXPECT_NE(std::string(e.what()).find("bad chunk"), std::string::npos) << e.what();
  }
}

TEST(TensorLoader, AFileWithoutDataLoadsEmpty) {
  TempDir dir;
  write_safetensors(dir / "e.safetensors", {{"none", Dtype::kF32, {0}, {}}});
  const auto loaded = load_tensors(*open_file_source(dir / "e.safetensors"), {});
  EXPECT_EQ(loaded->stats().bytes, 0u);
  EXPECT_EQ(loaded->stats().pieces, 0u);
  EXPECT_EQ(loaded->data(), nullptr);
  EXPECT_EQ(loaded->sha256(loaded->header().tensors[0]), to_hex(sha256(std::string_view())));
}

TEST(TensorLoader, HostileHeadersAreRefusedBeforeAnyAllocation) {
  std::vector<uint8_t> bytes(8, 0);
  bytes[0] = 0xFF;  // header size far past the end
  bytes[6] = 0x01;
  EXPECT_EQ(testing::kind_of([&] { load_tensors(*memory_source(bytes, "h.safetensors"), {}); }),
            ErrorKind::kCorrupt);
}

TEST(TensorLoader, OptionsOutOfRangeAreInvalidArguments) {
  const auto source = memory_source({0}, "unused");  // checked before the header is read
  for (const auto& change : std::vector<std::function<void(LoadOptions&)>>{
           [](LoadOptions& o) { o.threads = 0; }, [](LoadOptions& o) { o.piece_bytes = 100; },
           [](LoadOptions& o) { o.buffers_per_thread = 0; }}) {
    LoadOptions o;
    change(o);
    EXPECT_EQ(testing::kind_of([&] { load_tensors(*source, o); }), ErrorKind::kInvalidArgument);
  }
}

TEST(TensorLoader, DeviceNamesParse) {
  EXPECT_EQ(parse_load_target("cpu").device, LoadDevice::kHost);
  EXPECT_EQ(parse_load_target("cuda").device, LoadDevice::kCuda);
  EXPECT_EQ(parse_load_target("cuda:3").index, 3);
  EXPECT_EQ(to_string(parse_load_target("cuda")), "cuda:0");
  for (const char* bad : {"gpu", "cuda:", "cuda:-1", "cuda:1x", "cuda:99999", "CPU", ""}) {
    EXPECT_EQ(testing::kind_of([&] { parse_load_target(bad); }), ErrorKind::kInvalidArgument)
        << bad;
  }
}

// A package holding the file: compressed, small chunks.
std::shared_ptr<const Package> package_of(const TempDir& dir, const std::string& file,
                                          CodecSpec codec) {
  PackageWriter w(testing::header());
  w.add_file("model.safetensors", file);
  WriteOptions o;
  o.compression = codec;
  o.chunk_size = 65536;
  w.write(dir / "m.torshpkg", o);
  return Package::open(dir / "m.torshpkg");
}

TEST(TensorLoader, LoadsStraightFromAPackageResourceInWholeChunks) {
  TempDir dir;
  const Fixture f = make_tensors(44, 20000, 4);
  write_safetensors(dir / "m.safetensors", f.tensors);
  for (const CodecSpec codec : {CodecSpec{Codec::kNone, 0}, CodecSpec{Codec::kZstd, 3}}) {
    const auto pkg = package_of(dir, dir / "m.safetensors", codec);
    const auto source = package_file_source(pkg, *pkg->find("resources/model.safetensors"));
    EXPECT_EQ(source->read_unit(), 65536u);
    EXPECT_EQ(source->name(), (dir / "m.torshpkg") + ":resources/model.safetensors");
    LoadOptions o;
    o.threads = 3;
    o.piece_bytes = 100000;  // rounded up to two chunks
    const auto loaded = load_tensors(*source, o);
    EXPECT_EQ(loaded->stats().piece_bytes, 131072u);
    expect_loaded(*loaded, f);
  }
}

TEST(TensorLoader, ADamagedChunkOfThePackageFailsTheLoad) {
  TempDir dir;
  const Fixture f = make_tensors(44, 20000, 5);
  write_safetensors(dir / "m.safetensors", f.tensors);
  package_of(dir, dir / "m.safetensors", {Codec::kNone, 0});
  // Flip a byte of the last tensor's stored bytes (stored codec: they appear as written).
  auto bytes = file_bytes(dir / "m.torshpkg");
  const std::vector<uint8_t>& last = f.buffers[f.buffers.size() - 3];
  const auto at = std::search(bytes.begin(), bytes.end(), last.begin(), last.begin() + 64);
  ASSERT_NE(at, bytes.end());
  at[10] ^= 0x01;
  std::ofstream(dir / "m.torshpkg", std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
  const std::shared_ptr<const Package> pkg = Package::open(dir / "m.torshpkg");
  const auto source = package_file_source(pkg, *pkg->find("resources/model.safetensors"));
  try {
    LoadOptions o;
    o.threads = 2;
    load_tensors(*source, o);
    FAIL() << "a damaged chunk loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorrupt) << e.what();
  }
}

// Why CUDA loads cannot be tested here; empty when a device is visible.
std::string no_cuda_device() {
  try {
    cuda_device_count();
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

TEST(TensorLoader, CudaIsRefusedClearlyWithoutSupportOrDevice) {
  try {
    const int devices = cuda_device_count();
    GTEST_SKIP() << devices << " CUDA device(s) visible: covered by CudaLoad";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find(cuda_built() ? "no CUDA device" : "no CUDA support"),
              std::string::npos)
        << e.what();
  }
  LoadOptions o;
  o.target = parse_load_target("cuda:0");
  try {
    // The header is read first; a valid one (an empty object) reaches the backend.
    const std::string h = "{}      ";
    std::vector<uint8_t> file = {8, 0, 0, 0, 0, 0, 0, 0};
    file.insert(file.end(), h.begin(), h.end());
    load_tensors(*memory_source(file, "e.safetensors"), o);
    FAIL() << "cuda load without a device succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(
        std::string(e.what()).find(cuda_built() ? "no CUDA device visible" : "no CUDA support"),
        std::string::npos)
        << e.what();
  }
}

TEST(CudaLoad, LoadsIntoDeviceMemoryExactly) {
  if (const std::string why = no_cuda_device(); !why.empty()) GTEST_SKIP() << "skipped: " << why;
  TempDir dir;
  const Fixture f = make_tensors(60, 40000, 6);
  write_safetensors(dir / "m.safetensors", f.tensors);
  const auto source = open_file_source(dir / "m.safetensors");
  for (const unsigned threads : {1u, 4u}) {
    for (const unsigned buffers : {1u, 3u}) {
      LoadOptions o;
      o.target = parse_load_target("cuda:0");
      o.threads = threads;
      o.buffers_per_thread = buffers;
      o.piece_bytes = 65536;
      const auto loaded = load_tensors(*source, o);
      EXPECT_NE(loaded->data(), nullptr);
      expect_loaded(*loaded, f);
    }
  }
  const auto pkg = package_of(dir, dir / "m.safetensors", {Codec::kZstd, 3});
  LoadOptions o;
  o.target = parse_load_target("cuda");
  o.threads = 4;
  expect_loaded(
      *load_tensors(*package_file_source(pkg, *pkg->find("resources/model.safetensors")), o), f);
}

}  // namespace
}  // namespace torshpkg
