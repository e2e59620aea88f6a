// Compression codecs a resource can be stored with, and their levels.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

// Each codec maps to one ZIP compression method. Every chunk of a resource is an independent
// unit of that method's standard stream (see docs/FORMAT.md, "Chunking").
enum class Codec {
  kNone,     // ZIP method 0 (stored)
  kDeflate,  // ZIP method 8; a full-flush point after every chunk
  kZstd,     // ZIP method 93; one zstd frame per chunk
  kXz,       // ZIP method 95; one .xz stream, one block per chunk
};

struct CodecSpec {
  Codec codec = Codec::kZstd;
  int level = 3;  // ignored for kNone

  bool operator==(const CodecSpec&) const = default;
};

// The manifest's spelling: "none", "deflate", "zstd", "xz".
std::string_view codec_name(Codec codec);
std::optional<Codec> codec_from_name(std::string_view name);  // also accepts "gzip", "stored"
uint16_t zip_method(Codec codec);
int default_level(Codec codec);
bool valid_level(Codec codec, int level);

// Parses "ALG[:LEVEL]" as the CLI takes it ("zstd:19", "gzip", "none"). Throws
// Error(kInvalidArgument) with the accepted forms on a bad spelling or level.
CodecSpec parse_codec_spec(std::string_view text);
std::string format_codec_spec(const CodecSpec& spec);  // "zstd:19", "none"

// What `torshpkg create` uses when --compress is absent (chosen by measurement, see
// docs/PERFORMANCE.md).
inline constexpr CodecSpec kDefaultCodec{Codec::kZstd, 3};

}  // namespace torshpkg

#pragma GCC visibility pop
