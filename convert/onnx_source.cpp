#include "onnx_source.h"

#include <cstring>
#include <map>
#include <set>

#include "torshpkg/error.h"

namespace torshpkg::convert {
namespace {

constexpr uint64_t kMaxModel = 4ull << 30;  // protobuf itself stops at 2 GiB

// One field of a protobuf message: its number, wire type and value (a varint, fixed bits, or
// the bytes of a length-delimited field).
struct Field {
  uint32_t number = 0;
  uint32_t wire = 0;
  uint64_t value = 0;
  std::span<const uint8_t> bytes;
  uint64_t offset = 0;  // of `bytes` in the file
};

class Wire {
 public:
  Wire(std::span<const uint8_t> data, uint64_t base, const std::string& what)
      : d_(data), base_(base), what_(what) {}
  bool done() const { return at_ >= d_.size(); }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (at_ >= d_.size()) fail("truncated varint");
      const uint8_t b = d_[at_++];
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint too long");
  }

  Field next() {
    Field f;
    const uint64_t key = varint();
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire = static_cast<uint32_t>(key & 7);
    switch (f.wire) {
      case 0:
        f.value = varint();
        break;
      case 1:
        f.value = fixed(8);
        break;
      case 5:
        f.value = fixed(4);
        break;
      case 2: {
        const uint64_t n = varint();
        if (n > d_.size() - at_) fail("length-delimited field runs past its message");
        f.bytes = d_.subspan(at_, static_cast<size_t>(n));
        f.offset = base_ + at_;
        at_ += static_cast<size_t>(n);
        break;
      }
      default:
        fail("unsupported wire type " + std::to_string(f.wire));
    }
    return f;
  }

  [[noreturn]] void fail(const std::string& why) const { throw corrupt(what_, "protobuf: " + why); }

 private:
  uint64_t fixed(size_t n) {
    if (n > d_.size() - at_) fail("truncated fixed field");
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(d_[at_ + i]) << (8 * i);
    at_ += n;
    return v;
  }
  std::span<const uint8_t> d_;
  uint64_t base_;
  std::string what_;
  size_t at_ = 0;
};

struct OnnxType {
  int code;
  const char* name;
  Dtype dtype;
  unsigned bits;  // per element as stored
  bool split_complex;
  enum Field { kFloat, kInt32, kInt64, kDouble, kUint64, kNone } typed;
};

constexpr OnnxType kTypes[] = {
    {1, "FLOAT", Dtype::kF32, 32, false, OnnxType::kFloat},
    {2, "UINT8", Dtype::kU8, 8, false, OnnxType::kInt32},
    {3, "INT8", Dtype::kI8, 8, false, OnnxType::kInt32},
    {4, "UINT16", Dtype::kU16, 16, false, OnnxType::kInt32},
    {5, "INT16", Dtype::kI16, 16, false, OnnxType::kInt32},
    {6, "INT32", Dtype::kI32, 32, false, OnnxType::kInt32},
    {7, "INT64", Dtype::kI64, 64, false, OnnxType::kInt64},
    {9, "BOOL", Dtype::kBool, 8, false, OnnxType::kInt32},
    {10, "FLOAT16", Dtype::kF16, 16, false, OnnxType::kInt32},
    {11, "DOUBLE", Dtype::kF64, 64, false, OnnxType::kDouble},
    {12, "UINT32", Dtype::kU32, 32, false, OnnxType::kUint64},
    {13, "UINT64", Dtype::kU64, 64, false, OnnxType::kUint64},
    {14, "COMPLEX64", Dtype::kC64, 64, false, OnnxType::kFloat},
    {15, "COMPLEX128", Dtype::kF64, 128, true, OnnxType::kDouble},
    {16, "BFLOAT16", Dtype::kBF16, 16, false, OnnxType::kInt32},
    {17, "FLOAT8E4M3FN", Dtype::kF8_E4M3, 8, false, OnnxType::kInt32},
    {18, "FLOAT8E4M3FNUZ", Dtype::kF8_E4M3FNUZ, 8, false, OnnxType::kInt32},
    {19, "FLOAT8E5M2", Dtype::kF8_E5M2, 8, false, OnnxType::kInt32},
    {20, "FLOAT8E5M2FNUZ", Dtype::kF8_E5M2FNUZ, 8, false, OnnxType::kInt32},
    {23, "FLOAT4E2M1", Dtype::kF4, 4, false, OnnxType::kNone},
    {24, "FLOAT8E8M0", Dtype::kF8_E8M0, 8, false, OnnxType::kInt32},
};

struct Initializer {
  std::string name;
  int data_type = 0;
  std::vector<uint64_t> dims;
  bool has_raw = false;
  uint64_t raw_offset = 0, raw_size = 0;  // in the model file
  // Typed fields: where their bytes lie (packed or not), decoded when written.
  std::vector<Field> typed;
  std::map<std::string, std::string> external;
  bool external_location = false;
  bool segmented = false;
};

Initializer parse_tensor(const Field& f, const std::string& what) {
  Initializer t;
  Wire w(f.bytes, f.offset, what);
  while (!w.done()) {
    const Field x = w.next();
    switch (x.number) {
      case 1:
        if (x.wire == 0) {
          t.dims.push_back(x.value);
        } else if (x.wire == 2) {
          Wire packed(x.bytes, x.offset, what);
          while (!packed.done()) t.dims.push_back(packed.varint());
        }
        if (t.dims.size() > 64) w.fail("initializer with rank above 64");
        break;
      case 2:
        t.data_type = static_cast<int>(x.value);
        break;
      case 3:
        t.segmented = true;
        break;
      case 4:
      case 5:
      case 7:
      case 10:
      case 11:
        t.typed.push_back(x);
        break;
      case 8:
        t.name.assign(reinterpret_cast<const char*>(x.bytes.data()), x.bytes.size());
        break;
      case 9:
        t.has_raw = true;
        t.raw_offset = x.offset;
        t.raw_size = x.bytes.size();
        break;
      case 13: {
        std::string key, value;
        Wire e(x.bytes, x.offset, what);
        while (!e.done()) {
          const Field kv = e.next();
          const std::string s(reinterpret_cast<const char*>(kv.bytes.data()), kv.bytes.size());
          if (kv.number == 1) key = s;
          if (kv.number == 2) value = s;
        }
        t.external[key] = value;
        break;
      }
      case 14:
        t.external_location = x.value == 1;
        break;
      default:
        break;
    }
  }
  return t;
}

// The elements of a typed field, appended as little-endian values of `bits` bits each.
void decode_typed(const Initializer& t, const OnnxType& type, std::vector<uint8_t>& out,
                  const std::string& what) {
  const auto put = [&](uint64_t v, unsigned bytes) {
    for (unsigned i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  const unsigned element_bytes = type.typed == OnnxType::kFloat    ? 4
                                 : type.typed == OnnxType::kDouble ? 8
                                                                   : type.bits / 8;
  for (const Field& f : t.typed) {
    const bool fixed = type.typed == OnnxType::kFloat || type.typed == OnnxType::kDouble;
    if (f.wire == 2) {
      Wire packed(f.bytes, f.offset, what);
      if (fixed) {
        const unsigned n = type.typed == OnnxType::kFloat ? 4 : 8;
        if (f.bytes.size() % n != 0) packed.fail("packed field of a partial element");
        out.insert(out.end(), f.bytes.begin(), f.bytes.end());
      } else {
        while (!packed.done()) put(packed.varint(), element_bytes);
      }
    } else {
      put(f.value, element_bytes);
    }
  }
}

std::string safe_location(const std::string& location, const std::string& what) {
  if (location.empty() || location.front() == '/' || location.find("..") != std::string::npos ||
      location.find('\0') != std::string::npos) {
    throw corrupt(what, "external data location '" + location + "' is not a plain relative path");
  }
  return location;
}

uint64_t parse_u64(const std::string& text, const std::string& what) {
  uint64_t v = 0;
  if (text.empty()) throw corrupt(what, "empty number in external data");
  for (const char c : text) {
    if (c < '0' || c > '9' || __builtin_mul_overflow(v, 10, &v) ||
        __builtin_add_overflow(v, static_cast<uint64_t>(c - '0'), &v)) {
      throw corrupt(what, "bad number '" + text + "' in external data");
    }
  }
  return v;
}

}  // namespace

bool looks_like_onnx(const ByteSource& source) {
  if (source.size() < 2) return false;
  uint8_t b[2];
  source.read_at(0, b);
  return b[0] == 0x08 && b[1] < 0x80;  // ir_version: a small varint
}

Plan plan_onnx(std::shared_ptr<const ByteSource> source, const std::string& file_name,
               const std::string& model_dir) {
  const std::string what = source->name();
  if (source->size() > kMaxModel) throw unsupported(what, "ONNX model over 4 GiB");
  auto bytes = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(source->size()));
  source->read_at(0, *bytes);
  Wire model(*bytes, 0, what);
  std::vector<Initializer> inits;
  bool graph_seen = false;
  while (!model.done()) {
    const Field f = model.next();
    if (f.number != 7 || f.wire != 2) continue;
    graph_seen = true;
    Wire graph(f.bytes, f.offset, what);
    while (!graph.done()) {
      const Field g = graph.next();
      if (g.number == 5 && g.wire == 2) inits.push_back(parse_tensor(g, what));
    }
  }
  if (!graph_seen) throw corrupt(what, "ONNX model without a graph");

  Plan plan;
  plan.kind = SourceKind::kOnnx;
  WeightsFile w;
  w.path = "model.safetensors";
  w.metadata = {{"format", "onnx"}};
  std::set<std::string> names;
  for (Initializer& t : inits) {
    const std::string where = what + ": initializer " + t.name;
    if (t.name.empty() || !names.insert(t.name).second) {
      throw corrupt(where, "initializer name empty or used twice");
    }
    const OnnxType* type = nullptr;
    for (const OnnxType& k : kTypes) {
      if (k.code == t.data_type) type = &k;
    }
    if (type == nullptr) {
      throw unsupported(where, "ONNX data type " + std::to_string(t.data_type) +
                                   " has no safetensors equivalent");
    }
    if (t.segmented) throw unsupported(where, "segmented tensors are not converted");
    PlannedTensor p;
    p.spec.name = t.name;
    p.spec.dtype = type->dtype;
    p.spec.shape = t.dims;
    if (type->split_complex) p.spec.shape.push_back(2);
    const auto expected = tensor_bytes(p.spec.dtype, p.spec.shape);
    if (!expected) throw corrupt(where, "size overflows or splits a byte");
    const uint64_t size = *expected;
    if (t.external_location) {
      const std::string file = model_dir + "/" + safe_location(t.external["location"], where);
      const uint64_t offset =
          t.external.contains("offset") ? parse_u64(t.external["offset"], where) : 0;
      const uint64_t length =
          t.external.contains("length") ? parse_u64(t.external["length"], where) : size;
      if (length != size) {
        throw corrupt(where, "external data length " + std::to_string(length) +
                                 ", shape calls for " + std::to_string(size));
      }
      const std::shared_ptr<ByteSource> ext = open_file_source(file);
      if (offset > ext->size() || size > ext->size() - offset) {
        throw corrupt(where, "external data runs past the end of " + file);
      }
      p.produce = [ext, offset, size](const ByteSink& sink) {
        std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(size, 4u << 20)));
        for (uint64_t done = 0; done < size;) {
          const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - done));
          ext->read_at(offset + done, std::span(buf.data(), n));
          sink(std::span<const uint8_t>(buf.data(), n));
          done += n;
        }
      };
    } else if (t.has_raw) {
      if (t.raw_size != size) {
        throw corrupt(where, "raw_data holds " + std::to_string(t.raw_size) +
                                 " bytes, the shape calls for " + std::to_string(size));
      }
      const uint64_t at = t.raw_offset;
      p.produce = [bytes, at, size](const ByteSink& sink) {
        sink(std::span<const uint8_t>(bytes->data() + at, static_cast<size_t>(size)));
      };
    } else {
      if (type->typed == OnnxType::kNone) {
        throw unsupported(where, std::string(type->name) + " values outside raw_data");
      }
      std::vector<uint8_t> data;
      decode_typed(t, *type, data, where);
      if (data.size() != size) {
        throw corrupt(where, "its typed data holds " + std::to_string(data.size()) +
                                 " bytes, the shape calls for " + std::to_string(size));
      }
      auto held = std::make_shared<std::vector<uint8_t>>(std::move(data));
      p.produce = [held](const ByteSink& sink) { sink(*held); };
    }
    w.tensors.push_back(std::move(p));
  }
  plan.weights.push_back(std::move(w));
  KeptFile graph;
  graph.path = file_name;
  graph.type = ResourceType::kBinary;
  graph.source = source;
  graph.size = source->size();
  plan.kept.push_back(std::move(graph));
  return plan;
}

}  // namespace torshpkg::convert
