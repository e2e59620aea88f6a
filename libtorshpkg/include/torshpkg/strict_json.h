// Strict JSON parsing for every JSON torshpkg reads (manifests, signatures, journals, safetensors
// headers, the daemon's config and control requests): RFC 8259 only (no comments, no trailing
// commas or data, no duplicate keys), valid UTF-8, bounded nesting. Exposes jsoncpp's Json::Value.
#pragma once

#include <json/json.h>

#include <string>
#include <string_view>

namespace torshpkg {

// Returns false with a one-line reason in `error` when `text` is not strict JSON.
bool parse_strict_json(std::string_view text, int max_depth, Json::Value& out, std::string& error);

}  // namespace torshpkg
