#include "proxy/server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/session.hpp"

namespace tandem::proxy {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct server::impl {
  impl(asio::io_context& ioc, server_options options, router& r)
      : ioc(ioc), acceptor(ioc), shared(std::make_shared<session_shared>(std::move(options), r)) {}

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(ioc), asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        // Out of file descriptors and the like: log and keep accepting.
        spdlog::warn("accept failed: {}", ec.message());
        continue;
      }
      const bool over = shared->active.load() >= static_cast<std::size_t>(shared->options.limits.max_connections);
      if (over) spdlog::warn("connection limit {} reached; refusing a connection", shared->options.limits.max_connections);
      // A failure to set up one connection (out of memory, TLS) must not end the accept loop:
      // with `detached`, an exception here would end it silently, and the listener with it.
      try {
        auto s = std::make_shared<session>(std::move(socket), shared, over);
        auto ex = s->executor();
        asio::co_spawn(ex, [s] { return s->run(); }, asio::detached);
      } catch (const std::exception& e) {
        spdlog::error("cannot set up a connection: {}", e.what());
      }
    }
  }

  asio::io_context& ioc;
  tcp::acceptor acceptor;
  std::shared_ptr<session_shared> shared;
};

server::server(asio::io_context& ioc, server_options options, router& r)
    : impl_(std::make_shared<impl>(ioc, std::move(options), r)) {}

server::~server() = default;

tcp::endpoint server::start() {
  auto& o = impl_->shared->options;
  if (o.tls.enabled) {
    auto& ctx = impl_->shared->tls_context;
    ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                    asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    ctx.use_certificate_chain_file(o.tls.cert_file);
    ctx.use_private_key_file(o.tls.key_file, asio::ssl::context::pem);
  }
  auto address = asio::ip::make_address(o.listen.host);
  tcp::endpoint ep(address, o.listen.port);
  auto& acc = impl_->acceptor;
  acc.open(ep.protocol());
  acc.set_option(tcp::acceptor::reuse_address(true));
  acc.bind(ep);
  acc.listen(asio::socket_base::max_listen_connections);
  asio::co_spawn(acc.get_executor(), [i = impl_] { return i->accept_loop(); }, asio::detached);
  return acc.local_endpoint();
}

void server::stop(std::function<void()> on_stopped) {
  // Everything happens inside one handler on the io_context. Done from the calling thread, there
  // was a race: the last session and the accept loop could end between collecting the live
  // sessions and posting close_gracefully to them, the io_context ran out of work and stopped,
  // and the posted handler (holding the session) never ran, so on_stopped was never called.
  // Inside a handler the io_context has work until the nested posts are queued.
  asio::post(impl_->acceptor.get_executor(), [i = impl_, on_stopped = std::move(on_stopped)]() mutable {
    boost::system::error_code ec;
    i->acceptor.close(ec);
    std::vector<std::shared_ptr<session>> live;
    {
      std::lock_guard lock(i->shared->mu);
      i->shared->stopping = true;
      i->shared->on_stopped = std::move(on_stopped);
      for (auto& [id, weak] : i->shared->sessions) {
        if (auto s = weak.lock()) live.push_back(std::move(s));
      }
      i->shared->maybe_stopped();
    }
    for (auto& s : live) {
      asio::post(s->executor(), [s] { s->close_gracefully(); });
    }
  });
}

void server::set_tokens(std::vector<std::string> tokens) { impl_->shared->set_tokens(std::move(tokens)); }

std::size_t server::connections() const { return impl_->shared->active.load(); }

}  // namespace tandem::proxy
