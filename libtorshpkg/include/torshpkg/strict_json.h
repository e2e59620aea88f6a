// Strict JSON parsing for every JSON torshpkg reads (manifests, signatures, journals, safetensors
// headers, the daemon's config and control requests): RFC 8259 only (no comments, no trailing
// commas or data, no duplicate keys), valid UTF-8, bounded nesting. Exposes jsoncpp's Json::Value.
#pragma once

#include <json/json.h>

#include <functional>
#include <string>
#include <string_view>

#include "torshpkg/error.h"

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

// The value `text` holds. When it is not strict JSON, throws the Error that `error` makes of a
// one-line reason (the caller names the file and picks the kind: corrupt for a package's
// entries, invalid argument for a config file or a request).
Json::Value parse_strict_json(std::string_view text, int max_depth,
                              const std::function<Error(const std::string& reason)>& error);

}  // namespace torshpkg

#pragma GCC visibility pop
