#include "torshpkg/codec.h"

#include <gtest/gtest.h>

#include "torshpkg/error.h"

namespace torshpkg {
namespace {

TEST(CodecSpec, ParsesNamesAndLevels) {
  EXPECT_EQ(parse_codec_spec("zstd"), (CodecSpec{Codec::kZstd, 3}));
  EXPECT_EQ(parse_codec_spec("zstd:19"), (CodecSpec{Codec::kZstd, 19}));
  EXPECT_EQ(parse_codec_spec("gzip:1"), (CodecSpec{Codec::kDeflate, 1}));
  EXPECT_EQ(parse_codec_spec("deflate:9"), (CodecSpec{Codec::kDeflate, 9}));
  EXPECT_EQ(parse_codec_spec("xz:0"), (CodecSpec{Codec::kXz, 0}));
  EXPECT_EQ(parse_codec_spec("none"), (CodecSpec{Codec::kNone, 0}));
}

TEST(CodecSpec, RejectsUnknownNamesAndLevelsOutOfRange) {
  for (const char* bad : {"lz4", "zstd:0", "zstd:23", "gzip:10", "xz:10", "none:1",
                          "zstd:", "zstd:3x", "", ":3", "zstd:-1"}) {
    try {
      parse_codec_spec(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kInvalidArgument) << bad;
    }
  }
}

TEST(CodecSpec, FormatsAsTheCliTakesIt) {
  EXPECT_EQ(format_codec_spec({Codec::kXz, 9}), "xz:9");
  EXPECT_EQ(format_codec_spec({Codec::kNone, 0}), "none");
  EXPECT_EQ(parse_codec_spec(format_codec_spec({Codec::kDeflate, 4})),
            (CodecSpec{Codec::kDeflate, 4}));
}

TEST(CodecSpec, MapsToZipMethods) {
  EXPECT_EQ(zip_method(Codec::kNone), 0);
  EXPECT_EQ(zip_method(Codec::kDeflate), 8);
  EXPECT_EQ(zip_method(Codec::kZstd), 93);
  EXPECT_EQ(zip_method(Codec::kXz), 95);
}

}  // namespace
}  // namespace torshpkg
