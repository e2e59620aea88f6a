// A package on a web server as a ByteSource: every read is an HTTP range request, so a package
// can be opened and mounted without being downloaded first. Package::open and the filesystem
// verify every chunk as they do for a local file; this source only moves bytes.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "http.h"
#include "torshpkg/byte_source.h"

namespace torshpkg::distribution {

struct RemoteSourceOptions {
  // Requests in flight at once (each on its own kept-alive connection).
  unsigned connections = 8;
  // Tries of one read before it fails with Error(kIo); between them 0.25 s, 0.5 s, 1 s, ...
  unsigned attempts = 3;
  // The package's last bytes, fetched by the first request: the ZIP directory, the manifest and
  // the signature entries of most packages, so that opening takes one round trip.
  uint64_t tail_bytes = 1u << 20;
  // Bytes fetched ahead and not read yet, at most: on a reader's announcement (advise
  // kWillNeed: the ZIP reader's local headers, the filesystem's readahead; windows of at most
  // prefetch_window bytes), and ahead of sequential reads (readahead_bytes past the last read,
  // in windows of readahead_window bytes, one request each). 0 readahead_bytes: none.
  uint64_t prefetch_bytes = 16u << 20;
  uint64_t prefetch_window = 16u << 20;
  uint64_t readahead_bytes = 8u << 20;
  uint64_t readahead_window = 2u << 20;
  // Sent with every request ("Authorization: Bearer ..." for a registry's blob).
  std::vector<std::string> headers;
  // Called when a server answers 401: new headers to send instead (a fresh token); empty
  // function: a 401 is an error.
  std::function<std::vector<std::string>()> reauthorize;
  // Per attempt: connecting, and a transfer under 1 byte/s for this long.
  HttpOptions http{.connect_timeout_s = 5, .stall_timeout_s = 10, .insecure_tls = false};
};

// What a remote source has done, for `torshpkg status` and tests.
struct RemoteStats {
  std::atomic<uint64_t> requests{0};       // range requests sent, the first one included
  std::atomic<uint64_t> bytes{0};          // body bytes received
  std::atomic<uint64_t> retries{0};        // attempts after a failed one
  std::atomic<uint64_t> tail_hits{0};      // reads served from the fetched tail
  std::atomic<uint64_t> prefetch_hits{0};  // reads served from bytes fetched ahead
  std::atomic<uint64_t> other_copies{0};   // reads of another copy: the first one's bytes were
                                           // wrong (failed the package's hash)
  std::atomic<uint64_t> failovers{0};      // reads that went to the next copy after failing
};

// True for the URLs open_remote_source takes: http:// and https://.
bool is_remote_url(const std::string& source);

class RemoteSource;

// Opens `url` with one range request for its tail. The server must answer range requests: a
// 200 to one (or a 206 that is not the range asked for) is Error(kUnsupported) with one line;
// a URL that is not there, Error(kNotFound); a network failure after the attempts, Error(kIo).
std::shared_ptr<RemoteSource> open_remote_source(const std::string& url,
                                                 const RemoteSourceOptions& options = {});
// The same for copies of one file, in order (mirrors, then the origin: mirror_sources): the
// first that opens is the first choice, read from unless a read fails (then the next copies)
// or its bytes fail the package's hash (ReadOptions::copy: the package asks another copy).
// Errors name the last URL, the origin.
std::shared_ptr<RemoteSource> open_remote_source(const std::vector<std::string>& urls,
                                                 const RemoteSourceOptions& options = {});

class RemoteSource final : public ByteSource {
 public:
  ~RemoteSource() override;
  uint64_t size() const override;
  const std::string& name() const override;
  // One range request per call (after the attempts: Error(kIo) naming the URL and the reason).
  // The bytes are not checked here: the package's hashes do that.
  void read_at(uint64_t offset, std::span<uint8_t> out, ReadOptions options = {}) const override;
  // kWillNeed: the range is fetched in the background (up to `connections` requests at once),
  // and reads inside it wait for it instead of asking again.
  void advise(uint64_t offset, uint64_t length, Advice advice) const override;
  const RemoteStats& stats() const;
  // The URL reads go to first (a mirror, or the origin).
  const std::string& first_choice() const;

  struct State;
  explicit RemoteSource(std::shared_ptr<State> state);

 private:
  std::shared_ptr<State> state_;
};

}  // namespace torshpkg::distribution
