// The I/O thread pool: where connections run, and how it ends.
#include "proxy/io_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace tandem::proxy {
namespace {

namespace asio = boost::asio;

// The thread a handler posted to `ex` ran on.
std::thread::id thread_of(const asio::any_io_executor& ex) {
  std::promise<std::thread::id> p;
  asio::post(ex, [&p] { p.set_value(std::this_thread::get_id()); });
  return p.get_future().get();
}

class IoPool : public ::testing::TestWithParam<int> {};  // the spin, in microseconds

TEST_P(IoPool, ConnectionsGoToTheThreadsInTurnAndEachStaysOnOne) {
  io_pool pool(2, std::chrono::microseconds(GetParam()));
  pool.start();
  const auto a = pool.next(), b = pool.next(), c = pool.next();
  const auto ta = thread_of(a), tb = thread_of(b);
  EXPECT_NE(ta, tb) << "two connections in a row share a thread";
  EXPECT_EQ(thread_of(c), ta) << "the third connection goes back to the first thread";
  for (int i = 0; i < 20; ++i) EXPECT_EQ(thread_of(a), ta) << "a connection's handlers moved thread";
  EXPECT_NE(ta, std::this_thread::get_id());
  pool.join();
}

TEST_P(IoPool, HandlersOfOneConnectionRunOneAtATime) {
  io_pool pool(2, std::chrono::microseconds(GetParam()));
  pool.start();
  const auto ex = pool.next();
  std::atomic<int> inside{0}, overlaps{0}, done{0};
  constexpr int k_posts = 2000;
  // Posted from several threads at once, as stores and the listener do.
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; ++t) {
    posters.emplace_back([&] {
      for (int i = 0; i < k_posts / 4; ++i) {
        asio::post(ex, [&] {
          if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
          inside.fetch_sub(1);
          done.fetch_add(1);
        });
      }
    });
  }
  for (auto& t : posters) t.join();
  pool.join();  // the threads end only once what was posted has run
  EXPECT_EQ(done.load(), k_posts);
  EXPECT_EQ(overlaps.load(), 0);
}

TEST_P(IoPool, RunReturnsOnceTheControlContextAndTheConnectionsAreDone) {
  io_pool pool(3, std::chrono::microseconds(GetParam()));
  std::atomic<bool> connection_ran{false};
  // Work on the control context (a listener) that ends, and a connection that outlives it
  // briefly: run() waits for both.
  asio::steady_timer control_work(pool.control(), std::chrono::milliseconds(20));
  control_work.async_wait([](const boost::system::error_code&) {});
  auto ex = pool.next();
  auto timer = std::make_shared<asio::steady_timer>(ex, std::chrono::milliseconds(60));
  timer->async_wait([timer, &connection_ran](const boost::system::error_code&) { connection_ran = true; });
  pool.run();
  EXPECT_TRUE(connection_ran.load());
}

TEST_P(IoPool, AnIdlePoolEndsAtRelease) {
  io_pool pool(2, std::chrono::microseconds(GetParam()));
  pool.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // let the threads go idle (and sleep)
  pool.join();  // returns: nothing keeps the contexts alive after release
  SUCCEED();
}

INSTANTIATE_TEST_SUITE_P(Spin, IoPool, ::testing::Values(0, 200), [](const auto& info) {
  return info.param == 0 ? std::string("NoSpin") : "Spin" + std::to_string(info.param) + "us";
});

}  // namespace
}  // namespace tandem::proxy
