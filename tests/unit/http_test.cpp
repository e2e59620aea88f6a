// HttpClient against a server on loopback that this test runs: libcurl's callbacks never let an
// exception through its C frames; what a callback throws comes out of send().
#include "http.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <thread>

#include "loopback.h"
#include "torshpkg/error.h"
#include "torshpkg/file_io.h"

namespace torshpkg::distribution {
namespace {

// Answers each connection with one HTTP/1.1 200 response of `body`, then closes it.
class OneShotServer {
 public:
  explicit OneShotServer(std::string body, int connections = 1) : body_(std::move(body)) {
    listener_ = testing::listen_on_loopback(port_, 4);
    thread_ = std::thread([this, connections] {
      for (int i = 0; i < connections; ++i) serve_one();
    });
  }
  ~OneShotServer() { thread_.join(); }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/blob"; }

 private:
  void serve_one() {
    const UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client) return;
    std::string request;
    char buf[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::read(client.get(), buf, sizeof buf);
      if (n <= 0) return;
      request.append(buf, static_cast<size_t>(n));
    }
    const std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body_.size()) +
                              "\r\nX-Test: yes\r\nConnection: close\r\n\r\n" + body_;
    (void)!::send(client.get(), reply.data(), reply.size(), MSG_NOSIGNAL);  // the client may go
  }

  std::string body_;
  UniqueFd listener_;
  int port_ = 0;
  std::thread thread_;
};

TEST(HttpClient, GetsABodyAndItsHeaders) {
  OneShotServer server(std::string(100'000, 'x'));
  HttpClient http;
  HttpRequest get;
  get.url = server.url();
  const HttpResponse r = http.send(get);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.size(), 100'000u);
  EXPECT_EQ(r.header("x-test"), "yes");
}

TEST(HttpClient, WhatACallbackThrowsComesOutOfSend) {
  OneShotServer server(std::string(1 << 20, 'x'), 2);
  HttpClient http;
  HttpRequest get;
  get.url = server.url();
  get.sink = [](std::span<const uint8_t>) -> bool {
    throw Error(ErrorKind::kInterrupted, "interrupted by the sink");
  };
  try {
    http.send(get);
    ADD_FAILURE() << "the sink's error was lost";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInterrupted);
  }
  // Not an Error, from the progress callback: it comes out as it was thrown.
  HttpRequest again;
  again.url = server.url();
  again.progress = [](uint64_t done, uint64_t) {
    if (done > 0) throw std::length_error("progress gave up");
  };
  EXPECT_THROW(http.send(again), std::length_error);
}

}  // namespace
}  // namespace torshpkg::distribution
