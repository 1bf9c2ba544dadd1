#include "proxy/server.hpp"

#include <spdlog/spdlog.h>

#include "proxy/session.hpp"

namespace tandem::proxy {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// The listener's factory: one session per connection; beyond limits.max_connections, a session
// that answers OVERLOADED and closes.
tcp_listener::factory sessions_of(std::shared_ptr<session_shared> shared) {
  return [shared = std::move(shared)](tcp::socket socket, std::size_t live) -> std::shared_ptr<connection> {
    const auto max = static_cast<std::size_t>(shared->options.limits.max_connections);
    const bool over = live >= max;
    if (over) spdlog::warn("connection limit {} reached; refusing a connection", max);
    return std::make_shared<session>(std::move(socket), shared, over);
  };
}

}  // namespace

server::server(io_pool& pool, server_options options, router& r)
    : shared_(std::make_shared<session_shared>(std::move(options), r)),
      listener_(std::make_shared<tcp_listener>(pool.control(), "", sessions_of(shared_), [&pool] { return pool.next(); })) {}

tcp::endpoint server::start() {
  auto& o = shared_->options;
  if (o.tls.enabled) {
    auto& ctx = shared_->tls_context;
    ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                    asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    ctx.use_certificate_chain_file(o.tls.cert_file);
    ctx.use_private_key_file(o.tls.key_file, asio::ssl::context::pem);
  }
  return listener_->listen(tcp::endpoint(asio::ip::make_address(o.listen.host), o.listen.port));
}

void server::stop(std::function<void()> on_stopped) { listener_->stop(std::move(on_stopped)); }

void server::set_tokens(std::vector<std::string> tokens) { shared_->set_tokens(std::move(tokens)); }

std::size_t server::connections() const { return listener_->connections(); }

}  // namespace tandem::proxy
