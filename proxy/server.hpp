// The SQL listener: accepts TCP (optionally TLS) connections and runs one session per connection.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "proxy/config.hpp"
#include "proxy/io_pool.hpp"
#include "proxy/listener.hpp"
#include "proxy/router.hpp"

namespace tandem::proxy {

struct session_shared;

struct server_options {
  listen_config listen;
  tls_config tls;
  limits_config limits;
  std::vector<std::string> tokens;  // accepted client tokens at start (values, not names); empty: no auth
};

class server {
 public:
  // Accepts on the pool's control context; each session runs on one of its I/O threads.
  server(io_pool& pool, server_options options, router& r);
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Binds the listener and starts accepting. Throws std::exception when it cannot bind or load
  // the TLS certificate (start-up errors). Returns the bound endpoint (port 0 picks a free one).
  boost::asio::ip::tcp::endpoint start();

  // Graceful stop (tcp_listener::stop): no new connections; each session finishes the requests
  // it has already received, sends their responses, and closes. Thread-safe, returns at once.
  // `on_stopped` is called (on some thread) once the last session has ended.
  void stop(std::function<void()> on_stopped = {});

  // Replaces the accepted client tokens (a reload rotating them). Connections that have already
  // authenticated keep working until they close; every later hello needs one of `tokens`.
  // Empty: new connections need no token. Thread-safe.
  void set_tokens(std::vector<std::string> tokens);

  // Sessions currently open.
  std::size_t connections() const;

 private:
  std::shared_ptr<session_shared> shared_;  // shared with the sessions, which may outlive a stop() call
  std::shared_ptr<tcp_listener> listener_;
};

}  // namespace tandem::proxy
