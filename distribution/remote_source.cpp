// A package on a web server as a ByteSource (see remote_source.h).
#include "remote_source.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "torshpkg/error.h"

namespace torshpkg::distribution {

namespace {

// Reads at least this long, each following the one before, make a stream worth reading ahead.
constexpr uint64_t kStreamRead = 64 * 1024;

struct ContentRange {
  uint64_t first = 0;
  uint64_t last = 0;
  uint64_t total = 0;
};

// "bytes FIRST-LAST/TOTAL" (RFC 9110 14.4); nullopt for anything else (a "*" total included).
std::optional<ContentRange> parse_content_range(const std::string& value) {
  ContentRange r;
  char tail = 0;
  unsigned long long first = 0, last = 0, total = 0;
  if (std::sscanf(value.c_str(), "bytes %llu-%llu/%llu%c", &first, &last, &total, &tail) != 3) {
    return std::nullopt;
  }
  r.first = first;
  r.last = last;
  r.total = total;
  if (r.first > r.last || r.last >= r.total) return std::nullopt;
  return r;
}

std::string range_text(uint64_t first, uint64_t last) {
  return "bytes " + std::to_string(first) + "-" + std::to_string(last);
}

}  // namespace

bool is_remote_url(const std::string& source) {
  return source.starts_with("http://") || source.starts_with("https://");
}

// A window fetched ahead: filled by a prefetch worker, read (in parts) by read_at.
struct Prefetch {
  uint64_t offset = 0;
  std::vector<uint8_t> bytes;
  uint64_t consumed = 0;
  bool done = false;
  bool failed = false;
  bool dropped = false;  // given up (its buffer may serve another window now)
};

struct RemoteSource::State {
  std::string url;                      // the origin: the name in messages
  std::vector<std::string> copies;      // where the bytes are read from, first choice first
  mutable RemoteSourceOptions options;  // headers renewed under headers_mutex
  uint64_t size = 0;
  std::vector<uint8_t> tail;  // the bytes [tail_offset, size)
  uint64_t tail_offset = 0;
  mutable RemoteStats stats;
  mutable std::mutex headers_mutex;  // options.headers, renewed by options.reauthorize

  mutable std::mutex mutex;
  mutable std::condition_variable returned;
  mutable std::vector<std::unique_ptr<HttpClient>> idle;
  mutable unsigned created = 0;

  // Prefetching (advise): the windows fetched or being fetched, oldest first; the queue the
  // workers take them from; the workers, started on the first announcement.
  mutable std::mutex prefetch_mutex;
  mutable std::condition_variable prefetch_changed;
  mutable std::list<std::shared_ptr<Prefetch>> windows;
  mutable std::deque<std::shared_ptr<Prefetch>> queue;
  mutable uint64_t window_bytes = 0;
  mutable std::vector<std::vector<uint8_t>> spare;  // buffers of windows read, for reuse
  mutable std::vector<std::thread> workers;
  mutable bool stopping = false;
  // Sequential reads: where the next read would start (none yet: the first read is not taken
  // for a stream), and how far windows have been queued.
  mutable uint64_t next_read = UINT64_MAX;
  mutable uint64_t ahead_until = 0;

  ~State() {
    {
      std::lock_guard lock(prefetch_mutex);
      stopping = true;
      queue.clear();
    }
    prefetch_changed.notify_all();
    for (std::thread& t : workers) t.join();
  }

  // A kept-alive client of the pool, or a new one while fewer than `connections` exist.
  std::unique_ptr<HttpClient> acquire() const {
    std::unique_lock lock(mutex);
    returned.wait(lock, [&] { return !idle.empty() || created < options.connections; });
    if (!idle.empty()) {
      std::unique_ptr<HttpClient> c = std::move(idle.back());
      idle.pop_back();
      return c;
    }
    ++created;
    lock.unlock();
    try {
      return std::make_unique<HttpClient>(options.http);
    } catch (...) {
      lock.lock();
      --created;
      returned.notify_one();
      throw;
    }
  }
  void release(std::unique_ptr<HttpClient> c) const {
    std::lock_guard lock(mutex);
    idle.push_back(std::move(c));
    returned.notify_one();
  }

  // One request for `range` ("bytes=A-B" or "bytes=-N"); the body goes to `put` (which may
  // refuse more bytes). Returns the response (its status and headers); throws Error(kIo) for a
  // transport failure.
  HttpResponse request(const std::string& target, const std::string& range,
                       const std::function<bool(std::span<const uint8_t>)>& put) const {
    std::unique_ptr<HttpClient> client = acquire();
    HttpRequest req;
    req.url = target;
    {
      std::lock_guard lock(headers_mutex);
      req.headers = options.headers;
    }
    req.headers.push_back("Range: " + range);
    long status = 0;
    req.on_status = [&](long s) { status = s; };
    // Only a 206 is read: a server that ignores the range would send the whole file.
    req.sink = [&](std::span<const uint8_t> bytes) {
      if (status != 206) return false;
      stats.bytes += bytes.size();
      return put(bytes);
    };
    stats.requests += 1;
    HttpResponse response;
    try {
      response = client->send(req);
    } catch (...) {
      // A client whose transfer failed is dropped: its connection may be in any state.
      std::lock_guard lock(mutex);
      --created;
      returned.notify_one();
      throw;
    }
    release(std::move(client));
    return response;
  }

  // One range read into `out` from copy `copy`, with the attempts; the response checked
  // against the range.
  void fetch_copy(size_t copy, uint64_t offset, std::span<uint8_t> out) const;
  // The same from the first choice, then (after its attempts failed) from each other copy.
  void fetch(uint64_t offset, std::span<uint8_t> out) const;
  void prefetch_worker() const;
  void drop(const std::shared_ptr<Prefetch>& w) const;  // with prefetch_mutex held
  void recycle(std::vector<uint8_t> bytes) const;       // with prefetch_mutex held
  // Queues [offset, offset + length) for the workers unless it overlaps a window or a read in
  // flight, or there is no room; with prefetch_mutex held.
  enum class Queued { kYes, kOverlaps, kNoRoom };
  Queued queue_window(uint64_t offset, uint64_t length) const;
  // The ranges reads are fetching themselves now (with prefetch_mutex held), so that no window
  // asks for them again.
  mutable std::vector<std::pair<uint64_t, uint64_t>> demand;
  // After a read of [offset, end): when it follows the one before, windows ahead of it.
  void read_ahead(uint64_t offset, uint64_t end) const;  // with prefetch_mutex held

  // What a response that is not the 206 asked for means, as an error; retry says whether a
  // second attempt may fare better.
  Error refusal(const HttpResponse& r, const std::string& target, const std::string& what,
                bool& retry) const {  // may renew the headers (options is mutable for that)
    retry = false;
    if (r.status == 200) {
      return Error(ErrorKind::kUnsupported,
                   target +
                       ": the server does not answer range requests (HTTP 200 to a Range "
                       "request): download it with `torshpkg pull` instead");
    }
    if (r.status == 404 || r.status == 410) {
      return Error(ErrorKind::kNotFound, target + ": HTTP " + std::to_string(r.status));
    }
    if (r.status == 401 && options.reauthorize) {
      // A token that expired: the next attempt goes with a fresh one.
      std::vector<std::string> fresh = options.reauthorize();
      std::lock_guard lock(headers_mutex);
      options.headers = std::move(fresh);
      retry = true;
      return Error(ErrorKind::kIo, target + ": HTTP 401 (not allowed)");
    }
    if (r.status == 401 || r.status == 403) {
      return Error(ErrorKind::kIo,
                   target + ": HTTP " + std::to_string(r.status) + " (not allowed)");
    }
    if (r.status == 416) {
      return Error(ErrorKind::kIo, target + ": " + what + ": HTTP 416: the file on the server " +
                                       "is shorter than when it was opened");
    }
    retry = r.status == 206 || r.status >= 500 || r.status == 408 || r.status == 429;
    return Error(ErrorKind::kIo, target + ": " + what + ": HTTP " + std::to_string(r.status));
  }

  // Runs `attempt` up to options.attempts times, with growing pauses between them, for errors
  // that another attempt may cure (transport failures, 5xx, short or wrong ranges).
  template <typename Fn>
  void with_attempts(Fn attempt) const {
    const unsigned attempts = std::max(1u, options.attempts);
    for (unsigned i = 1;; ++i) {
      std::optional<Error> failure;
      bool retry = true;
      try {
        attempt(retry);
        return;
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::kIo) throw;
        failure = e;
      }
      if (!retry) throw *failure;
      if (i >= attempts) {
        std::string message = failure->what();
        if (attempts > 1) message += " (after " + std::to_string(attempts) + " attempts)";
        throw Error(ErrorKind::kIo, message);
      }
      stats.retries += 1;
      std::this_thread::sleep_for(std::chrono::milliseconds(250) * (1u << std::min(i - 1, 4u)));
    }
  }
};

std::shared_ptr<RemoteSource> open_remote_source(const std::string& url,
                                                 const RemoteSourceOptions& options) {
  return open_remote_source(std::vector<std::string>{url}, options);
}

std::shared_ptr<RemoteSource> open_remote_source(const std::vector<std::string>& urls,
                                                 const RemoteSourceOptions& options) {
  if (urls.empty()) throw invalid_argument("no URL to open");
  for (const std::string& u : urls) {
    if (!is_remote_url(u)) {
      throw Error(ErrorKind::kInvalidArgument, u + ": not an http:// or https:// URL");
    }
  }
  auto state = std::make_shared<RemoteSource::State>();
  state->url = urls.back();
  state->options = options;
  state->options.connections = std::max(1u, options.connections);
  const uint64_t want = std::max<uint64_t>(options.tail_bytes, 64);
  // The first copy that answers is the first choice; those before it are left out.
  std::optional<Error> last;
  for (size_t i = 0; i < urls.size(); ++i) {
    const std::string& target = urls[i];
    try {
      state->with_attempts([&](bool& retry) {
        state->tail.clear();
        const HttpResponse r = state->request(
            target, "bytes=-" + std::to_string(want), [&](std::span<const uint8_t> bytes) {
              if (state->tail.size() + bytes.size() > want) return false;
              state->tail.insert(state->tail.end(), bytes.begin(), bytes.end());
              return true;
            });
        if (r.status != 206) throw state->refusal(r, target, "the end of the file", retry);
        const auto range = parse_content_range(r.header("content-range"));
        if (!range || range->last + 1 != range->total ||
            state->tail.size() != range->last - range->first + 1) {
          throw Error(ErrorKind::kIo, target +
                                          ": the end of the file: the server sent another "
                                          "range (" +
                                          r.header("content-range") + ", " +
                                          std::to_string(state->tail.size()) + " bytes)");
        }
        state->size = range->total;
        state->tail_offset = range->first;
      });
    } catch (const Error& e) {
      last = e;
      continue;
    }
    state->copies.assign(urls.begin() + static_cast<std::ptrdiff_t>(i), urls.end());
    return std::make_shared<RemoteSource>(std::move(state));
  }
  throw *last;
}

RemoteSource::RemoteSource(std::shared_ptr<State> state)
    : ByteSource(0, static_cast<uint32_t>(state->copies.size())), state_(std::move(state)) {}
RemoteSource::~RemoteSource() = default;

uint64_t RemoteSource::size() const {
  return state_->size;
}

const std::string& RemoteSource::name() const {
  return state_->url;
}

const std::string& RemoteSource::first_choice() const {
  return state_->copies.front();
}

const RemoteStats& RemoteSource::stats() const {
  return state_->stats;
}

void RemoteSource::State::fetch_copy(size_t copy, uint64_t offset, std::span<uint8_t> out) const {
  const std::string& target = copies[copy];
  const uint64_t last = offset + out.size() - 1;
  const std::string what = range_text(offset, last);
  with_attempts([&](bool& retry) {
    size_t got = 0;
    bool overflow = false;
    const HttpResponse r =
        request(target, "bytes=" + std::to_string(offset) + "-" + std::to_string(last),
                [&](std::span<const uint8_t> bytes) {
                  if (bytes.size() > out.size() - got) {
                    overflow = true;
                    return false;
                  }
                  std::memcpy(out.data() + got, bytes.data(), bytes.size());
                  got += bytes.size();
                  return true;
                });
    if (r.status != 206) throw refusal(r, target, what, retry);
    const auto range = parse_content_range(r.header("content-range"));
    if (!range || range->first != offset || range->last != last || range->total != size) {
      throw Error(ErrorKind::kIo, target + ": " + what + ": the server sent another range (" +
                                      r.header("content-range") + ")");
    }
    if (overflow || got != out.size()) {
      throw Error(ErrorKind::kIo, target + ": " + what + ": " + std::to_string(got) +
                                      " bytes arrived of " + std::to_string(out.size()));
    }
  });
}

void RemoteSource::State::fetch(uint64_t offset, std::span<uint8_t> out) const {
  for (size_t copy = 0;; ++copy) {
    try {
      fetch_copy(copy, offset, out);
      return;
    } catch (const Error& e) {
      if (copy + 1 >= copies.size() || e.kind() == ErrorKind::kUnsupported) throw;
      stats.failovers += 1;
    }
  }
}

void RemoteSource::State::prefetch_worker() const {
  std::unique_lock lock(prefetch_mutex);
  while (true) {
    prefetch_changed.wait(lock, [&] { return stopping || !queue.empty(); });
    if (stopping) return;
    std::shared_ptr<Prefetch> w = std::move(queue.front());
    queue.pop_front();
    lock.unlock();
    bool failed = false;
    try {
      fetch(w->offset, w->bytes);
    } catch (...) {
      failed = true;  // the read that wanted it asks again, and reports the error
    }
    lock.lock();
    w->done = true;
    w->failed = failed;
    prefetch_changed.notify_all();
  }
}

void RemoteSource::State::drop(const std::shared_ptr<Prefetch>& w) const {
  for (auto it = windows.begin(); it != windows.end(); ++it) {
    if (*it == w) {
      window_bytes -= w->bytes.size();
      w->dropped = true;
      recycle(std::move(w->bytes));
      windows.erase(it);
      return;
    }
  }
}

void RemoteSource::State::recycle(std::vector<uint8_t> bytes) const {
  // Kept for the next window of the same size: a new one would be zeroed and faulted in again.
  if (bytes.size() == options.readahead_window &&
      spare.size() * options.readahead_window < options.prefetch_bytes) {
    spare.push_back(std::move(bytes));
  }
}

RemoteSource::State::Queued RemoteSource::State::queue_window(uint64_t offset,
                                                              uint64_t length) const {
  if (stopping) return Queued::kNoRoom;
  for (const auto& w : windows) {
    if (offset < w->offset + w->bytes.size() && w->offset < offset + length) {
      return Queued::kOverlaps;
    }
  }
  // A read asking for these bytes itself now: they are on their way.
  for (const auto& [first, end] : demand) {
    if (offset < end && first < offset + length) return Queued::kOverlaps;
  }
  // Room: windows that arrived and were not read are given up, oldest first.
  for (auto it = windows.begin();
       it != windows.end() && window_bytes + length > options.prefetch_bytes;) {
    if ((*it)->done) {
      window_bytes -= (*it)->bytes.size();
      (*it)->dropped = true;
      recycle(std::move((*it)->bytes));
      it = windows.erase(it);
    } else {
      ++it;
    }
  }
  if (window_bytes + length > options.prefetch_bytes) return Queued::kNoRoom;
  auto w = std::make_shared<Prefetch>();
  w->offset = offset;
  if (!spare.empty() && spare.back().size() == length) {
    w->bytes = std::move(spare.back());
    spare.pop_back();
  } else {
    w->bytes.resize(length);
  }
  windows.push_back(w);
  window_bytes += length;
  queue.push_back(std::move(w));
  while (workers.size() < options.connections) {
    workers.emplace_back([this] { prefetch_worker(); });
  }
  prefetch_changed.notify_all();
  return Queued::kYes;
}

void RemoteSource::State::read_ahead(uint64_t offset, uint64_t end) const {
  // Small reads (the ZIP reader's headers, a 4 KiB block of a random page) start no stream.
  if (options.readahead_bytes == 0 || end - offset < kStreamRead) return;
  const uint64_t expected = next_read;
  next_read = end;
  const uint64_t slack = options.readahead_window;
  if (expected == UINT64_MAX || offset + slack < expected || offset > expected + slack) return;
  // Whole windows, until one reaches readahead_bytes past this read.
  uint64_t from = std::max(end, ahead_until);
  const uint64_t limit = std::min(tail_offset, end + options.readahead_bytes);
  while (from < limit) {
    const uint64_t length = std::min(options.readahead_window, tail_offset - from);
    if (queue_window(from, length) == Queued::kNoRoom) break;
    from += length;  // queued, or being fetched already
  }
  ahead_until = std::max(ahead_until, from);
}

void RemoteSource::advise(uint64_t offset, uint64_t length, Advice advice) const {
  const State& s = *state_;
  if (advice != Advice::kWillNeed || length == 0 || offset >= s.size) return;
  length = std::min(length, s.size - offset);
  if (offset + length > s.tail_offset) {
    if (offset >= s.tail_offset) return;
    length = s.tail_offset - offset;
  }
  if (length > s.options.prefetch_window) return;
  std::lock_guard lock(s.prefetch_mutex);
  s.queue_window(offset, length);
}

void RemoteSource::read_at(uint64_t offset, std::span<uint8_t> out, ReadOptions options) const {
  const State& s = *state_;
  if (offset > s.size || out.size() > s.size - offset) {
    throw corrupt(s.url, "read past end of file");
  }
  if (out.empty()) return;
  if (options.copy > 0) {
    // The bytes the first choice gave failed their hash: straight from the copy asked for.
    if (options.copy >= s.copies.size()) {
      throw invalid_argument(s.url + ": no copy " + std::to_string(options.copy));
    }
    s.stats.other_copies += 1;
    s.fetch_copy(options.copy, offset, out);
    return;
  }
  if (offset >= s.tail_offset) {
    std::memcpy(out.data(), s.tail.data() + (offset - s.tail_offset), out.size());
    s.stats.tail_hits += 1;
    return;
  }
  // From the windows fetched ahead, as far as they reach without a gap; the rest asked for.
  uint64_t done = 0;
  {
    std::unique_lock lock(s.prefetch_mutex);
    while (done < out.size()) {
      const uint64_t at = offset + done;
      std::shared_ptr<Prefetch> w;
      for (const auto& candidate : s.windows) {
        if (candidate->offset <= at && at < candidate->offset + candidate->bytes.size()) {
          w = candidate;
          break;
        }
      }
      if (!w) break;
      s.prefetch_changed.wait(lock, [&] { return w->done || s.stopping; });
      if (w->dropped) break;  // given up while this read waited
      if (!w->done || w->failed) {
        s.drop(w);
        break;
      }
      const uint64_t n = std::min<uint64_t>(out.size() - done, w->offset + w->bytes.size() - at);
      std::memcpy(out.data() + done, w->bytes.data() + (at - w->offset), n);
      done += n;
      w->consumed += n;
      if (w->consumed >= w->bytes.size()) s.drop(w);
    }
    // What is left this read fetches itself: announced before the windows ahead of it are
    // queued, so that none of them asks for the same bytes.
    if (done < out.size()) s.demand.emplace_back(offset + done, offset + out.size());
    s.read_ahead(offset, offset + out.size());
  }
  if (done > 0) s.stats.prefetch_hits += 1;
  if (done == out.size()) return;
  const std::pair<uint64_t, uint64_t> range{offset + done, offset + out.size()};
  struct Done {
    const State& s;
    std::pair<uint64_t, uint64_t> range;
    ~Done() {
      std::lock_guard lock(s.prefetch_mutex);
      s.demand.erase(std::find(s.demand.begin(), s.demand.end(), range));
    }
  } done_fetching{s, range};
  s.fetch(offset + done, out.subspan(done));
}

}  // namespace torshpkg::distribution
