#include "torshpkg/safetensors.h"

#include <gtest/gtest.h>

#include <random>

#include "test_util.h"
#include "torshpkg/error.h"

namespace torshpkg {
namespace {

using testing::TempDir;

// A file as the format describes it, built by hand: size, header text, data bytes.
std::vector<uint8_t> hand_built(const std::string& header, size_t data_bytes,
                                uint64_t claimed_size = UINT64_MAX) {
  const uint64_t n = claimed_size == UINT64_MAX ? header.size() : claimed_size;
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0x5A);
  return out;
}

SafetensorsHeader parse(const std::vector<uint8_t>& bytes) {
  return read_safetensors_header(*memory_source(bytes, "t.safetensors"));
}

ErrorKind kind_of_parse(const std::vector<uint8_t>& bytes) {
  return testing::kind_of([&] { parse(bytes); });
}

TEST(Safetensors, ParsesAFileBuiltFromTheSpec) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
      R"("a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}   )";  // padded with spaces
  const auto h = parse(hand_built(header, 12));
  EXPECT_EQ(h.metadata.at("format"), "pt");
  ASSERT_EQ(h.tensors.size(), 2u);
  EXPECT_EQ(h.tensors[0].name, "a");  // in data order
  EXPECT_EQ(h.tensors[0].dtype, Dtype::kBF16);
  EXPECT_EQ(h.tensors[1].name, "b");
  EXPECT_EQ(h.tensors[1].begin, 4u);
  EXPECT_EQ(h.data_start, 8 + header.size());
}

TEST(Safetensors, EveryDtypeScalarsAndEmptyTensorsRoundTrip) {
  TempDir dir;
  std::mt19937 rng(7);
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<TensorToWrite> tensors;
  for (const Dtype d : kAllDtypes) {
    const std::vector<uint64_t> shape = {2, 4};
    buffers.emplace_back(*tensor_bytes(d, shape));
    for (auto& b : buffers.back()) b = static_cast<uint8_t>(rng());
    tensors.push_back({"t." + std::string(dtype_name(d)), d, shape, {}});
  }
  buffers.emplace_back(4, 0x11);
  tensors.push_back({"scalar", Dtype::kF32, {}, {}});
  buffers.emplace_back();
  tensors.push_back({"empty", Dtype::kF16, {0}, {}});
  buffers.emplace_back();
  tensors.push_back({"empty2", Dtype::kI64, {3, 0, 5}, {}});
  for (size_t i = 0; i < tensors.size(); ++i) tensors[i].data = buffers[i];
  write_safetensors(dir / "m.safetensors", tensors, {{"format", "pt"}, {"note", "ü"}});

  const auto bytes = testing::read_file(dir / "m.safetensors");
  const auto h = parse(bytes);
  EXPECT_EQ(h.data_start % 8, 0u);
  EXPECT_EQ(h.metadata.at("note"), "ü");
  ASSERT_EQ(h.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = h.tensors[i];  // the writer keeps the given order
    EXPECT_EQ(t.name, tensors[i].name);
    EXPECT_EQ(t.dtype, tensors[i].dtype);
    EXPECT_EQ(t.shape, tensors[i].shape);
    ASSERT_EQ(t.size(), buffers[i].size());
    EXPECT_TRUE(std::equal(buffers[i].begin(), buffers[i].end(),
                           bytes.begin() + static_cast<long>(h.data_start + t.begin)))
        << t.name;
  }
  EXPECT_EQ(*tensor_bytes(Dtype::kF4, std::vector<uint64_t>{2, 4}), 4u);
  EXPECT_EQ(*tensor_bytes(Dtype::kF6_E2M3, std::vector<uint64_t>{2, 4}), 6u);
  EXPECT_EQ(*tensor_bytes(Dtype::kC64, std::vector<uint64_t>{3}), 24u);
  for (const Dtype d : kAllDtypes) EXPECT_EQ(dtype_from_name(dtype_name(d)), d);
}

TEST(Safetensors, HostileHeadersAreRefused) {
  const std::string ok = R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})";
  EXPECT_NO_THROW(parse(hand_built(ok, 4)));
  const std::vector<std::pair<std::string, std::vector<uint8_t>>> cases = {
      {"shorter than 8 bytes", {1, 0, 0}},
      {"size past the end", hand_built(ok, 4, ok.size() + 100)},
      {"size over 100 MB", hand_built(ok, 4, 200'000'000)},
      {"not an object", hand_built(R"(["a"])", 0)},
      {"trailing data", hand_built(ok + " x", 4)},
      {"duplicate tensor", hand_built(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                      R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                                      2)},
      {"unknown dtype", hand_built(R"({"a":{"dtype":"U7","shape":[4],"data_offsets":[0,4]}})", 4)},
      {"negative dim", hand_built(R"({"a":{"dtype":"U8","shape":[-4],"data_offsets":[0,4]}})", 4)},
      {"float dim", hand_built(R"({"a":{"dtype":"U8","shape":[4.0],"data_offsets":[0,4]}})", 4)},
      {"reversed offsets",
       hand_built(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", 4)},
      {"size mismatch", hand_built(R"({"a":{"dtype":"U16","shape":[4],"data_offsets":[0,4]}})", 4)},
      {"gap", hand_built(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[1,5]}})", 5)},
      {"overlap", hand_built(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                             6)},
      {"extra byte after the data", hand_built(ok, 5)},
      {"missing data", hand_built(ok, 3)},
      {"metadata not strings", hand_built(R"({"__metadata__":{"k":1}})", 0)},
      {"unknown tensor key", hand_built(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4],)"
                                        R"("x":1}})",
                                        4)},
      {"F4 not whole bytes",
       hand_built(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", 2)},
      {"overflowing shape",
       hand_built(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                  8)},
      {"missing shape", hand_built(R"({"a":{"dtype":"U8","data_offsets":[0,4]}})", 4)},
      {"three offsets",
       hand_built(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4,4]}})", 4)},
      {"comment", hand_built(R"({/*x*/"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 4)},
  };
  for (const auto& [why, bytes] : cases) {
    EXPECT_EQ(kind_of_parse(bytes), ErrorKind::kCorrupt) << why;
  }
}

TEST(Safetensors, WriterRefusesInconsistentTensors) {
  TempDir dir;
  const std::vector<uint8_t> four(4);
  const auto write = [&](std::vector<TensorToWrite> t) {
    return testing::kind_of([&] { write_safetensors(dir / "x.safetensors", t); });
  };
  EXPECT_EQ(write({{"a", Dtype::kU16, {4}, four}}), ErrorKind::kInvalidArgument);
  EXPECT_EQ(write({{"a", Dtype::kU8, {4}, four}, {"a", Dtype::kU8, {4}, four}}),
            ErrorKind::kInvalidArgument);
  EXPECT_EQ(write({{"__metadata__", Dtype::kU8, {4}, four}}), ErrorKind::kInvalidArgument);
  EXPECT_EQ(write({{"", Dtype::kU8, {4}, four}}), ErrorKind::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors"));
}

TEST(Safetensors, StreamingWriterTakesBytesInAnyPiecesAndChecksTheTotal) {
  TempDir dir;
  const auto bytes = testing::random_bytes(4 + 12 + 0 + 8, 3);
  const std::vector<TensorSpec> specs = {{"a", Dtype::kU8, {4}},
                                         {"b", Dtype::kF32, {3}},
                                         {"empty", Dtype::kF16, {0}},
                                         {"c", Dtype::kI64, {}}};
  {
    SafetensorsWriter w(dir / "s.safetensors", specs, {{"k", "v"}});
    EXPECT_EQ(w.current_tensor(), 0u);
    w.write(std::span(bytes).subspan(0, 6));  // all of a, part of b
    EXPECT_EQ(w.current_tensor(), 1u);
    w.write(std::span(bytes).subspan(6, 10));  // the rest of b: the empty tensor is skipped
    EXPECT_EQ(w.current_tensor(), 3u);
    EXPECT_EQ(testing::kind_of([&] { w.write(std::vector<uint8_t>(9)); }),
              ErrorKind::kInvalidArgument);
    EXPECT_EQ(testing::kind_of([&] { w.commit(); }), ErrorKind::kInvalidArgument);
    w.write(std::span(bytes).subspan(16));
    EXPECT_EQ(w.current_tensor(), 4u);
    w.commit();
  }
  const auto source = open_file_source(dir / "s.safetensors");
  const SafetensorsHeader h = read_safetensors_header(*source);
  ASSERT_EQ(h.tensors.size(), 4u);
  EXPECT_EQ(h.metadata.at("k"), "v");
  std::vector<uint8_t> data(source->size() - h.data_start);
  source->read_at(h.data_start, data);
  EXPECT_EQ(data, bytes);
  {
    SafetensorsWriter unfinished(dir / "u.safetensors", specs);
    unfinished.write(std::span(bytes).subspan(0, 2));
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "u.safetensors"));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);  // no temp
}

}  // namespace
}  // namespace torshpkg
