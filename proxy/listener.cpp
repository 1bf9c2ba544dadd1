#include "proxy/listener.hpp"

#include <spdlog/spdlog.h>

#include <type_traits>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tandem::proxy {
namespace asio = boost::asio;

void deadline::arm(std::chrono::steady_clock::duration bound, std::function<void()> expired) {
  const auto mine = ++armed_;
  timer_.expires_after(bound);  // cancels the wait of the previous arm(), if any
  timer_.async_wait([this, mine, expired = std::move(expired)](const boost::system::error_code& ec) {
    // A wait that completed just before a later arm() or disarm() is not this bound's.
    if (!ec && mine == armed_) expired();
  });
}

void deadline::disarm() {
  ++armed_;
  timer_.cancel();
}

template <class Protocol>
listener<Protocol>::listener(asio::io_context& ioc, std::string name, factory make, placement place)
    : ioc_(ioc), acceptor_(ioc), prefix_(name.empty() ? "" : name + ": "), make_(std::move(make)), place_(std::move(place)) {}

template <class Protocol>
typename listener<Protocol>::endpoint_type listener<Protocol>::listen(const endpoint_type& endpoint) {
  acceptor_.open(endpoint.protocol());
  if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  asio::co_spawn(acceptor_.get_executor(), [self = this->shared_from_this()] { return self->accept_loop(); }, asio::detached);
  return acceptor_.local_endpoint();
}

template <class Protocol>
asio::awaitable<void> listener<Protocol>::accept_loop() {
  for (;;) {
    asio::any_io_executor where = place_ ? place_() : asio::any_io_executor(asio::make_strand(ioc_));
    auto [ec, socket] = co_await acceptor_.async_accept(where, asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
      // Out of file descriptors and the like: log and keep accepting.
      spdlog::warn("{}accept failed: {}", prefix_, ec.message());
      continue;
    }
    serve(std::move(socket));
  }
}

template <class Protocol>
void listener<Protocol>::serve(socket_type socket) {
  // A failure to set up one connection (out of memory, TLS) must not end the accept loop: with
  // `detached`, an exception would end it silently, and the listener with it.
  try {
    std::shared_ptr<connection> c = make_(std::move(socket), connections());
    std::uint64_t id = 0;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;  // accepted as the stop began: closed unserved
      id = next_id_++;
      live_.emplace(id, c);
    }
    auto ex = c->executor();
    asio::co_spawn(ex, [c] { return c->run(); }, [self = this->shared_from_this(), id](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& what) {
          // Only a bug lands here; it ends this connection and no other.
          spdlog::error("{}a connection failed: {}", self->prefix_, what.what());
        }
      }
      self->forget(id);
    });
  } catch (const std::exception& e) {
    spdlog::error("{}cannot set up a connection: {}", prefix_, e.what());
  }
}

template <class Protocol>
void listener<Protocol>::forget(std::uint64_t id) {
  std::function<void()> stopped;
  {
    std::lock_guard lock(mu_);
    live_.erase(id);
    if (stopping_ && live_.empty()) stopped = std::exchange(on_stopped_, nullptr);
  }
  if (stopped) stopped();
}

template <class Protocol>
void listener<Protocol>::stop(std::function<void()> on_stopped, std::function<void()> closed) {
  if (stop_requested_.exchange(true)) return;
  // Inside a handler the io_context has work until the posts below are queued (see the top of
  // listener.hpp).
  asio::post(acceptor_.get_executor(), [self = this->shared_from_this(), on_stopped = std::move(on_stopped),
                                        closed = std::move(closed)]() mutable {
    const bool was_open = self->acceptor_.is_open();
    boost::system::error_code ignored;
    self->acceptor_.close(ignored);
    if (was_open && closed) closed();
    std::vector<std::shared_ptr<connection>> live;
    std::function<void()> stopped_now;
    {
      std::lock_guard lock(self->mu_);
      self->stopping_ = true;
      for (auto& [id, weak] : self->live_) {
        if (auto c = weak.lock()) live.push_back(std::move(c));
      }
      // With connections left (ended ones too, not yet forgotten), the last forget() calls it.
      if (self->live_.empty()) stopped_now = std::move(on_stopped);
      else self->on_stopped_ = std::move(on_stopped);
    }
    for (auto& c : live) asio::post(c->executor(), [c] { c->stop(); });
    if (stopped_now) stopped_now();
  });
}

template <class Protocol>
std::size_t listener<Protocol>::connections() const {
  std::lock_guard lock(mu_);
  return live_.size();
}

template class listener<asio::ip::tcp>;
template class listener<asio::local::stream_protocol>;

}  // namespace tandem::proxy
