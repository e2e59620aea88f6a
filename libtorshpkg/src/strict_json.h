// Strict JSON parsing shared by the manifest and signature parsers: RFC 8259 only (no comments,
// no trailing commas or data, no duplicate keys), bounded nesting.
#pragma once

#include <json/json.h>

#include <string>
#include <string_view>

namespace torshpkg {

// Returns false with a one-line reason in `error` when `text` is not strict JSON.
bool parse_strict_json(std::string_view text, int max_depth, Json::Value& out, std::string& error);

}  // namespace torshpkg
