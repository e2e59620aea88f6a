// Writing manifest.json: canonical bytes (jsoncpp: keys sorted, two-space indentation, UTF-8,
// a trailing newline), and the files of dependencies/.
#include <json/json.h>

#include <algorithm>

#include "torshpkg/manifest.h"

namespace torshpkg {
namespace {

Json::Value string_map_json(const std::map<std::string, std::string>& map) {
  Json::Value v(Json::objectValue);
  for (const auto& [k, val] : map) v[k] = val;
  return v;
}

// The fields a dependency is declared with (its file holds exactly these).
Json::Value dependency_json(const Dependency& d) {
  Json::Value v(Json::objectValue);
  v["name"] = d.name;
  v["version_req"] = d.version_req;
  v["optional"] = d.optional;
  Json::Value features(Json::arrayValue);
  for (const std::string& f : d.features) features.append(f);
  v["features"] = features;
  return v;
}

Json::Value manifest_to_json(const Manifest& m) {
  Json::Value root(Json::objectValue);
  root["format"] = "torshpkg";
  const bool any_executable = std::any_of(m.resources.begin(), m.resources.end(),
                                          [](const ResourceEntry& r) { return r.executable; });
  const bool any_blocks = std::any_of(m.resources.begin(), m.resources.end(),
                                      [](const ResourceEntry& r) { return r.block_size != 0; });
  root["format_version"] = any_blocks       ? std::max(m.format_version, 3)
                           : any_executable ? std::max(m.format_version, 2)
                                            : m.format_version;
  root["package_id"] = m.package_id;
  root["name"] = m.name;
  root["version"] = m.version;
  root["description"] = m.description;
  root["author"] = m.author;
  root["license"] = m.license;
  root["created"] = m.created;
  root["metadata"] = string_map_json(m.metadata);
  Json::Value resources(Json::arrayValue);
  for (const ResourceEntry& r : m.resources) {
    Json::Value v(Json::objectValue);
    v["id"] = r.id;
    v["path"] = r.path;
    v["type"] = std::string(to_string(r.type));
    v["size"] = Json::UInt64(r.size);
    v["stored_size"] = Json::UInt64(r.stored_size);
    v["compression"] = std::string(codec_name(r.compression.codec));
    v["compression_level"] = r.compression.level;
    v["chunk_size"] = r.chunk_size;
    v["chunk_count"] = Json::UInt64(r.chunk_count);
    v["encryption"] = std::string(cipher_name(r.encryption));
    v["sha256"] = r.sha256;
    v["index_sha256"] = r.index_sha256;
    if (r.executable) v["executable"] = true;
    if (r.block_size != 0) v["block_size"] = r.block_size;
    resources.append(v);
  }
  root["resources"] = resources;
  Json::Value deps(Json::arrayValue);
  for (const Dependency& d : m.dependencies) {
    Json::Value v = dependency_json(d);
    v["file_size"] = Json::UInt64(d.file_size);
    v["file_sha256"] = d.file_sha256;
    deps.append(v);
  }
  root["dependencies"] = deps;
  Json::Value lineage(Json::arrayValue);
  for (const LineageRecord& l : m.lineage) {
    Json::Value v(Json::objectValue);
    v["relation"] = l.relation;
    v["parent"] = l.parent;
    v["description"] = l.description;
    v["provenance"] = string_map_json(l.provenance);
    lineage.append(v);
  }
  root["lineage"] = lineage;
  if (!m.key_slots.empty()) {
    Json::Value slots(Json::arrayValue);
    for (const KeySlot& k : m.key_slots) {
      Json::Value v(Json::objectValue);
      v["type"] = k.type;
      if (k.type == "password") {
        v["kdf"] = "argon2id";
        v["time_cost"] = k.time_cost;
        v["memory_kib"] = k.memory_kib;
        v["parallelism"] = k.parallelism;
      } else {
        v["kdf"] = "hkdf-sha256";
      }
      v["salt"] = k.salt;
      v["nonce"] = k.nonce;
      v["wrapped_key"] = k.wrapped_key;
      slots.append(v);
    }
    root["encryption"]["key_slots"] = slots;
  }
  return root;
}

std::string write_json(const Json::Value& v) {
  Json::StreamWriterBuilder builder;
  builder["indentation"] = "  ";
  builder["emitUTF8"] = true;
  builder["commentStyle"] = "None";
  return Json::writeString(builder, v) + "\n";
}

}  // namespace

std::string serialize_manifest(const Manifest& manifest) {
  return write_json(manifest_to_json(manifest));
}

std::string dependency_file_json(const Dependency& d) {
  return write_json(dependency_json(d));
}

}  // namespace torshpkg
