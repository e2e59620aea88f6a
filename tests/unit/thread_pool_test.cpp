#include "thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

namespace torshpkg {
namespace {

TEST(ThreadPool, CallsEveryIndexExactlyOnce) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(1000);
  pool.parallel_for(hits.size(), [&](size_t i) { hits[i]++; });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

TEST(ThreadPool, RethrowsTheFirstExceptionAfterAllCallsFinish) {
  ThreadPool pool(2);
  std::atomic<int> finished{0};
  EXPECT_THROW(pool.parallel_for(100,
                                 [&](size_t i) {
                                   if (i == 7) throw std::runtime_error("boom");
                                   finished++;
                                 }),
               std::runtime_error);
  EXPECT_EQ(finished.load(), 99);
}

TEST(ThreadPool, ConcurrentAndNestedCallsDoNotDeadlock) {
  ThreadPool pool(2);
  std::atomic<long> sum{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      pool.parallel_for(20, [&](size_t) {
        pool.parallel_for(10, [&](size_t j) { sum += static_cast<long>(j); });
      });
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(sum.load(), 4L * 20 * 45);
}

TEST(ThreadPool, ZeroItemsIsANoOp) {
  ThreadPool pool(1);
  pool.parallel_for(0, [](size_t) { FAIL(); });
}

}  // namespace
}  // namespace torshpkg
