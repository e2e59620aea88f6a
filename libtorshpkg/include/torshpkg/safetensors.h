// safetensors files: a strict reader of the header and a writer.
//
// Layout: an unsigned 64-bit little-endian header size N, N bytes of JSON (an object, possibly
// padded at its end with spaces), then the data buffer. The JSON maps each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data buffer), and may
// hold "__metadata__", an object of strings. The reader enforces every rule of the format: the
// header fits the file and is at most kMaxHeader bytes, strict JSON with no duplicate keys,
// known dtypes, non-negative integer shapes and offsets, sizes equal to the element count
// times the dtype's width (overflow-checked; sub-byte dtypes must fill whole bytes), tensors
// tiling the buffer from 0 with no gap or overlap, and the data ending exactly at the end of
// the file. Every violation is Error(kCorrupt) naming the file and the rule.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "torshpkg/byte_source.h"

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

// Every dtype of the format, with its width in bits.
enum class Dtype : uint8_t {
  kBool,
  kU8,
  kI8,
  kF8_E5M2,
  kF8_E4M3,
  kF8_E8M0,
  kF8_E4M3FNUZ,
  kF8_E5M2FNUZ,  // 8
  kI16,
  kU16,
  kF16,
  kBF16,  // 16
  kI32,
  kU32,
  kF32,  // 32
  kC64,
  kF64,
  kI64,
  kU64,  // 64
  kF4,   // 4
  kF6_E2M3,
  kF6_E3M2,  // 6
};
inline constexpr Dtype kAllDtypes[] = {
    Dtype::kBool,    Dtype::kU8,          Dtype::kI8,          Dtype::kF8_E5M2, Dtype::kF8_E4M3,
    Dtype::kF8_E8M0, Dtype::kF8_E4M3FNUZ, Dtype::kF8_E5M2FNUZ, Dtype::kI16,     Dtype::kU16,
    Dtype::kF16,     Dtype::kBF16,        Dtype::kI32,         Dtype::kU32,     Dtype::kF32,
    Dtype::kC64,     Dtype::kF64,         Dtype::kI64,         Dtype::kU64,     Dtype::kF4,
    Dtype::kF6_E2M3, Dtype::kF6_E3M2};

// The format's spelling ("BF16", "F8_E4M3", ...).
std::string_view dtype_name(Dtype dtype);
std::optional<Dtype> dtype_from_name(std::string_view name);
unsigned dtype_bits(Dtype dtype);

struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::kU8;
  std::vector<uint64_t> shape;  // empty for a scalar
  uint64_t begin = 0;           // offsets in the data buffer
  uint64_t end = 0;
  uint64_t size() const { return end - begin; }
};

struct SafetensorsHeader {
  std::map<std::string, std::string> metadata;
  std::vector<TensorInfo> tensors;  // in data order
  uint64_t data_start = 0;          // file offset of the data buffer: 8 + N
};

class SafetensorsLimits {
 public:
  static constexpr uint64_t kMaxHeader = 100'000'000;  // as the reference implementation
  static constexpr size_t kMaxRank = 64;
};

// Reads and checks the header of the safetensors file `source` holds. Reads 8 + N bytes.
// Throws Error(kCorrupt) for a damaged one, and Error(kUnsupported) "not a safetensors file:
// it is ..." for a file of another known format (a torshpkg package or other ZIP, a .npy, a
// pickle).
SafetensorsHeader read_safetensors_header(const ByteSource& source);

// The bytes a tensor's shape and dtype call for; nullopt when they overflow or a sub-byte dtype
// does not fill whole bytes.
std::optional<uint64_t> tensor_bytes(Dtype dtype, std::span<const uint64_t> shape);

// Hex SHA-256 of a tensor's bytes, read from `source` in pieces (any size of tensor).
std::string tensor_sha256(const ByteSource& source, const SafetensorsHeader& header,
                          const TensorInfo& tensor);

// A tensor's name, dtype and shape: what the header says of it.
struct TensorSpec {
  std::string name;
  Dtype dtype = Dtype::kU8;
  std::vector<uint64_t> shape;
};

// Writes a safetensors file whose tensors are known up front and whose bytes arrive in pieces
// (a converter materializing one tensor at a time). The header is written at construction; the
// tensors' bytes follow, in the order given, through write(); commit() renames the temporary
// file into place once every byte has come. Destroyed before commit(), it removes the
// temporary file. Not thread-safe. Throws as write_safetensors.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::string& path, const std::vector<TensorSpec>& tensors,
                    const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Appends bytes of the current tensor (and of the following ones when `data` runs past its
  // end). Throws Error(kInvalidArgument) past the last tensor's end.
  void write(std::span<const uint8_t> data);
  // The index of the tensor the next byte belongs to (tensors.size() when all are complete).
  size_t current_tensor() const;
  // Throws Error(kInvalidArgument) when bytes are missing; Error(kIo) when the file cannot be
  // synced or renamed.
  void commit();

 private:
  void skip_finished();
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

struct TensorToWrite {
  std::string name;
  Dtype dtype = Dtype::kU8;
  std::vector<uint64_t> shape;
  std::span<const uint8_t> data;  // exactly tensor_bytes(dtype, shape) bytes
};

// Writes a safetensors file atomically (temporary file renamed into place): tensors in the
// order given, the header padded with spaces so the data starts 8-byte aligned. Throws
// Error(kInvalidArgument) for a duplicate or empty name, a "__metadata__" tensor, or data whose
// size disagrees with the shape; Error(kIo) when it cannot write.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace torshpkg

#pragma GCC visibility pop
