#include "torshpkg/safetensors.h"

#include <json/json.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <set>

#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/sha256.h"
#include "torshpkg/strict_json.h"

namespace torshpkg {
namespace {

struct DtypeSpec {
  Dtype dtype;
  std::string_view name;
  unsigned bits;
};

constexpr DtypeSpec kSpecs[] = {
    {Dtype::kBool, "BOOL", 8},
    {Dtype::kU8, "U8", 8},
    {Dtype::kI8, "I8", 8},
    {Dtype::kF8_E5M2, "F8_E5M2", 8},
    {Dtype::kF8_E4M3, "F8_E4M3", 8},
    {Dtype::kF8_E8M0, "F8_E8M0", 8},
    {Dtype::kF8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
    {Dtype::kF8_E5M2FNUZ, "F8_E5M2FNUZ", 8},
    {Dtype::kI16, "I16", 16},
    {Dtype::kU16, "U16", 16},
    {Dtype::kF16, "F16", 16},
    {Dtype::kBF16, "BF16", 16},
    {Dtype::kI32, "I32", 32},
    {Dtype::kU32, "U32", 32},
    {Dtype::kF32, "F32", 32},
    {Dtype::kC64, "C64", 64},
    {Dtype::kF64, "F64", 64},
    {Dtype::kI64, "I64", 64},
    {Dtype::kU64, "U64", 64},
    {Dtype::kF4, "F4", 4},
    {Dtype::kF6_E2M3, "F6_E2M3", 6},
    {Dtype::kF6_E3M2, "F6_E3M2", 6},
};

const DtypeSpec& spec_of(Dtype d) {
  for (const DtypeSpec& s : kSpecs) {
    if (s.dtype == d) return s;
  }
  return kSpecs[1];
}

// A JSON integer >= 0 (not a float, even an integral one).
bool as_u64(const Json::Value& v, uint64_t& out) {
  if (v.type() == Json::uintValue) {
    out = v.asUInt64();
    return true;
  }
  if (v.type() == Json::intValue && v.asInt64() >= 0) {
    out = static_cast<uint64_t>(v.asInt64());
    return true;
  }
  return false;
}

}  // namespace

std::string_view dtype_name(Dtype dtype) {
  return spec_of(dtype).name;
}

unsigned dtype_bits(Dtype dtype) {
  return spec_of(dtype).bits;
}

std::optional<Dtype> dtype_from_name(std::string_view name) {
  for (const DtypeSpec& s : kSpecs) {
    if (s.name == name) return s.dtype;
  }
  return std::nullopt;
}

std::optional<uint64_t> tensor_bytes(Dtype dtype, std::span<const uint64_t> shape) {
  uint64_t elements = 1;
  for (const uint64_t d : shape) {
    if (__builtin_mul_overflow(elements, d, &elements)) return std::nullopt;
  }
  uint64_t bits = 0;
  if (__builtin_mul_overflow(elements, dtype_bits(dtype), &bits)) return std::nullopt;
  if (bits % 8 != 0) return std::nullopt;
  return bits / 8;
}

namespace {

// What a file that is not safetensors is, judged by its first bytes; nullopt when unknown.
std::optional<std::string> other_format(const ByteSource& source) {
  uint8_t head[30 + 16] = {};
  const uint64_t n = std::min<uint64_t>(source.size(), sizeof head);
  if (n < 8) return std::nullopt;
  source.read_at(0, std::span(head, n));
  if (std::memcmp(head, "PK\x03\x04", 4) == 0) {
    // A torshpkg package starts with one of its own entries.
    const size_t name_len = head[26] | head[27] << 8;
    const std::string_view name(reinterpret_cast<const char*>(head + 30),
                                std::min<size_t>(name_len, n > 30 ? n - 30 : 0));
    if (name.starts_with("manifest.json") || name.starts_with("dependencies/") ||
        name.starts_with("resources/") || name.starts_with(".torshpkg/")) {
      return "a torshpkg package";
    }
    return "a ZIP archive (a PyTorch .pt checkpoint or another archive)";
  }
  if (std::memcmp(head, "\x93NUMPY", 6) == 0) return "a NumPy .npy array";
  if (head[0] == 0x80 && head[1] >= 2 && head[1] <= 5) {
    return "a Python pickle (a legacy PyTorch checkpoint)";
  }
  return std::nullopt;
}

}  // namespace

SafetensorsHeader read_safetensors_header(const ByteSource& source) {
  const std::string& file = source.name();
  const auto bad = [&](const std::string& why) { return corrupt(file, "safetensors: " + why); };
  if (source.size() < 8) throw bad("shorter than the 8-byte header size");
  uint8_t size_bytes[8];
  source.read_at(0, size_bytes);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | size_bytes[i];
  if (n > SafetensorsLimits::kMaxHeader || n > source.size() - 8) {
    // Not a damaged safetensors file but another format altogether: say so (exit 1, not 3).
    if (const auto other = other_format(source)) {
      throw unsupported(file, "not a safetensors file: it is " + *other);
    }
  }
  if (n > SafetensorsLimits::kMaxHeader) throw bad("header larger than 100 MB");
  if (n > source.size() - 8) throw bad("header size runs past the end of the file");
  if (n < 2) throw bad("header too small to be a JSON object");
  std::string text(n, '\0');
  source.read_at(8, std::span(reinterpret_cast<uint8_t*>(text.data()), text.size()));
  if (text[0] != '{') throw bad("header does not start with '{'");
  const size_t last = text.find_last_not_of(' ');
  const Json::Value root = parse_strict_json(
      std::string_view(text).substr(0, last + 1), 8,
      [&](const std::string& why) { return bad("header is not strict JSON: " + why); });
  if (!root.isObject()) throw bad("header is not a JSON object");

  SafetensorsHeader header;
  header.data_start = 8 + n;
  for (const std::string& name : root.getMemberNames()) {
    const Json::Value& v = root[name];
    if (name == "__metadata__") {
      if (!v.isObject()) throw bad("__metadata__ is not an object");
      for (const std::string& key : v.getMemberNames()) {
        if (!v[key].isString()) throw bad("__metadata__." + key + " is not a string");
        header.metadata[key] = v[key].asString();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!v.isObject()) throw bad(where + "not an object");
    for (const std::string& key : v.getMemberNames()) {
      if (key != "dtype" && key != "shape" && key != "data_offsets") {
        throw bad(where + "unknown key '" + key + "'");
      }
    }
    TensorInfo t;
    t.name = name;
    if (!v["dtype"].isString()) throw bad(where + "dtype missing or not a string");
    const auto dtype = dtype_from_name(v["dtype"].asString());
    if (!dtype) throw bad(where + "unknown dtype '" + v["dtype"].asString() + "'");
    t.dtype = *dtype;
    const Json::Value& shape = v["shape"];
    if (!shape.isArray()) throw bad(where + "shape missing or not an array");
    if (shape.size() > SafetensorsLimits::kMaxRank) throw bad(where + "more than 64 dimensions");
    for (const Json::Value& d : shape) {
      uint64_t dim = 0;
      if (!as_u64(d, dim)) throw bad(where + "shape holds something other than integers >= 0");
      t.shape.push_back(dim);
    }
    const Json::Value& offsets = v["data_offsets"];
    if (!offsets.isArray() || offsets.size() != 2 || !as_u64(offsets[0], t.begin) ||
        !as_u64(offsets[1], t.end)) {
      throw bad(where + "data_offsets must be two integers >= 0");
    }
    if (t.end < t.begin) throw bad(where + "data_offsets end before they begin");
    const auto bytes = tensor_bytes(t.dtype, t.shape);
    if (!bytes) throw bad(where + "size overflows, or a sub-byte dtype does not fill whole bytes");
    if (*bytes != t.size()) {
      throw bad(where + "data_offsets hold " + std::to_string(t.size()) +
                " bytes, shape and dtype " + std::to_string(*bytes));
    }
    header.tensors.push_back(std::move(t));
  }
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  uint64_t at = 0;
  for (const TensorInfo& t : header.tensors) {
    if (t.begin != at) {
      throw bad("tensor '" + t.name + "' starts at " + std::to_string(t.begin) + ", expected " +
                std::to_string(at) + (t.begin < at ? " (overlap)" : " (gap)"));
    }
    at = t.end;
  }
  if (at != source.size() - header.data_start) {
    throw bad("the data buffer holds " + std::to_string(source.size() - header.data_start) +
              " bytes but the tensors cover " + std::to_string(at));
  }
  return header;
}

std::string tensor_sha256(const ByteSource& source, const SafetensorsHeader& header,
                          const TensorInfo& tensor) {
  constexpr uint64_t kPiece = 8 << 20;
  Sha256 hasher;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(kPiece, tensor.size())));
  for (uint64_t done = 0; done < tensor.size();) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kPiece, tensor.size() - done));
    source.read_at(header.data_start + tensor.begin + done, std::span(buf.data(), n));
    hasher.update(std::span<const uint8_t>(buf.data(), n));
    done += n;
  }
  const Digest d = hasher.finish();
  return to_hex(d);
}

struct SafetensorsWriter::Rep {
  std::string path;
  AtomicFile out;
  std::vector<uint64_t> sizes;  // bytes each tensor calls for
  size_t tensor = 0;            // the tensor being written
  uint64_t written = 0;         // bytes of it written so far
  explicit Rep(const std::string& p) : path(p), out(p) {}
};

SafetensorsWriter::SafetensorsWriter(const std::string& path,
                                     const std::vector<TensorSpec>& tensors,
                                     const std::map<std::string, std::string>& metadata) {
  Json::Value root(Json::objectValue);
  if (!metadata.empty()) {
    root["__metadata__"] = Json::Value(Json::objectValue);
    for (const auto& [k, v] : metadata) root["__metadata__"][k] = v;
  }
  std::set<std::string> names;
  std::vector<uint64_t> sizes;
  uint64_t at = 0;
  for (const TensorSpec& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__" || !names.insert(t.name).second) {
      throw invalid_argument("safetensors: tensor name '" + t.name +
                             "' is empty, reserved or used twice");
    }
    const auto bytes = tensor_bytes(t.dtype, t.shape);
    if (!bytes) {
      throw invalid_argument("safetensors: tensor '" + t.name +
                             "' has a shape whose size overflows or splits a byte");
    }
    Json::Value v(Json::objectValue);
    v["dtype"] = std::string(dtype_name(t.dtype));
    v["shape"] = Json::Value(Json::arrayValue);
    for (const uint64_t d : t.shape) v["shape"].append(Json::UInt64(d));
    v["data_offsets"] = Json::Value(Json::arrayValue);
    v["data_offsets"].append(Json::UInt64(at));
    v["data_offsets"].append(Json::UInt64(at + *bytes));
    root[t.name] = v;
    sizes.push_back(*bytes);
    at += *bytes;
  }
  Json::StreamWriterBuilder writer;
  writer["indentation"] = "";
  writer["emitUTF8"] = true;
  std::string header = Json::writeString(writer, root);
  header.append((8 - (8 + header.size()) % 8) % 8, ' ');
  if (header.size() > SafetensorsLimits::kMaxHeader) {
    throw invalid_argument("safetensors: the header would be " + std::to_string(header.size()) +
                           " bytes, over the format's limit");
  }
  rep_ = std::make_unique<Rep>(path);
  rep_->sizes = std::move(sizes);
  uint8_t size_bytes[8];
  for (int i = 0; i < 8; ++i) size_bytes[i] = static_cast<uint8_t>(header.size() >> (8 * i));
  write_all(rep_->out.fd(), std::span<const uint8_t>(size_bytes, 8), path);
  write_all(rep_->out.fd(),
            std::span(reinterpret_cast<const uint8_t*>(header.data()), header.size()), path);
  skip_finished();
}

SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::skip_finished() {
  while (rep_->tensor < rep_->sizes.size() && rep_->written == rep_->sizes[rep_->tensor]) {
    ++rep_->tensor;
    rep_->written = 0;
  }
}

void SafetensorsWriter::write(std::span<const uint8_t> data) {
  uint64_t room = 0;
  for (size_t i = rep_->tensor; i < rep_->sizes.size() && room < data.size(); ++i) {
    room += rep_->sizes[i] - (i == rep_->tensor ? rep_->written : 0);
  }
  if (data.size() > room) {
    throw invalid_argument("safetensors: " + rep_->path + ": more data than the tensors call for");
  }
  write_all(rep_->out.fd(), data, rep_->path);
  uint64_t left = data.size();
  while (left > 0) {
    const uint64_t n = std::min(left, rep_->sizes[rep_->tensor] - rep_->written);
    rep_->written += n;
    left -= n;
    skip_finished();
  }
}

size_t SafetensorsWriter::current_tensor() const {
  return rep_->tensor;
}

void SafetensorsWriter::commit() {
  if (rep_->tensor < rep_->sizes.size()) {
    throw invalid_argument("safetensors: " + rep_->path + ": tensor " +
                           std::to_string(rep_->tensor) + " is missing " +
                           std::to_string(rep_->sizes[rep_->tensor] - rep_->written) + " bytes");
  }
  rep_->out.commit();
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  for (const TensorToWrite& t : tensors) {
    const auto bytes = tensor_bytes(t.dtype, t.shape);
    if (bytes && *bytes != t.data.size()) {
      throw invalid_argument("safetensors: tensor '" + t.name + "' has " +
                             std::to_string(t.data.size()) +
                             " bytes, its shape and dtype call for " + std::to_string(*bytes));
    }
    specs.push_back({t.name, t.dtype, t.shape});
  }
  SafetensorsWriter writer(path, specs, metadata);
  for (const TensorToWrite& t : tensors) writer.write(t.data);
  writer.commit();
}

}  // namespace torshpkg
