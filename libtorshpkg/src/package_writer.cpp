#include "torshpkg/package_writer.h"

#include <fcntl.h>
#include <gnutls/crypto.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <set>

#include "chunk_codec.h"
#include "chunk_index.h"
#include "crc32.h"
#include "crypto.h"
#include "names.h"
#include "thread_pool.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/semver.h"
#include "torshpkg/sha256.h"
#include "torshpkg/signature.h"
#include "zip_names.h"
#include "zip_writer.h"

namespace torshpkg {
namespace {

constexpr uint32_t kStoredAlignment = 4096;
// Entries whose plain size reaches this get ZIP64 fields in their local header, leaving room
// for compressed data that is larger than the input.
constexpr uint64_t kZip64Threshold = 0xf0000000ull;
constexpr uint64_t kBatchBytes = 8u << 20;

std::string random_package_id() {
  uint8_t id[16];
  if (gnutls_rnd(GNUTLS_RND_NONCE, id, sizeof id) != 0) {
    throw Error(ErrorKind::kIo, "cannot get random bytes for the package id");
  }
  return to_hex(id);
}

std::time_t creation_time() {
  // SOURCE_DATE_EPOCH makes builds reproducible (https://reproducible-builds.org/specs/).
  if (const char* epoch = std::getenv("SOURCE_DATE_EPOCH")) {
    char* end = nullptr;
    const long long v = std::strtoll(epoch, &end, 10);
    if (end != epoch && *end == '\0' && v >= 0) return static_cast<std::time_t>(v);
  }
  return std::time(nullptr);
}

std::string rfc3339(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

struct EncodeContext {
  const std::string& out_name;
  ZipWriter& zip;
  std::span<const uint8_t, 16> package_id;
  const WriteOptions& options;
  const Key256* data_key;  // set when some resource is encrypted
  uint64_t total_bytes;
  uint64_t done_bytes = 0;
};

void check_cancel(const WriteOptions& options) {
  if (options.cancel != nullptr && options.cancel->load()) {
    throw Error(ErrorKind::kInterrupted, "interrupted");
  }
}

// One batch of consecutive chunks moving through the pipeline: read, encode, write.
struct Batch {
  uint64_t first = 0;  // first chunk number
  uint64_t count = 0;  // chunks in the batch; 0 = none
  uint64_t bytes = 0;  // plain bytes
  std::vector<uint8_t> plain;
  std::vector<EncodedChunk> encoded;
  std::vector<uint32_t> crcs;
};

// Encodes one resource as its ZIP entry and returns its manifest entry and index bytes.
//
// A three-stage pipeline keeps the cores busy: while the chunks of batch N are encoded in
// parallel, one task hashes batch N's plain bytes (in order), one writes batch N-1's encoded
// chunks (in order) and one reads batch N+1. Each stage touches its own batch, and batches
// change hands only between parallel_for calls.
ResourceEntry write_resource(EncodeContext& ctx, const ResourceInput& in, uint32_t id,
                             std::vector<uint8_t>& index_bytes_out) {
  std::shared_ptr<const ByteSource> src = in.source ? in.source : open_file_source(in.file);
  const uint64_t size = in.source ? in.size : src->size();
  const uint64_t base = in.source ? in.offset : 0;
  ResourceEntry r;
  r.id = id;
  r.path = in.path;
  r.type = in.type ? *in.type : guess_resource_type(in.path);
  r.executable = in.executable;
  r.size = size;
  r.compression = in.compression ? *in.compression : ctx.options.compression;
  if (size == 0) r.compression = {Codec::kNone, 0};
  if (r.compression.codec == Codec::kNone) r.compression.level = 0;
  r.chunk_size = chunk_size_for(ctx.options.chunk_size, r.compression.codec);
  r.chunk_count = (size + r.chunk_size - 1) / r.chunk_size;
  r.encryption = size == 0 ? Cipher::kNone : in.encryption.value_or(ctx.options.encryption);
  const Codec codec = r.compression.codec;
  const uint64_t cs = r.chunk_size;
  const bool encrypted = r.encryption != Cipher::kNone;
  const Key256 key = encrypted ? resource_key(*ctx.data_key, ctx.package_id, id, r.path) : Key256{};
  // Encrypted resources are stored (method 0): other tools extract their ciphertext.
  const bool raw_plain = codec == Codec::kNone && !encrypted;
  if (raw_plain && size > 0) r.block_size = ctx.options.block_size;
  const uint64_t blocks_per_chunk = r.block_size == 0 ? 0 : cs / r.block_size;
  std::vector<uint8_t> block_hashes(static_cast<size_t>(r.block_count() * kBlockHashSize));

  ctx.zip.begin_entry(r.entry_name(), encrypted ? 0 : zip_method(codec), size >= kZip64Threshold,
                      raw_plain ? kStoredAlignment : 1);
  ChunkIndex index;
  index.resource_id = id;
  index.chunk_size = r.chunk_size;
  index.plain_size = size;
  index.stored_len.resize(r.chunk_count);
  index.leaf.resize(r.chunk_count);
  std::vector<XzBlockRecord> xz_blocks;
  Sha256 plain_hash;
  uint32_t crc = 0;
  uint64_t stored_total = 0;
  const uint64_t batch_chunks = chunks_per_batch(cs, kBatchBytes);

  const auto setup = [&](Batch& b, uint64_t first) {
    b.first = first;
    b.count = first < r.chunk_count ? std::min(batch_chunks, r.chunk_count - first) : 0;
    b.bytes = b.count == 0 ? 0 : std::min<uint64_t>(size - first * cs, b.count * cs);
    b.plain.resize(b.bytes);
    if (b.encoded.size() < b.count) b.encoded.resize(b.count);
    b.crcs.resize(b.count);
  };
  const auto read = [&](Batch& b) {
    if (b.count > 0) src->read_at(base + b.first * cs, b.plain);
  };
  const auto write = [&](Batch& b) {
    if (b.count == 0) return;
    if (raw_plain) {
      ctx.zip.write(b.plain);
      return;
    }
    for (uint64_t k = 0; k < b.count; ++k) ctx.zip.write(b.encoded[k].bytes);
  };
  // Seals (when encrypted) and hashes an encoded chunk; the CRC of an encrypted entry covers its
  // stored bytes, that of any other entry its plain bytes.
  const auto finish_chunk = [&](Batch& b, size_t k, uint32_t plain_len) {
    const uint64_t chunk = b.first + k;
    std::vector<uint8_t>& bytes = b.encoded[k].bytes;
    if (encrypted) {
      bytes = aead_encrypt(r.encryption, key, chunk_nonce(chunk, chunk + 1 == r.chunk_count),
                           chunk_aad(ctx.package_id, id, chunk, r.chunk_count, plain_len), bytes);
      b.crcs[k] = crc32_of(bytes);
    }
    index.leaf[chunk] = leaf_hash(ctx.package_id, id, chunk, plain_len, bytes);
  };
  const auto encode = [&](Batch& b, size_t k) {
    const uint64_t chunk = b.first + k;
    const auto piece =
        std::span<const uint8_t>(b.plain).subspan(k * cs, std::min<uint64_t>(cs, b.bytes - k * cs));
    const auto plain_len = static_cast<uint32_t>(piece.size());
    if (!encrypted) b.crcs[k] = crc32_of(piece);  // encrypted: over the sealed bytes, later
    const ChunkPlace place{chunk == 0, chunk + 1 == r.chunk_count};
    if (raw_plain && r.block_size != 0) {
      const auto hashes =
          std::span(block_hashes)
              .subspan(chunk * blocks_per_chunk * kBlockHashSize,
                       (plain_len + r.block_size - 1) / r.block_size * kBlockHashSize);
      hash_blocks(piece, r.block_size, hashes);
      index.leaf[chunk] = block_leaf_hash(ctx.package_id, id, chunk, plain_len, hashes);
      return;
    }
    if (raw_plain) {
      index.leaf[chunk] = leaf_hash(ctx.package_id, id, chunk, plain_len, piece);
      return;
    }
    encode_chunk(r.compression, piece, place, b.encoded[k]);
    // The last xz chunk is finished once the stream tail is appended.
    if (!(codec == Codec::kXz && place.last)) finish_chunk(b, k, plain_len);
  };
  // After a batch is encoded: sizes, CRC, and the xz tail, in chunk order.
  const auto account = [&](Batch& b) {
    for (uint64_t k = 0; k < b.count; ++k) {
      const uint64_t chunk = b.first + k;
      const uint64_t plain_len = std::min<uint64_t>(cs, b.bytes - k * cs);
      if (raw_plain) {
        crc = combine_crc32(crc, b.crcs[k], plain_len);
        index.stored_len[chunk] = static_cast<uint32_t>(plain_len);
        stored_total += plain_len;
        continue;
      }
      std::vector<uint8_t>& out = b.encoded[k].bytes;
      if (codec == Codec::kXz) {
        const uint64_t unpadded = b.encoded[k].xz_unpadded_size;
        xz_blocks.push_back({unpadded, plain_len});
        if (chunk + 1 == r.chunk_count) {
          const std::vector<uint8_t> tail = xz_stream_tail(xz_blocks);
          out.insert(out.end(), tail.begin(), tail.end());
          finish_chunk(b, k, static_cast<uint32_t>(plain_len));
        }
      }
      if (out.size() > UINT32_MAX) throw Error(ErrorKind::kIo, "encoded chunk too large");
      crc = combine_crc32(crc, b.crcs[k], encrypted ? out.size() : plain_len);
      index.stored_len[chunk] = static_cast<uint32_t>(out.size());
      stored_total += out.size();
    }
  };

  Batch previous, current, next;
  setup(current, 0);
  read(current);
  while (current.count > 0) {
    check_cancel(ctx.options);
    setup(next, current.first + current.count);
    const size_t tasks = current.count + 3;
    shared_thread_pool().parallel_for(tasks, [&](size_t k) {
      if (k < current.count) return encode(current, k);
      if (k == current.count) return plain_hash.update(current.plain);
      if (k == current.count + 1) return write(previous);
      read(next);
    });
    account(current);
    ctx.done_bytes += current.bytes;
    if (ctx.options.progress) ctx.options.progress(ctx.done_bytes, ctx.total_bytes);
    std::swap(previous, current);
    std::swap(current, next);
  }
  write(previous);
  ctx.zip.end_entry(crc, encrypted ? stored_total : size);
  if (r.block_size != 0) {
    ctx.zip.add_entry(r.blocks_entry_name(), 0, block_hashes, crc32_of(block_hashes),
                      block_hashes.size());
  }
  r.stored_size = stored_total;
  index.stored_size = stored_total;
  const Digest content_hash = plain_hash.finish();
  // The plain bytes' hash would let anyone confirm a guess of an encrypted resource.
  r.sha256 = encrypted ? "" : to_hex(content_hash);
  index_bytes_out = index.serialize();
  r.index_sha256 = to_hex(sha256(index_bytes_out));
  return r;
}

}  // namespace

PackageWriter::PackageWriter(Manifest header) : header_(std::move(header)) {
  if (!is_valid_package_name(header_.name)) {
    throw invalid_argument(
        "bad package name \"" + header_.name +
        "\" (letters, digits, '.', '_' and '-', starting with a letter or digit)");
  }
  if (!is_valid_semver(header_.version)) {
    throw invalid_argument("bad version \"" + header_.version +
                           "\" (a semantic version like 1.0.0)");
  }
}

PackageWriter::~PackageWriter() = default;

void PackageWriter::add_resource(ResourceInput input) {
  if (!is_normalized_path(input.path)) {
    throw invalid_argument(
        "bad resource path \"" + input.path +
        "\" (relative, '/'-separated, no '.', '..', empty parts or backslashes)");
  }
  if (const std::string problem = name_problem(input.path); !problem.empty()) {
    throw invalid_argument("resource path \"" + input.path + "\" " + problem);
  }
  for (const ResourceInput& other : inputs_) {
    if (other.path == input.path)
      throw invalid_argument("resource \"" + input.path + "\" added twice");
  }
  if (input.compression && !valid_level(input.compression->codec, input.compression->level)) {
    throw invalid_argument("bad compression level for " + input.path);
  }
  if (!input.source) {
    struct stat st {};
    if (::stat(input.file.c_str(), &st) != 0) {
      if (errno == ENOENT) throw not_found(input.file, "no such file");
      throw io_error(input.file, "cannot stat", errno);
    }
    if (!S_ISREG(st.st_mode)) throw invalid_argument(input.file + ": not a regular file");
    input.size = static_cast<uint64_t>(st.st_size);
    input.executable = input.executable || (st.st_mode & 0111) != 0;
  } else if (input.offset > input.source->size() ||
             input.size > input.source->size() - input.offset) {
    throw invalid_argument(input.path + ": source range out of bounds");
  }
  inputs_.push_back(std::move(input));
}

void PackageWriter::add_file(const std::string& path, const std::string& file,
                             std::optional<ResourceType> type,
                             std::optional<CodecSpec> compression) {
  ResourceInput in;
  in.path = path;
  in.file = file;
  in.type = type;
  in.compression = compression;
  add_resource(std::move(in));
}

void PackageWriter::add_bytes(const std::string& path, std::vector<uint8_t> bytes,
                              std::optional<ResourceType> type,
                              std::optional<CodecSpec> compression) {
  ResourceInput in;
  in.path = path;
  in.size = bytes.size();
  in.source = memory_source(std::move(bytes), path);
  in.type = type;
  in.compression = compression;
  add_resource(std::move(in));
}

void PackageWriter::add_dependency(Dependency d) {
  if (!is_valid_package_name(d.name))
    throw invalid_argument("bad dependency name \"" + d.name + "\"");
  if (!is_valid_version_req(d.version_req)) {
    throw invalid_argument("bad version requirement \"" + d.version_req + "\" for " + d.name);
  }
  for (const Dependency& other : dependencies_) {
    if (other.name == d.name) throw invalid_argument("dependency " + d.name + " added twice");
  }
  dependencies_.push_back(std::move(d));
}

Manifest PackageWriter::write(const std::string& out_path, const WriteOptions& options) {
  const uint32_t cs = chunk_size_for(options.chunk_size, Codec::kNone);
  if (cs < ManifestLimits::kMinChunkSize || cs > ManifestLimits::kMaxChunkSize || (cs & (cs - 1))) {
    throw invalid_argument("chunk size must be a power of two from 4096 to 67108864");
  }
  const uint32_t bs = options.block_size;
  if (bs != 0 && (bs < ManifestLimits::kMinBlockSize || (bs & (bs - 1)) || bs > cs)) {
    throw invalid_argument("block size must be 0 or a power of two from 4096 to the chunk size");
  }
  if (!valid_level(options.compression.codec, options.compression.level)) {
    throw invalid_argument("bad compression level");
  }
  Manifest m = header_;
  if (m.package_id.empty()) m.package_id = random_package_id();
  if (m.created.empty()) m.created = rfc3339(creation_time());
  m.resources.clear();
  m.dependencies.clear();
  m.key_slots.clear();
  // Catch path conflicts ("a" and "a/b") before writing anything.
  {
    std::set<std::string_view> paths;
    for (const ResourceInput& in : inputs_) paths.insert(in.path);
    for (const ResourceInput& in : inputs_) {
      for (size_t s = in.path.find('/'); s != std::string::npos; s = in.path.find('/', s + 1)) {
        if (paths.count(std::string_view(in.path).substr(0, s))) {
          throw invalid_argument("resource \"" + in.path + "\" lies under resource \"" +
                                 in.path.substr(0, s) + "\"");
        }
      }
    }
    // And names that differ only by case or Unicode normalization (docs/FORMAT.md 2.4).
    std::vector<std::string_view> all;
    for (const ResourceInput& in : inputs_) all.push_back(in.path);
    if (const auto pair = find_case_collision(all)) {
      throw invalid_argument("resource \"" + pair->second + "\" differs from \"" + pair->first +
                             "\" only by case or Unicode normalization");
    }
  }
  uint8_t package_id[16];
  if (!from_hex(m.package_id, package_id)) throw invalid_argument("bad package id");
  uint32_t dos_time = 0;
  uint16_t dos_date = 0;
  dos_time_of(m.created, dos_time, dos_date);

  for (ResourceInput& in : inputs_) {
    if (!in.compression && rule_) in.compression = rule_(in.path);
    if (!in.encryption && encryption_rule_) in.encryption = encryption_rule_(in.path);
    if (in.size == 0) in.encryption = Cipher::kNone;
  }
  // Encryption: a random data key, wrapped once per secret.
  const bool any_encrypted =
      std::any_of(inputs_.begin(), inputs_.end(), [&](const ResourceInput& in) {
        return in.encryption.value_or(options.encryption) != Cipher::kNone && in.size > 0;
      });
  Key256 data_key{};
  if (any_encrypted) {
    if (options.secrets.empty()) {
      throw invalid_argument("encryption needs a password file or a key file");
    }
    random_bytes(data_key);
    for (size_t i = 0; i < options.secrets.size(); ++i) {
      m.key_slots.push_back(make_key_slot(data_key, options.secrets[i],
                                          std::span<const uint8_t, 16>(package_id),
                                          static_cast<uint32_t>(i), options.argon2));
    }
  }
  AtomicFile temp(out_path);
  ZipWriter zip(temp.fd(), out_path, dos_time, dos_date);
  uint64_t total = 0;
  for (const ResourceInput& in : inputs_) total += in.size;
  EncodeContext ctx{out_path,
                    zip,
                    std::span<const uint8_t, 16>(package_id),
                    options,
                    any_encrypted ? &data_key : nullptr,
                    total};
  std::vector<std::vector<uint8_t>> indexes(inputs_.size());
  for (size_t i = 0; i < inputs_.size(); ++i) {
    m.resources.push_back(write_resource(ctx, inputs_[i], static_cast<uint32_t>(i), indexes[i]));
  }
  check_cancel(options);
  for (Dependency d : dependencies_) {
    const std::string json = dependency_file_json(d);
    const auto bytes = std::span(reinterpret_cast<const uint8_t*>(json.data()), json.size());
    d.file_size = json.size();
    d.file_sha256 = to_hex(sha256(bytes));
    zip.add_entry(d.entry_name(), 0, bytes, crc32_of(bytes), bytes.size());
    m.dependencies.push_back(std::move(d));
  }
  for (size_t i = 0; i < indexes.size(); ++i) {
    zip.add_entry(m.resources[i].index_entry_name(), 0, indexes[i], crc32_of(indexes[i]),
                  indexes[i].size());
  }
  validate_manifest(m);
  const std::string manifest_json = serialize_manifest(m);
  const auto manifest_bytes =
      std::span(reinterpret_cast<const uint8_t*>(manifest_json.data()), manifest_json.size());
  zip.add_entry("manifest.json", 0, manifest_bytes, crc32_of(manifest_bytes),
                manifest_bytes.size());
  if (options.sign_key != nullptr) {
    const Signature signature = sign_manifest(*options.sign_key, manifest_json);
    const std::string envelope = serialize_signature_entry(signature);
    const auto bytes =
        std::span(reinterpret_cast<const uint8_t*>(envelope.data()), envelope.size());
    zip.add_entry(signature_entry_name(signature.key_id), 0, bytes, crc32_of(bytes), bytes.size());
  }
  zip.finish();
  check_cancel(options);
  temp.commit();
  return m;
}

}  // namespace torshpkg
