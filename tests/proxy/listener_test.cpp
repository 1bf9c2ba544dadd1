// The listener alone: its registry, its graceful stop and the per-operation deadline, with a
// connection that only waits for its peer.
#include "proxy/listener.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tests/support/eventually.hpp"

namespace tandem::proxy {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using testing::eventually;

// Reads until its peer closes or it is stopped (which closes its socket).
struct waiting_connection final : connection, std::enable_shared_from_this<waiting_connection> {
  waiting_connection(tcp::socket s, std::atomic<int>& stops) : socket(std::move(s)), stops(stops) {}
  asio::awaitable<void> run() override {
    char byte = 0;
    auto self = shared_from_this();
    for (;;) {
      auto [ec, n] = co_await socket.async_read_some(asio::buffer(&byte, 1), asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
    }
  }
  void stop() override {
    ++stops;
    boost::system::error_code ignored;
    socket.close(ignored);
  }
  asio::any_io_executor executor() override { return socket.get_executor(); }

  tcp::socket socket;
  std::atomic<int>& stops;
};

class Listener : public ::testing::Test {
 protected:
  void SetUp() override {
    listener_ = std::make_shared<tcp_listener>(ioc_, "test", [this](tcp::socket s, std::size_t) {
      return std::make_shared<waiting_connection>(std::move(s), stops_);
    });
    port_ = listener_->listen(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)).port();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    listener_->stop();
    thread_.join();
  }
  // A client connection, from a context of its own.
  std::unique_ptr<tcp::socket> connect() {
    auto s = std::make_unique<tcp::socket>(client_ctx_);
    s->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    return s;
  }

  asio::io_context ioc_;
  asio::io_context client_ctx_;
  std::atomic<int> stops_{0};
  std::shared_ptr<tcp_listener> listener_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

TEST_F(Listener, CountsItsConnectionsUntilTheyEnd) {
  auto a = connect();
  auto b = connect();
  ASSERT_TRUE(eventually("two connections", [&] { return listener_->connections() == 2; }));
  a->close();
  ASSERT_TRUE(eventually("one connection", [&] { return listener_->connections() == 1; }));
}

TEST_F(Listener, StopClosesTheAcceptorAndStopsEveryConnectionThenSaysSo) {
  auto a = connect();
  auto b = connect();
  ASSERT_TRUE(eventually("two connections", [&] { return listener_->connections() == 2; }));
  std::atomic<bool> stopped{false}, closed{false};
  listener_->stop([&] { stopped = true; }, [&] { closed = true; });
  ASSERT_TRUE(eventually("on_stopped", [&] { return stopped.load(); }));
  EXPECT_TRUE(closed.load());
  EXPECT_EQ(stops_.load(), 2);
  EXPECT_EQ(listener_->connections(), 0u);
  boost::system::error_code ec;
  tcp::socket late(client_ctx_);
  late.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);
  EXPECT_TRUE(ec) << "the acceptor is closed";
}

TEST_F(Listener, StopWithNoConnectionCallsOnStoppedAndASecondStopDoesNothing) {
  std::atomic<int> stopped{0};
  listener_->stop([&] { ++stopped; });
  listener_->stop([&] { ++stopped; });
  ASSERT_TRUE(eventually("on_stopped", [&] { return stopped.load() == 1; }));
  // The io_context ran out of work: nothing else was queued.
  thread_.join();
  EXPECT_EQ(stopped.load(), 1);
  thread_ = std::thread([] {});
}

TEST(Deadline, RunsWhenTheBoundPassesAndNotAfterDisarm) {
  asio::io_context ioc;
  auto guard = asio::make_work_guard(ioc);
  std::thread t([&] { ioc.run(); });
  deadline bound(ioc.get_executor());
  std::atomic<int> expired{0};
  asio::post(ioc, [&] { bound.arm(std::chrono::milliseconds(1), [&] { ++expired; }); });
  ASSERT_TRUE(eventually("the bound expired", [&] { return expired.load() == 1; }));
  asio::post(ioc, [&] {
    bound.arm(std::chrono::hours(1), [&] { ++expired; });
    bound.disarm();
  });
  guard.reset();
  t.join();  // the disarmed wait ended: nothing keeps the io_context running
  EXPECT_EQ(expired.load(), 1);
}

}  // namespace
}  // namespace tandem::proxy
