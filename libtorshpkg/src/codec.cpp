#include "torshpkg/codec.h"

#include <charconv>

#include "torshpkg/error.h"

namespace torshpkg {

std::string_view codec_name(Codec codec) {
  switch (codec) {
    case Codec::kNone:
      return "none";
    case Codec::kDeflate:
      return "deflate";
    case Codec::kZstd:
      return "zstd";
    case Codec::kXz:
      return "xz";
  }
  return "none";
}

std::optional<Codec> codec_from_name(std::string_view name) {
  if (name == "none" || name == "stored") return Codec::kNone;
  if (name == "deflate" || name == "gzip") return Codec::kDeflate;
  if (name == "zstd") return Codec::kZstd;
  if (name == "xz") return Codec::kXz;
  return std::nullopt;
}

uint16_t zip_method(Codec codec) {
  switch (codec) {
    case Codec::kNone:
      return 0;
    case Codec::kDeflate:
      return 8;
    case Codec::kZstd:
      return 93;
    case Codec::kXz:
      return 95;
  }
  return 0;
}

int default_level(Codec codec) {
  switch (codec) {
    case Codec::kNone:
      return 0;
    case Codec::kDeflate:
      return 6;
    case Codec::kZstd:
      return 3;
    case Codec::kXz:
      return 6;
  }
  return 0;
}

bool valid_level(Codec codec, int level) {
  switch (codec) {
    case Codec::kNone:
      return level == 0;
    case Codec::kDeflate:
      return level >= 1 && level <= 9;
    case Codec::kZstd:
      return level >= 1 && level <= 22;
    case Codec::kXz:
      return level >= 0 && level <= 9;
  }
  return false;
}

CodecSpec parse_codec_spec(std::string_view text) {
  const auto colon = text.find(':');
  const std::string_view name = text.substr(0, colon);
  const auto codec = codec_from_name(name);
  if (!codec) {
    throw invalid_argument("unknown compression '" + std::string(text) +
                           "' (use none, gzip[:1-9], zstd[:1-22] or xz[:0-9])");
  }
  CodecSpec spec{*codec, default_level(*codec)};
  if (colon != std::string_view::npos) {
    const std::string_view digits = text.substr(colon + 1);
    int level = -1;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), level);
    if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty() ||
        !valid_level(*codec, level)) {
      throw invalid_argument("bad level in compression '" + std::string(text) +
                             "' (none takes no level; gzip 1-9, zstd 1-22, xz 0-9)");
    }
    spec.level = level;
  }
  return spec;
}

std::string format_codec_spec(const CodecSpec& spec) {
  if (spec.codec == Codec::kNone) return "none";
  return std::string(codec_name(spec.codec)) + ":" + std::to_string(spec.level);
}

}  // namespace torshpkg
