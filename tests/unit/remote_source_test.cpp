// RemoteSource against an HTTP/1.1 server on loopback that this test runs: range requests on
// kept-alive connections, with faults on request (a 200 for a range, 503s, a wrong range).
#include "remote_source.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "loopback.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"

namespace torshpkg::distribution {
namespace {

struct Reply {
  int status = 206;
  std::string content_range;  // empty: the one for the range served
  std::string body;
};

// Serves `data` with range requests; `fault` may replace the reply to request number n (from 0).
class RangeServer {
 public:
  using Fault = std::function<std::optional<Reply>(int n)>;

  RangeServer(std::string data, Fault fault = {})
      : data_(std::move(data)), fault_(std::move(fault)) {
    listener_ = testing::listen_on_loopback(port_, 16);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~RangeServer() {
    ::shutdown(listener_.get(), SHUT_RDWR);
    acceptor_.join();
    {
      std::lock_guard lock(mutex_);
      for (const int fd : clients_) ::shutdown(fd, SHUT_RDWR);
    }
    for (std::thread& t : connections_) t.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/m.torshpkg"; }
  int requests() const { return requests_; }

 private:
  void accept_loop() {
    while (true) {
      const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      std::lock_guard lock(mutex_);
      clients_.push_back(fd);
      connections_.emplace_back([this, fd] { serve(UniqueFd(fd)); });
    }
  }

  void serve(UniqueFd client) {
    std::string in;
    char buf[4096];
    while (true) {
      size_t end;
      while ((end = in.find("\r\n\r\n")) == std::string::npos) {
        const ssize_t n = ::read(client.get(), buf, sizeof buf);
        if (n <= 0) return;
        in.append(buf, static_cast<size_t>(n));
      }
      const std::string head = in.substr(0, end);
      in.erase(0, end + 4);
      const int number = requests_++;
      Reply reply = answer(head);
      if (fault_) {
        if (auto replaced = fault_(number)) reply = *replaced;
      }
      std::string out = "HTTP/1.1 " + std::to_string(reply.status) +
                        " X\r\nContent-Length: " + std::to_string(reply.body.size()) + "\r\n";
      if (!reply.content_range.empty()) out += "Content-Range: " + reply.content_range + "\r\n";
      out += "\r\n" + reply.body;
      if (::send(client.get(), out.data(), out.size(), MSG_NOSIGNAL) < 0) return;
    }
  }

  Reply answer(const std::string& head) const {
    const size_t at = head.find("Range: bytes=");
    if (at == std::string::npos) return {200, "", data_};
    const std::string spec = head.substr(at + 13, head.find("\r\n", at) - at - 13);
    uint64_t first = 0, last = data_.size() - 1;
    if (spec[0] == '-') {
      const uint64_t n = std::stoull(spec.substr(1));
      first = n >= data_.size() ? 0 : data_.size() - n;
    } else {
      first = std::stoull(spec);
      last = std::min<uint64_t>(std::stoull(spec.substr(spec.find('-') + 1)), data_.size() - 1);
    }
    return {206,
            "bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" +
                std::to_string(data_.size()),
            data_.substr(first, last - first + 1)};
  }

  std::string data_;
  Fault fault_;
  UniqueFd listener_;
  int port_ = 0;
  std::atomic<int> requests_{0};
  std::mutex mutex_;
  std::vector<int> clients_;
  std::vector<std::thread> connections_;
  std::thread acceptor_;
};

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  return s;
}

RemoteSourceOptions small_tail() {
  RemoteSourceOptions o;
  o.tail_bytes = 64 * 1024;
  return o;
}

std::string read(const RemoteSource& src, uint64_t offset, size_t n) {
  std::string out(n, '\0');
  src.read_at(offset, std::span(reinterpret_cast<uint8_t*>(out.data()), n));
  return out;
}

ErrorKind kind_of_read(const RemoteSource& src, uint32_t copy) {
  std::string out(16, '\0');
  try {
    src.read_at(0, std::span(reinterpret_cast<uint8_t*>(out.data()), out.size()), {.copy = copy});
  } catch (const Error& e) {
    return e.kind();
  }
  return ErrorKind::kIo;  // not an error at all: no kind fits, and the test fails
}

TEST(RemoteSource, OpensWithOneRequestAndReadsRanges) {
  const std::string data = pattern(1 << 20);
  RangeServer server(data);
  const auto src = open_remote_source(server.url(), small_tail());
  EXPECT_EQ(src->size(), data.size());
  EXPECT_EQ(server.requests(), 1);
  EXPECT_EQ(read(*src, data.size() - 100, 100), data.substr(data.size() - 100));  // the tail
  EXPECT_EQ(server.requests(), 1);
  EXPECT_EQ(read(*src, 1000, 5000), data.substr(1000, 5000));
  EXPECT_EQ(server.requests(), 2);
  EXPECT_EQ(src->stats().tail_hits, 1u);
  EXPECT_THROW(read(*src, data.size() - 10, 11), Error);
}

TEST(RemoteSource, AServerWithoutRangesIsRefused) {
  RangeServer server(pattern(1000), [](int) { return Reply{200, "", pattern(1000)}; });
  try {
    open_remote_source(server.url());
    FAIL() << "opened";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("does not answer range requests"), std::string::npos);
  }
}

TEST(RemoteSource, MissingIsNotFound) {
  RangeServer server(pattern(1000), [](int) { return Reply{404, "", "no"}; });
  try {
    open_remote_source(server.url());
    FAIL() << "opened";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
  }
  EXPECT_EQ(server.requests(), 1);  // not tried again
}

TEST(RemoteSource, FailedAttemptsAreRetriedThenReported) {
  const std::string data = pattern(1 << 20);
  // Requests 1 and 2 (the first read's first two attempts) fail; the third succeeds.
  RangeServer server(data, [](int n) -> std::optional<Reply> {
    if (n == 1 || n == 2) return Reply{503, "", "busy"};
    if (n >= 4) return Reply{503, "", "busy"};
    return std::nullopt;
  });
  const auto src = open_remote_source(server.url(), small_tail());
  EXPECT_EQ(read(*src, 0, 4096), data.substr(0, 4096));
  EXPECT_EQ(src->stats().retries, 2u);
  try {
    read(*src, 8192, 4096);
    FAIL() << "read";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(std::string(e.what()).find("HTTP 503 (after 3 attempts)"), std::string::npos)
        << e.what();
  }
}

TEST(RemoteSource, AnotherRangeThanAskedIsAnError) {
  const std::string data = pattern(1 << 20);
  RangeServer server(data, [&](int n) -> std::optional<Reply> {
    if (n == 0) return std::nullopt;
    return Reply{206, "bytes 0-4095/" + std::to_string(data.size()), data.substr(0, 4096)};
  });
  const auto src = open_remote_source(server.url(), small_tail());
  try {
    read(*src, 8192, 4096);
    FAIL() << "read";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(std::string(e.what()).find("another range"), std::string::npos) << e.what();
  }
}

TEST(RemoteSource, SequentialReadsAreServedFromWindowsFetchedAhead) {
  const std::string data = pattern(8 << 20);
  RangeServer server(data);
  RemoteSourceOptions o = small_tail();
  o.readahead_bytes = 2 << 20;
  o.readahead_window = 1 << 20;
  const auto src = open_remote_source(server.url(), o);
  const size_t piece = 256 * 1024;
  for (uint64_t at = 0; at < 6 << 20; at += piece) {
    ASSERT_EQ(read(*src, at, piece), data.substr(at, piece)) << at;
  }
  // 24 reads; the first two asked themselves, the rest mostly waited for 1 MiB windows.
  EXPECT_GT(src->stats().prefetch_hits, 16u);
  EXPECT_LT(server.requests(), 12);
}

TEST(RemoteSource, AnnouncedRangesAreFetchedOnce) {
  const std::string data = pattern(4 << 20);
  RangeServer server(data);
  const auto src = open_remote_source(server.url(), small_tail());
  src->advise(100'000, 50'000, Advice::kWillNeed);
  src->advise(2'000'000, 8'192, Advice::kWillNeed);
  EXPECT_EQ(read(*src, 100'000, 20'000), data.substr(100'000, 20'000));
  EXPECT_EQ(read(*src, 120'000, 30'000), data.substr(120'000, 30'000));
  EXPECT_EQ(read(*src, 2'000'000, 8'192), data.substr(2'000'000, 8'192));
  EXPECT_EQ(server.requests(), 3);  // the tail and the two windows
  EXPECT_EQ(src->stats().prefetch_hits, 3u);
}

TEST(RemoteSource, CopiesAreTriedInOrderAndAskedForByNumber) {
  const std::string data = pattern(1 << 20);
  std::string other = data;
  other[5000] ^= 1;
  RangeServer missing(data, [](int) { return Reply{404, "", "no"}; });
  RangeServer mirror(other);
  RangeServer origin(data);
  const auto src = open_remote_source({missing.url(), mirror.url(), origin.url()}, small_tail());
  EXPECT_EQ(src->copies(), 2u);  // the one that did not open is left out
  EXPECT_EQ(src->name(), origin.url());
  EXPECT_EQ(read(*src, 4096, 4096)[5000 - 4096], other[5000]);  // the first choice: the mirror
  std::string again(4096, '\0');
  src->read_at(4096, std::span(reinterpret_cast<uint8_t*>(again.data()), again.size()),
               {.copy = 1});
  EXPECT_EQ(again, data.substr(4096, 4096));  // asked of the origin
  EXPECT_EQ(origin.requests(), 1);
  EXPECT_EQ(src->stats().other_copies, 1u);
  EXPECT_EQ(kind_of_read(*src, 2), ErrorKind::kInvalidArgument);
}

TEST(RemoteSource, ConcurrentStreamsUnderASmallBudgetReadTheRightBytes) {
  // Eight readers stream quarters, two to a quarter (so one may use up a window that the other
  // waits for), while windows are given up for room: every byte read must be the server's,
  // whichever window or request it came from.
  const std::string data = pattern(16 << 20);
  RangeServer server(data);
  RemoteSourceOptions o = small_tail();
  o.readahead_bytes = 1 << 20;
  o.readahead_window = 256 * 1024;
  o.prefetch_bytes = 1 << 20;
  o.connections = 3;
  const auto src = open_remote_source(server.url(), o);
  std::atomic<int> wrong{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 8; ++r) {
    readers.emplace_back([&, r] {
      const uint64_t begin = static_cast<uint64_t>(r / 2) * (4 << 20);
      for (uint64_t at = begin; at + 96 * 1024 <= begin + (4 << 20) - (64 << 10); at += 96 * 1024) {
        if (read(*src, at, 96 * 1024) != data.substr(at, 96 * 1024)) ++wrong;
      }
    });
  }
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(src->stats().prefetch_hits, 0u);
}

}  // namespace
}  // namespace torshpkg::distribution
