// A small synchronous C++ client for protocol v1, used by `tandem shell`, `tandem bench` and the
// tests. One connection, not thread-safe: use one client per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <boost/system/result.hpp>

#include "protocol/messages.hpp"

namespace tandem::protocol {

struct client_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6440;
  bool tls = false;
  bool tls_verify = true;   // verify the server certificate and host name
  std::string ca_file;      // extra CA for self-signed test certificates
  std::string token;        // sent in hello when not empty
  std::string routing_key;  // sent in hello when not empty
  position min_seq;         // sent in hello when not empty: a position from an earlier connection
  std::string client_name = "tandem-cpp";
  std::chrono::milliseconds timeout{30000};  // per request/response exchange
};

// Parses `tandem://host:port/?token=…&routing_key=…&tls=1&tls_verify=0&ca_file=…`.
// Anything unknown or malformed is an error naming it.
boost::system::result<client_options, error> parse_url(std::string_view url);

template <class T>
using outcome = boost::system::result<T, error>;

class client {
 public:
  // Connects and, when a token, routing key or min_seq is set, says hello. Transport failures
  // are UNAVAILABLE; a refused hello is the server's error.
  static outcome<std::unique_ptr<client>> connect(const client_options& options);
  ~client();

  // Closes the connection and opens a new one with the same options; its hello carries
  // position() (so reads after a reconnect still see this client's writes). Responses not yet
  // received are lost.
  outcome<void> reconnect();

  // The newest journal position (meta.seq) this client has received, across reconnects. It is
  // sent as min_seq with every query and batch that has none (PROTOCOL.md §15).
  const protocol::position& position() const noexcept { return position_; }

  outcome<query_result> query(std::string sql, params p = {});
  outcome<std::vector<query_result>> batch(std::vector<statement> statements);
  outcome<ping_result> ping();

  // Pipelining: send any number of requests, then receive their responses in order.
  // send() assigns the id when the request has none ("null"), and position() as min_seq to a
  // query or batch that has none. A transport failure closes the client: every later call
  // returns UNAVAILABLE.
  outcome<void> send(request r);
  outcome<response> receive();

  const client_options& options() const noexcept { return options_; }

 private:
  struct impl;
  explicit client(std::unique_ptr<impl> impl, client_options options);
  static outcome<std::unique_ptr<impl>> open(const client_options& options);
  outcome<void> hello();
  std::unique_ptr<impl> impl_;
  client_options options_;
  std::int64_t next_id_ = 1;
  protocol::position position_;
};

}  // namespace tandem::protocol
