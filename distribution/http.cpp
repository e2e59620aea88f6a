#include "http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <string>

#include "torshpkg/dynamic_library.h"
#include "torshpkg/error.h"

namespace torshpkg::distribution {
namespace {

// libcurl, loaded when the first HTTP client is made. Linking it would load it and the twenty
// libraries it needs (Kerberos, LDAP, SSH, ...) into every process: 7 ms more at each start of
// the CLI and the daemon, most of whose commands never use the network.
struct CurlApi {
  CURLcode (*global_init)(long flags);
  CURL* (*easy_init)();
  void (*easy_cleanup)(CURL* curl);
  void (*easy_reset)(CURL* curl);
  CURLcode (*easy_setopt)(CURL* curl, CURLoption option, ...);
  CURLcode (*easy_perform)(CURL* curl);
  CURLcode (*easy_getinfo)(CURL* curl, CURLINFO info, ...);
  const char* (*easy_strerror)(CURLcode code);
  curl_slist* (*slist_append)(curl_slist* list, const char* text);
  void (*slist_free_all)(curl_slist* list);
};

const CurlApi& curl_api() {
  // The GnuTLS flavour first (what Debian's libcurl4-gnutls-dev builds against), then the
  // default.
  static DynamicLibrary lib({"libcurl-gnutls.so.4", "libcurl.so.4"},
                            "HTTP needs libcurl (libcurl-gnutls.so.4 or libcurl.so.4), which "
                            "cannot be loaded: install libcurl3-gnutls");
  static const CurlApi loaded = [] {
    CurlApi api{};
    lib.bind(api.global_init, "curl_global_init");
    lib.bind(api.easy_init, "curl_easy_init");
    lib.bind(api.easy_cleanup, "curl_easy_cleanup");
    lib.bind(api.easy_reset, "curl_easy_reset");
    lib.bind(api.easy_setopt, "curl_easy_setopt");
    lib.bind(api.easy_perform, "curl_easy_perform");
    lib.bind(api.easy_getinfo, "curl_easy_getinfo");
    lib.bind(api.easy_strerror, "curl_easy_strerror");
    lib.bind(api.slist_append, "curl_slist_append");
    lib.bind(api.slist_free_all, "curl_slist_free_all");
    if (lib.usable()) api.global_init(CURL_GLOBAL_DEFAULT);
    return api;
  }();
  lib.check();
  return loaded;
}

struct Transfer {
  CURL* curl = nullptr;
  const HttpRequest* request = nullptr;
  HttpResponse* response = nullptr;
  uint64_t sent = 0;
  bool too_large = false;
  bool sink_stopped = false;
  bool started = false;
  std::exception_ptr error;
};

// The one way a libcurl callback runs its body: whatever the body throws is kept for send() to
// rethrow (the first error wins) and libcurl is told to stop with `abort`, so no exception
// unwinds through libcurl's C frames.
template <typename R, typename Body>
R guarded(Transfer* t, R abort, const Body& body) noexcept {
  try {
    return body();
  } catch (...) {
    if (!t->error) t->error = std::current_exception();
    return abort;
  }
}

size_t take_header(Transfer* t, const char* data, size_t n) {
  const std::string line(data, n);
  if (line.starts_with("HTTP/")) t->response->headers.clear();  // a new response (redirects)
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
    while (!value.empty() &&
           (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
      value.pop_back();
    }
    t->response->headers[name] = value;
  }
  return n;
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  return guarded(t, size_t{0}, [&] { return take_header(t, data, size * count); });
}

size_t take_body(Transfer* t, const char* data, size_t n) {
  // Bodies of error statuses go to memory (their message), whatever the sink.
  long status = 0;
  curl_api().easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (t->request->sink && status < 300) {
    if (!t->started) {
      t->started = true;
      if (t->request->on_status) t->request->on_status(status);
    }
    if (!t->request->sink(std::span(reinterpret_cast<const uint8_t*>(data), n))) {
      t->sink_stopped = true;
      return 0;
    }
    return n;
  }
  const uint64_t limit = t->request->sink ? 1u << 20 : t->request->max_body;
  if (t->response->body.size() + n > limit) {
    t->too_large = true;
    return 0;
  }
  t->response->body.append(data, n);
  return n;
}

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  return guarded(t, size_t{0}, [&] { return take_body(t, data, size * count); });
}

size_t on_read(char* buffer, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  return guarded(t, size_t{CURL_READFUNC_ABORT}, [&]() -> size_t {
    const HttpRequest& r = *t->request;
    const uint64_t total = r.body_source ? r.body_size : r.body.size();
    const size_t n = static_cast<size_t>(std::min<uint64_t>(size * count, total - t->sent));
    if (n == 0) return 0;
    if (r.body_source) {
      r.body_source->read_at(r.body_offset + t->sent,
                             std::span(reinterpret_cast<uint8_t*>(buffer), n));
    } else {
      std::copy_n(r.body.data() + t->sent, n, buffer);
    }
    t->sent += n;
    return n;
  });
}

int on_progress(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                curl_off_t ulnow) {
  auto* t = static_cast<Transfer*>(user);
  return guarded(t, 1, [&] {
    if (!t->request->progress) return 0;
    if (ultotal > 0) {
      t->request->progress(static_cast<uint64_t>(ulnow), static_cast<uint64_t>(ultotal));
    } else if (dlnow > 0) {
      t->request->progress(static_cast<uint64_t>(dlnow),
                           static_cast<uint64_t>(std::max<curl_off_t>(dltotal, 0)));
    }
    return 0;
  });
}

}  // namespace

std::string HttpResponse::header(const std::string& name) const {
  const auto it = headers.find(name);
  return it == headers.end() ? "" : it->second;
}

HttpClient::HttpClient(HttpOptions options) : options_(options) {
  curl_ = curl_api().easy_init();
  if (curl_ == nullptr) throw Error(ErrorKind::kIo, "curl: cannot initialize");
}

HttpClient::~HttpClient() {
  curl_api().easy_cleanup(static_cast<CURL*>(curl_));
}

HttpResponse HttpClient::send(const HttpRequest& request) {
  const CurlApi& api = curl_api();
  CURL* c = static_cast<CURL*>(curl_);
  api.easy_reset(c);
  HttpResponse response;
  Transfer t;
  t.curl = c;
  t.request = &request;
  t.response = &response;
  api.easy_setopt(c, CURLOPT_URL, request.url.c_str());
  api.easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  api.easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  api.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  api.easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  api.easy_setopt(c, CURLOPT_CONNECTTIMEOUT, options_.connect_timeout_s);
  api.easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  api.easy_setopt(c, CURLOPT_LOW_SPEED_TIME, options_.stall_timeout_s);
  api.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  api.easy_setopt(c, CURLOPT_USERAGENT, "torshpkg/" TORSHPKG_VERSION);
  if (options_.insecure_tls) {
    api.easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    api.easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  api.easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  api.easy_setopt(c, CURLOPT_HEADERDATA, &t);
  api.easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  api.easy_setopt(c, CURLOPT_WRITEDATA, &t);
  api.easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  api.easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  api.easy_setopt(c, CURLOPT_NOPROGRESS, request.progress ? 0L : 1L);
  const bool has_body = request.body_source || !request.body.empty();
  const uint64_t body_size = request.body_source ? request.body_size : request.body.size();
  if (request.method == "HEAD") {
    api.easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (request.method != "GET" || has_body) {
    api.easy_setopt(c, CURLOPT_UPLOAD, 1L);
    api.easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    api.easy_setopt(c, CURLOPT_READDATA, &t);
    api.easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body_size));
    api.easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  curl_slist* headers = nullptr;
  for (const std::string& h : request.headers) headers = api.slist_append(headers, h.c_str());
  headers = api.slist_append(headers, "Expect:");  // no 100-continue round trip
  api.easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  const CURLcode rc = api.easy_perform(c);
  api.slist_free_all(headers);
  if (t.error) std::rethrow_exception(t.error);
  if (t.too_large) {
    throw Error(ErrorKind::kIo, request.url + ": response larger than " +
                                    std::to_string(request.max_body) + " bytes");
  }
  if (rc != CURLE_OK && !t.sink_stopped) {
    throw Error(ErrorKind::kIo, request.url + ": " + api.easy_strerror(rc));
  }
  api.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  char* effective = nullptr;
  api.easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &effective);
  if (effective != nullptr) response.effective_url = effective;
  return response;
}

}  // namespace torshpkg::distribution
