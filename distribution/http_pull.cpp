#include "http_pull.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "mirrors.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/package.h"
#include "torshpkg/sha256.h"

namespace torshpkg::distribution {
namespace {

// "scheme://host[:port]" of a URL, and the rest (path and query).
uint64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// One request for the rest of `part` (all of it when the server ignores the range).
void fetch_rest(HttpClient& http, const std::string& url, const std::string& part,
                const HttpPullOptions& options, uint64_t& resumed_from) {
  resumed_from = file_size(part);
  UniqueFd out(::open(part.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!out) throw io_error(part, "cannot open", errno);
  const int fd = out.get();
  HttpRequest get;
  get.url = url;
  if (resumed_from > 0) get.headers.push_back("Range: bytes=" + std::to_string(resumed_from) + "-");
  bool restarted = false;
  get.on_status = [&](long status) {
    if (status == 200 && resumed_from > 0) {  // the server ignored the range: start over
      if (::ftruncate(fd, 0) != 0) throw io_error(part, "cannot truncate", errno);
      restarted = true;
    }
  };
  get.sink = [&](std::span<const uint8_t> data) {
    for (size_t at = 0; at < data.size();) {
      const ssize_t n = ::write(fd, data.data() + at, data.size() - at);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw io_error(part, "write failed", errno);
      at += static_cast<size_t>(n);
    }
    return true;
  };
  get.progress = [&](uint64_t done, uint64_t all) {
    const uint64_t base = restarted ? 0 : resumed_from;
    if (options.progress) options.progress(base + done, base + all);
  };
  const HttpResponse response = http.send(get);
  if (response.status == 416) return;  // nothing left to send: the part is whole
  // A client error other than a timeout or a rate limit will not change on retry.
  if (response.status >= 400 && response.status < 500 && response.status != 408 &&
      response.status != 429) {
    throw Error(ErrorKind::kNotFound, url + ": HTTP " + std::to_string(response.status));
  }
  if (response.status != 200 && response.status != 206) {
    throw Error(ErrorKind::kIo, url + ": HTTP " + std::to_string(response.status));
  }
}

}  // namespace

HttpPullResult http_pull(const std::string& url, const std::string& out,
                         const HttpPullOptions& options) {
  const std::vector<std::string> sources = mirror_sources(url, options.mirrors);
  const std::string part = out + ".part";
  HttpClient http(options.http);
  std::exception_ptr last;
  for (size_t index = 0; index < sources.size(); ++index) {
    const std::string& source = sources[index];
    const bool last_source = index + 1 == sources.size();
    double wait = options.backoff_seconds;
    for (int attempt = 1; attempt <= std::max(1, options.attempts); ++attempt) {
      HttpPullResult result;
      result.url = source;
      try {
        fetch_rest(http, source, part, options, result.resumed_from);
        result.size = file_size(part);
        result.sha256 = sha256_hex(*open_file_source(part));
        if (!options.sha256.empty() && result.sha256 != options.sha256) {
          throw corrupt(source, "served bytes with SHA-256 " + result.sha256 + ", expected " +
                                    options.sha256);
        }
        Package::open(part)->verify(true);  // the package's own integrity, chunk by chunk
        if (::rename(part.c_str(), out.c_str()) != 0) {
          throw io_error(out, "cannot rename into place", errno);
        }
        return result;
      } catch (const Error& e) {
        last = std::current_exception();
        if (e.kind() == ErrorKind::kCorrupt || e.kind() == ErrorKind::kUnsupported) {
          // Wrong bytes: drop them and move on to the next source.
          ::unlink(part.c_str());
          if (options.warn && !last_source) {
            options.warn(source + ": wrong bytes, skipped (" + e.what() + ")");
          }
          break;
        }
        if (e.kind() == ErrorKind::kNotFound) {
          if (options.warn && !last_source) options.warn(std::string(e.what()) + ", skipped");
          break;
        }
        if (attempt == options.attempts) break;
        if (options.warn) {
          options.warn(std::string(e.what()) + "; retrying");
        }
        std::this_thread::sleep_for(std::chrono::duration<double>(wait));
        wait *= 2;
      }
    }
  }
  std::rethrow_exception(last);
}

}  // namespace torshpkg::distribution
