// Downloading a package over plain HTTP(S) from any web server or CDN, from an ordered list of
// mirrors, resuming interrupted downloads.
//
// Sources are tried in order: each mirror (a base URL whose scheme, host and port replace the
// origin's; the path stays), then the origin itself. Each source gets `attempts` tries with
// exponential backoff on transport errors and 5xx statuses; connect and stall timeouts come from
// HttpOptions. The download goes to OUT.part: when it exists, the request asks for the rest
// (Range), and a server that answers 200 instead restarts it. When it is complete the bytes are
// checked (the expected SHA-256 when one is given, and always that they open as a package whose
// every chunk verifies); a source that served wrong bytes is reported, its bytes dropped, and the
// next source tried. OUT appears, renamed from OUT.part, only once the bytes are checked.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "http.h"

namespace torshpkg::distribution {

struct HttpPullOptions {
  std::vector<std::string> mirrors;  // base URLs tried before the origin
  std::string sha256;                // expected hex digest; empty: the package's own checks only
  int attempts = 3;
  double backoff_seconds = 0.5;  // doubled after each failed try
  HttpOptions http;
  std::function<void(uint64_t done, uint64_t total)> progress;
  std::function<void(const std::string& message)> warn;  // skipped sources, retries
};

struct HttpPullResult {
  std::string url;  // the source that served the bytes kept
  std::string sha256;
  uint64_t size = 0;
  uint64_t resumed_from = 0;  // bytes already in OUT.part when the last request started
};

// Throws the last source's error when none served good bytes: Error(kCorrupt) when bytes were
// wrong, Error(kNotFound) for 404s, Error(kIo) otherwise.
HttpPullResult http_pull(const std::string& url, const std::string& out,
                         const HttpPullOptions& options);

}  // namespace torshpkg::distribution
