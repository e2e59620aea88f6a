// A small HTTP client over libcurl for registry and mirror traffic: one request at a time per
// HttpClient, bodies sent from memory or a file range, received into memory or streamed to a
// sink, redirects followed (registries redirect blob downloads), timeouts on connect and on
// stalls. Errors that are not HTTP statuses (DNS, refused, TLS, timeouts) throw Error(kIo)
// naming the URL; an HTTP status is returned for the caller to judge.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "torshpkg/byte_source.h"

namespace torshpkg::distribution {

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  // The body: bytes in memory, or [offset, offset + size) of a source.
  std::span<const uint8_t> body;
  std::shared_ptr<const ByteSource> body_source;
  uint64_t body_offset = 0;
  uint64_t body_size = 0;
  // Receives the response body as it arrives (instead of HttpResponse::body); return false to
  // abort the transfer.
  std::function<bool(std::span<const uint8_t>)> sink;
  // Called once with the status, before the sink gets the first byte of a response.
  std::function<void(long status)> on_status;
  // Called with bytes moved so far (either direction) and the total when known.
  std::function<void(uint64_t done, uint64_t total)> progress;
  uint64_t max_body = 64u << 20;  // for responses kept in memory
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names; the last of each
  std::string body;
  std::string effective_url;
  std::string header(const std::string& name) const;
};

struct HttpOptions {
  long connect_timeout_s = 10;
  long stall_timeout_s = 30;  // abort when under 1 byte/s for this long
  bool insecure_tls = false;  // skip certificate checks (--insecure)
};

class HttpClient {
 public:
  explicit HttpClient(HttpOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  HttpResponse send(const HttpRequest& request);

 private:
  HttpOptions options_;
  void* curl_;  // CURL*
};

}  // namespace torshpkg::distribution
