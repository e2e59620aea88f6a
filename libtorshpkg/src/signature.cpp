#include "torshpkg/signature.h"

#include <json/json.h>

#include <algorithm>
#include <memory>

#include "crc32.h"
#include "torshpkg/base64.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/package.h"
#include "torshpkg/sha256.h"
#include "torshpkg/strict_json.h"
#include "zip_reader.h"
#include "zip_writer.h"

namespace torshpkg {
namespace {

constexpr size_t kEd25519SignatureSize = 64;

}  // namespace

std::vector<uint8_t> dsse_pae(std::string_view payload_type, std::string_view payload) {
  std::string out = "DSSEv1 " + std::to_string(payload_type.size()) + " " +
                    std::string(payload_type) + " " + std::to_string(payload.size()) + " ";
  out.append(payload);
  return std::vector<uint8_t>(out.begin(), out.end());
}

std::string signature_entry_name(const std::string& key_id) {
  return std::string(kSignaturePrefix) + key_id + ".sig";
}

bool is_signature_entry_name(std::string_view name, std::string* key_id) {
  if (!name.starts_with(kSignaturePrefix) || !name.ends_with(".sig")) return false;
  const std::string_view id =
      name.substr(kSignaturePrefix.size(), name.size() - kSignaturePrefix.size() - 4);
  if (!digest_from_hex(id)) return false;
  if (key_id != nullptr) *key_id = std::string(id);
  return true;
}

std::string serialize_signature_entry(const Signature& s) {
  Json::Value sig(Json::objectValue);
  sig["keyid"] = s.key_id;
  sig["sig"] = base64_encode(s.sig);
  Json::Value root(Json::objectValue);
  root["payloadType"] = std::string(kManifestPayloadType);
  root["signatures"] = Json::Value(Json::arrayValue);
  root["signatures"].append(sig);
  Json::StreamWriterBuilder b;
  b["indentation"] = "  ";
  return Json::writeString(b, root) + "\n";
}

Signature parse_signature_entry(std::string_view bytes, std::string_view file,
                                std::string_view entry) {
  const auto bad = [&](const std::string& why) {
    return corrupt(file, std::string(entry) + ": " + why);
  };
  if (bytes.size() > 64 * 1024) throw bad("signature entry too large");
  const Json::Value root = parse_strict_json(bytes, 8, [&](const std::string& why) {
    return bad("not a valid signature envelope: " + why);
  });
  if (!root.isObject()) throw bad("not a valid signature envelope");
  const auto members = root.getMemberNames();
  if (members != std::vector<std::string>{"payloadType", "signatures"}) {
    throw bad("signature envelope must have exactly payloadType and signatures");
  }
  if (!root["payloadType"].isString() || root["payloadType"].asString() != kManifestPayloadType) {
    throw bad("unknown payload type");
  }
  const Json::Value& sigs = root["signatures"];
  if (!sigs.isArray() || sigs.size() != 1 || !sigs[0].isObject() ||
      sigs[0].getMemberNames() != std::vector<std::string>{"keyid", "sig"} ||
      !sigs[0]["keyid"].isString() || !sigs[0]["sig"].isString()) {
    throw bad("signature envelope must hold one {keyid, sig}");
  }
  Signature s;
  s.key_id = sigs[0]["keyid"].asString();
  if (!digest_from_hex(s.key_id)) throw bad("key id must be 64 lowercase hex digits");
  auto sig = base64_decode(sigs[0]["sig"].asString(), Base64::kCanonical);
  if (sig) s.sig = std::move(*sig);
  if (!sig || s.sig.size() != kEd25519SignatureSize) {
    throw bad("signature must be 64 bytes in canonical base64");
  }
  return s;
}

Signature sign_manifest(const PrivateKey& key, std::string_view manifest_bytes) {
  return {key.public_key().key_id(), key.sign(dsse_pae(kManifestPayloadType, manifest_bytes))};
}

void sign_package(const std::string& path, const PrivateKey& key) {
  const auto package = Package::open(path);
  const Signature signature = sign_manifest(key, package->manifest_bytes());
  const std::string entry_bytes = serialize_signature_entry(signature);
  const std::string own_entry = signature_entry_name(signature.key_id);

  const auto source = open_file_source(path);
  std::vector<ZipEntry> entries = read_zip_directory(*source);
  std::sort(entries.begin(), entries.end(), [](const ZipEntry& a, const ZipEntry& b) {
    return a.local_header_offset < b.local_header_offset;
  });
  AtomicFile out(path);
  uint32_t dos_time = 0;
  uint16_t dos_date = 0;
  dos_time_of(package->manifest().created, dos_time, dos_date);
  ZipWriter zip(out.fd(), path, dos_time, dos_date);
  for (const ZipEntry& e : entries) {
    if (e.name != own_entry) zip.copy_entry(e, *source);
  }
  const auto bytes =
      std::span(reinterpret_cast<const uint8_t*>(entry_bytes.data()), entry_bytes.size());
  zip.add_entry(own_entry, 0, bytes, crc32_of(bytes), bytes.size());
  zip.finish();
  out.commit();
}

std::string verify_trusted_signature(const Package& package, const TrustedKeys& trusted,
                                     const std::string& required_key) {
  const std::string& file = package.file_name();
  const std::vector<Signature>& signatures = package.signatures();
  if (signatures.empty()) {
    throw Error(ErrorKind::kBadSignature,
                file + ": unsigned package (a signature by a trusted key is required)");
  }
  if (!required_key.empty() && trusted.find(required_key) == nullptr) {
    throw Error(ErrorKind::kBadSignature,
                file + ": required key " + required_key + " is not a trusted key here");
  }
  const std::vector<uint8_t> pae = dsse_pae(kManifestPayloadType, package.manifest_bytes());
  std::vector<std::string> unknown, failed;
  for (const Signature& s : signatures) {
    if (!required_key.empty() && s.key_id != required_key) {
      unknown.push_back(s.key_id);
      continue;
    }
    const PublicKey* key = trusted.find(s.key_id);
    if (key == nullptr) {
      unknown.push_back(s.key_id);
    } else if (key->verify(pae, s.sig)) {
      return s.key_id;
    } else {
      failed.push_back(s.key_id);
    }
  }
  if (!failed.empty()) {
    throw Error(ErrorKind::kBadSignature,
                file + ": bad signature: the signature by trusted key " + failed.front() +
                    " does not verify (manifest edited or signature damaged)");
  }
  std::string ids;
  for (const std::string& id : unknown) ids += (ids.empty() ? "" : ", ") + id;
  if (!required_key.empty()) {
    throw Error(ErrorKind::kBadSignature,
                file + ": not signed by the required key " + required_key + " (signed by: " + ids +
                    ")");
  }
  throw Error(ErrorKind::kBadSignature, file + ": signed only by unknown keys: " + ids);
}

}  // namespace torshpkg
