// The admin HTTP endpoint (Boost.Beast): health, Prometheus metrics and status for operators and
// monitoring. A separate port from the SQL listener, bound to 127.0.0.1 by default.
//
//   GET /health/database  the migration guide's shape: {"sqlite": {...}, "d1": {...},
//                         "dualWrite": {"mode", "metrics"}}; 200 when the leader is healthy,
//                         503 otherwise
//   GET /metrics          Prometheus text format
//   GET /status           JSON: what `tandem ctl status` shows (with a control server; without
//                         one the same, status_of in control.hpp, less the rollout and events)
//   GET /                 the live dashboard (polls /status); served without the token, since
//                         it holds no data: it asks for the token when /status needs one
//
// With a token configured, every request needs `Authorization: Bearer <token>` (401 otherwise).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/json/object.hpp>

#include "proxy/listener.hpp"
#include "proxy/router.hpp"

namespace tandem::proxy {

struct admin_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6441;
  std::string token;  // the value at start (from the variable or file the config names); empty: none
};

class admin_server {
 public:
  admin_server(boost::asio::io_context& ioc, admin_options options, router& r);
  ~admin_server();
  admin_server(const admin_server&) = delete;
  admin_server& operator=(const admin_server&) = delete;

  // What GET /status answers (the control server's status). Call before the io_context runs.
  void set_status(std::function<boost::json::object()> status);
  // Replaces the bearer token (a reload rotating it): every request from now on, on new and
  // open connections alike, needs the new one. Empty: none. Thread-safe.
  void set_token(std::string token);

  // Binds and starts accepting. Throws std::exception when it cannot bind (start-up error).
  boost::asio::ip::tcp::endpoint start();
  // Stops accepting and closes open connections (tcp_listener::stop). Thread-safe, returns at
  // once. Idempotent.
  void stop();

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
  std::shared_ptr<tcp_listener> listener_;
};

}  // namespace tandem::proxy
