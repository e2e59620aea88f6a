#include "torshpkg/manifest.h"

#include <gtest/gtest.h>

#include "torshpkg/error.h"
#include "torshpkg/semver.h"

namespace torshpkg {
namespace {

Manifest sample() {
  Manifest m;
  m.package_id = "00112233445566778899aabbccddeeff";
  m.name = "demo";
  m.version = "1.2.3-rc.1+build.5";
  m.description = "d\xc3\xa9mo";
  m.created = "2026-01-31T12:00:00Z";
  m.metadata = {{"framework", "pytorch"}};
  ResourceEntry r;
  r.id = 0;
  r.path = "weights/model.safetensors";
  r.type = ResourceType::kModelWeights;
  r.size = 5000;
  r.stored_size = 4000;
  r.compression = {Codec::kZstd, 3};
  r.chunk_size = 4096;
  r.chunk_count = 2;
  r.sha256 = std::string(64, 'a');
  r.index_sha256 = std::string(64, 'b');
  m.resources.push_back(r);
  Dependency d;
  d.name = "tokenizers";
  d.version_req = ">=0.15, <0.16";
  d.features = {"fast"};
  d.file_size = 10;
  d.file_sha256 = std::string(64, 'c');
  m.dependencies.push_back(d);
  m.lineage.push_back({"FineTunedFrom", "llama@2.0.0", "", {{"dataset", "x"}}});
  return m;
}

// `says`, when given, must be part of the error message.
void expect_corrupt(const std::string& json, const std::string& why, const std::string& says = "") {
  try {
    parse_manifest(json, "p.torshpkg");
    ADD_FAILURE() << "accepted: " << why;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorrupt) << why;
    EXPECT_NE(std::string(e.what()).find("p.torshpkg"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << why << ": " << e.what();
  }
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

TEST(Manifest, SerializeParseRoundTripIsByteStable) {
  const std::string json = serialize_manifest(sample());
  const Manifest back = parse_manifest(json, "p");
  EXPECT_EQ(serialize_manifest(back), json);
  EXPECT_EQ(back.resources[0].path, "weights/model.safetensors");
  EXPECT_EQ(back.dependencies[0].features, std::vector<std::string>{"fast"});
  EXPECT_EQ(back.lineage[0].provenance.at("dataset"), "x");
}

TEST(Manifest, RejectsInvalidJsonAndDuplicateKeys) {
  const std::string json = serialize_manifest(sample());
  expect_corrupt("{", "truncated");
  expect_corrupt("[]", "not an object");
  expect_corrupt(json + "x", "trailing garbage");
  expect_corrupt(replace(json, "\"author\" : \"\",", "\"author\" : \"\", \"author\" : \"x\","),
                 "duplicate key");
  expect_corrupt(replace(json, "{", "{ // comment\n"), "comment");
  expect_corrupt(replace(json, "\"name\" : \"demo\"", "\"name\" : \"demo\", \"extra\" : 1"),
                 "unknown key");
  expect_corrupt(std::string("\xff") + json, "not UTF-8");
}

TEST(Manifest, RejectsDuplicateKeysAtEveryLevel) {
  Manifest m = sample();
  m.key_slots.push_back(
      {"key-file", std::string(32, '1'), 0, 0, 0, std::string(24, '2'), std::string(96, '3')});
  m.resources[0].encryption = Cipher::kAes256Gcm;
  m.resources[0].sha256.clear();
  const std::string json = serialize_manifest(m);
  ASSERT_NO_THROW(parse_manifest(json, "p"));
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"\"name\" : \"demo\"", "\"name\" : \"demo\", \"name\" : \"demo\""},
           {"\"chunk_size\" : 4096", "\"chunk_size\" : 4096, \"chunk_size\" : 4096"},
           {"\"optional\" : false", "\"optional\" : false, \"optional\" : true"},
           {"\"parent\" : \"llama@2.0.0\"", "\"parent\" : \"llama@2.0.0\", \"parent\" : \"x\""},
           {"\"dataset\" : \"x\"", "\"dataset\" : \"x\", \"dataset\" : \"y\""},
           {"\"framework\" : \"pytorch\"", "\"framework\" : \"a\", \"framework\" : \"b\""},
           {"\"kdf\" : \"hkdf-sha256\"", "\"kdf\" : \"hkdf-sha256\", \"kdf\" : \"hkdf-sha256\""},
           {"\"key_slots\" :", "\"key_slots\" : [], \"key_slots\" :"},
       }) {
    expect_corrupt(replace(json, from, to), "duplicate: " + to, "duplicate key");
  }
}

TEST(Manifest, RejectsWhatStrictJsonForbids) {
  const std::string json = serialize_manifest(sample());
  expect_corrupt("", "empty");
  expect_corrupt(json + "{}", "a second value");
  expect_corrupt(replace(json, "\"size\" : 5000", "\"size\" : 5000,"), "trailing comma");
  expect_corrupt(replace(json, "\"size\" : 5000", "\"size\" : 05000"), "leading zero");
  expect_corrupt(replace(json, "\"size\" : 5000", "\"size\" : 5e3"), "exponent");
  expect_corrupt(replace(json, "\"size\" : 5000", "\"size\" : 18446744073709551616"), "> 2^64");
  expect_corrupt(replace(json, "\"author\" : \"\"", "\"author\" : \"\\ud800\""), "lone surrogate");
  expect_corrupt(replace(json, "\"author\" : \"\"", "\"author\" : \"\t\""), "raw control");
  expect_corrupt(replace(json, "\"author\" : \"\"", "\"author\" : \"a\\u0000b\""), "NUL");
  expect_corrupt(replace(json, "\"author\" : \"\"", "\"author\" : \"\xc3\""), "bad UTF-8");
  expect_corrupt(replace(json, "\"framework\" : \"pytorch\"", "\"framework\" : 1"),
                 "metadata value not a string");
  expect_corrupt(replace(json, "\"fast\"", "\"fast\", 1"), "feature not a string");
  expect_corrupt("\xef\xbb\xbf" + json, "byte order mark");
  // Whitespace is free: a compact manifest of the same content parses to the same manifest.
  std::string compact;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (c == '"' && (i == 0 || json[i - 1] != '\\')) in_string = !in_string;
    if (in_string || (c != ' ' && c != '\n')) compact += c;
  }
  EXPECT_EQ(serialize_manifest(parse_manifest(compact, "p")), json);
}

TEST(Manifest, RejectsBadValues) {
  const std::string json = serialize_manifest(sample());
  expect_corrupt(replace(json, "\"1.2.3-rc.1+build.5\"", "\"1.2\""), "semver");
  expect_corrupt(replace(json, "\"1.2.3-rc.1+build.5\"", "\"01.2.3\""), "leading zero");
  // Requirements in dependency resolution's one grammar: once written, signed and opened, and
  // refused only when resolved.
  for (const char* bad : {"^^1", ">=1 ||", "1.2.3.4", "~1.*.3"}) {
    expect_corrupt(replace(json, "\">=0.15, <0.16\"", std::string("\"") + bad + "\""), bad,
                   "bad version_req");
  }
  expect_corrupt(replace(json, "weights/model.safetensors", "../model.safetensors"),
                 "dot-dot path");
  expect_corrupt(replace(json, "\"chunk_count\" : 2", "\"chunk_count\" : 3"), "chunk count");
  expect_corrupt(replace(json, "\"chunk_size\" : 4096", "\"chunk_size\" : 5000"), "chunk size");
  expect_corrupt(replace(json, "\"size\" : 5000", "\"size\" : 5000.0"), "float size");
  expect_corrupt(replace(json, "\"size\" : 5000", "\"size\" : -1"), "negative size");
  expect_corrupt(replace(json, "\"ModelWeights\"", "\"Weights\""), "unknown type");
  expect_corrupt(replace(json, "\"FineTunedFrom\"", "\"CopiedFrom\""), "unknown relation");
  expect_corrupt(replace(json, "\"zstd\"", "\"lz4\""), "unknown codec");
  expect_corrupt(replace(json, "\"id\" : 0", "\"id\" : 1"), "id out of position");
  expect_corrupt(replace(json, std::string(64, 'a'), std::string(64, 'A')), "uppercase digest");
}

TEST(Manifest, BoundsTheKeyDerivationWorkOfAllPasswordSlots) {
  Manifest m = sample();
  m.resources[0].encryption = Cipher::kAes256Gcm;
  m.resources[0].sha256.clear();
  const KeySlot costly{
      "password", std::string(32, '1'), Argon2Params::kMaxTimeCost, Argon2Params::kMaxMemoryKib,
      1,          std::string(24, '2'), std::string(96, '3')};
  m.key_slots = {costly};  // one slot of the largest cost is allowed
  ASSERT_NO_THROW(parse_manifest(serialize_manifest(m), "p.torshpkg"));
  m.key_slots.assign(16, costly);  // sixteen of them would cost sixteen times as much
  expect_corrupt(serialize_manifest(m), "16 maximal password slots", "Argon2id work");
  KeySlot cheap = costly;
  cheap.time_cost = 1;
  cheap.memory_kib = 64 * 1024;
  m.key_slots.assign(16, cheap);
  EXPECT_NO_THROW(parse_manifest(serialize_manifest(m), "p.torshpkg"));
}

TEST(Manifest, RefusesNamesOneCouldTakeForAnother) {
  const auto with_paths = [](const std::vector<std::string>& paths) {
    Manifest m = sample();
    const ResourceEntry r = m.resources[0];
    m.resources.clear();
    for (const std::string& p : paths) {
      ResourceEntry e = r;
      e.id = static_cast<uint32_t>(m.resources.size());
      e.path = p;
      m.resources.push_back(e);
    }
    return serialize_manifest(m);
  };
  ASSERT_NO_THROW(parse_manifest(with_paths({"caf\xc3\xa9.txt", "Model.bin", "model2.bin"}), "p"));
  expect_corrupt(with_paths({"cafe\xcc\x81.txt"}), "not NFC", "NFC");
  expect_corrupt(with_paths({"config.json\xe2\x80\x8b"}), "zero-width space", "U+200B");
  expect_corrupt(with_paths({"model\xe2\x80\xae"
                             "txt.exe"}),
                 "right-to-left override", "U+202E");
  expect_corrupt(with_paths({"a\xc2\x85"}), "C1 control", "U+0085");
  expect_corrupt(with_paths({"Model.bin", "model.bin"}), "case", "only by case");
  expect_corrupt(with_paths({"Weights/a.bin", "weights/b.bin"}), "folder case", "only by case");
  expect_corrupt(with_paths({"STRASSE.txt",
                             "stra\xc3\x9f"
                             "e.txt"}),
                 "full case folding", "only by case");
}

TEST(Manifest, NewerFormatVersionsAreUnsupported) {
  const std::string json =
      replace(serialize_manifest(sample()), "\"format_version\" : 1", "\"format_version\" : 4");
  try {
    parse_manifest(json, "p");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
  }
}

TEST(Manifest, ExecutableResourcesNeedFormatVersion2) {
  Manifest m = sample();
  EXPECT_EQ(serialize_manifest(m).find("executable"), std::string::npos);
  m.resources[0].executable = true;
  const std::string json = serialize_manifest(m);
  EXPECT_NE(json.find("\"format_version\" : 2"), std::string::npos);
  EXPECT_NE(json.find("\"executable\" : true"), std::string::npos);
  const Manifest parsed = parse_manifest(json, "p.torshpkg");
  EXPECT_TRUE(parsed.resources[0].executable);
  EXPECT_EQ(serialize_manifest(parsed), json);
  // A version-1 manifest has no such key: readers of version 1 would not know it.
  expect_corrupt(replace(json, "\"format_version\" : 2", "\"format_version\" : 1"),
                 "executable in version 1", "unknown key \"executable\"");
}

TEST(Manifest, BlocksNeedFormatVersion3AndAResourceStoredPlain) {
  Manifest m = sample();
  m.resources[0].compression = {Codec::kNone, 0};
  m.resources[0].stored_size = m.resources[0].size;
  m.resources[0].block_size = 4096;
  const std::string json = serialize_manifest(m);
  EXPECT_NE(json.find("\"format_version\" : 3"), std::string::npos);
  EXPECT_NE(json.find("\"block_size\" : 4096"), std::string::npos);
  const Manifest parsed = parse_manifest(json, "p.torshpkg");
  EXPECT_EQ(parsed.resources[0].block_size, 4096u);
  EXPECT_EQ(parsed.resources[0].block_count(), 2u);
  EXPECT_EQ(serialize_manifest(parsed), json);
  expect_corrupt(replace(json, "\"format_version\" : 3", "\"format_version\" : 2"),
                 "blocks in version 2", "unknown key \"block_size\"");
  expect_corrupt(replace(json, "\"block_size\" : 4096", "\"block_size\" : 8192"),
                 "blocks over the chunk size", "block_size must be a power of two");
  expect_corrupt(replace(json, "\"block_size\" : 4096", "\"block_size\" : 2048"),
                 "blocks under 4096", "block_size must be a power of two");
  Manifest zstd = m;
  zstd.resources[0].compression = {Codec::kZstd, 3};
  zstd.resources[0].stored_size = 4000;
  EXPECT_THROW(validate_manifest(zstd), Error);
  Manifest sealed = m;
  sealed.resources[0].encryption = Cipher::kAes256Gcm;
  EXPECT_THROW(validate_manifest(sealed), Error);
}

TEST(Manifest, RejectsFileAndFolderAtTheSamePath) {
  Manifest m = sample();
  ResourceEntry r = m.resources[0];
  r.id = 1;
  r.path = "weights/model.safetensors/inner";
  m.resources.push_back(r);
  EXPECT_THROW(validate_manifest(m), Error);
  m.resources[1].path = "weights/model.safetensors";
  EXPECT_THROW(validate_manifest(m), Error);
  // Names that sort between a file and what lies under it ('.' and '-' come before '/').
  for (const char* between : {"weights/model.safetensors.bak", "weights/model.safetensors-x"}) {
    r.id = 2;
    r.path = between;
    m.resources[1].path = "weights/model.safetensors/inner";
    m.resources.resize(2);
    m.resources.push_back(r);
    EXPECT_THROW(validate_manifest(m), Error) << between;
    m.resources[1].path = "weights/model.safetensorsX/inner";  // a sibling folder: fine
    EXPECT_NO_THROW(validate_manifest(m)) << between;
  }
}

TEST(Manifest, ParsesInTurnOnOneThreadEachOnItsOwn) {
  // One thread's parser is reused: a parse must see nothing of the one before, larger, smaller
  // or failed.
  Manifest big = sample();
  for (uint32_t i = 1; i < 50; ++i) {
    ResourceEntry r = big.resources[0];
    r.id = i;
    r.path = "more/r" + std::to_string(i);
    big.resources.push_back(r);
  }
  const std::string big_json = serialize_manifest(big);
  const std::string small_json = serialize_manifest(sample());
  for (int round = 0; round < 2; ++round) {
    EXPECT_EQ(serialize_manifest(parse_manifest(big_json, "p")), big_json);
    EXPECT_EQ(serialize_manifest(parse_manifest(small_json, "p")), small_json);
    expect_corrupt(small_json.substr(0, small_json.size() / 2), "cut in half");
    expect_corrupt(replace(big_json, "\"more/r7\"", "\"more/r8\""), "a duplicate path");
  }
}

TEST(Manifest, PaddedParseReadsOnlyTheText) {
  const std::string json = serialize_manifest(sample());
  // The bytes after the text are the parser's padding: never parsed, whatever they hold.
  std::string buffer = json + std::string(kManifestParsePadding, '\xff');
  const Manifest back = parse_padded_manifest(std::string_view(buffer).substr(0, json.size()), "p");
  EXPECT_EQ(serialize_manifest(back), json);
  // Text cut short of its closing brace is not completed by the bytes that follow it.
  const size_t brace = json.rfind('}');
  try {
    parse_padded_manifest(std::string_view(buffer).substr(0, brace), "p.torshpkg");
    ADD_FAILURE() << "a truncated manifest was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCorrupt) << e.what();
  }
}

TEST(Manifest, RejectsDeepNesting) {
  std::string deep(100, '[');
  deep += std::string(100, ']');
  expect_corrupt(deep, "deep nesting");
}

TEST(Semver, AcceptsAndRejects) {
  for (const char* ok : {"0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha", "1.0.0-alpha.1",
                         "1.0.0-0.3.7", "1.0.0+20130313144700", "1.0.0-beta+exp.sha.5114f85"}) {
    EXPECT_TRUE(is_valid_semver(ok)) << ok;
  }
  for (const char* bad : {"1", "1.2", "1.2.3.4", "01.1.1", "1.2.3-", "1.2.3-01", "1.2.3+",
                          "1.2.3-a..b", "v1.2.3", " 1.2.3"}) {
    EXPECT_FALSE(is_valid_semver(bad)) << bad;
  }
}

TEST(ResourceTypes, GuessedFromFileNames) {
  EXPECT_EQ(guess_resource_type("model.safetensors"), ResourceType::kModelWeights);
  EXPECT_EQ(guess_resource_type("config.json"), ResourceType::kConfig);
  EXPECT_EQ(guess_resource_type("tokenizer.json"), ResourceType::kTokenizer);
  EXPECT_EQ(guess_resource_type("a/tokenizer.model"), ResourceType::kTokenizer);
  EXPECT_EQ(guess_resource_type("modeling.py"), ResourceType::kSource);
  EXPECT_EQ(guess_resource_type("README.md"), ResourceType::kDocumentation);
  EXPECT_EQ(guess_resource_type("LICENSE"), ResourceType::kLicense);
  EXPECT_EQ(guess_resource_type("notes.txt"), ResourceType::kText);
  EXPECT_EQ(guess_resource_type("blob"), ResourceType::kData);
  for (ResourceType t : {ResourceType::kModelWeights, ResourceType::kMetadata}) {
    EXPECT_EQ(resource_type_from_name(to_string(t)), t);
  }
}

}  // namespace
}  // namespace torshpkg
