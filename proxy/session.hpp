// One client connection: reads frames, runs requests in order, writes responses in order.
// Internal to proxy/ (the server creates sessions, its listener runs and stops them).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>

#include "protocol/codec.hpp"
#include "proxy/listener.hpp"
#include "proxy/router.hpp"
#include "proxy/server.hpp"

namespace tandem::proxy {

// What the server shares with its sessions. Lives as long as the last of them.
struct session_shared {
  session_shared(server_options o, router& r);

  server_options options;
  router& route;
  boost::asio::ssl::context tls_context;  // configured only when options.tls.enabled
  std::atomic<std::uint64_t> next_session_id{1};

  // The client tokens in force now (options.tokens until a reload replaces them). Thread-safe.
  std::shared_ptr<const std::vector<std::string>> tokens() const;
  void set_tokens(std::vector<std::string> tokens);

 private:
  mutable std::mutex tokens_mu_;
  std::shared_ptr<const std::vector<std::string>> tokens_;
};

// Shared by its own coroutines (the connection and its idle watchdog) and by the listener's
// registry (which must reach it to stop it): hence enable_shared_from_this.
class session : public connection, public std::enable_shared_from_this<session> {
 public:
  // `socket`'s executor must run one handler at a time (a strand, or an io_pool thread's
  // context): everything the session does runs on it.
  session(boost::asio::ip::tcp::socket socket, std::shared_ptr<session_shared> shared, bool over_limit);

  // Runs the connection until it ends. co_spawn it on the socket's executor.
  boost::asio::awaitable<void> run() override;

  // A graceful stop: the session finishes the requests it has received, sends their responses,
  // and closes. Call on its strand.
  void stop() override;

  boost::asio::any_io_executor executor() override { return socket_.get_executor(); }

 private:
  boost::asio::awaitable<void> serve();
  boost::asio::awaitable<void> handle(std::string_view frame);
  boost::asio::awaitable<protocol::response> execute(protocol::request& req);
  boost::asio::awaitable<bool> flush();
  boost::asio::awaitable<void> watchdog();
  protocol::response hello(const protocol::request& req);
  void touch();
  void close_now();

  boost::asio::ip::tcp::socket socket_;
  std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>> tls_stream_;  // only with TLS
  std::shared_ptr<session_shared> shared_;
  const bool tls_;
  const bool over_limit_;
  const std::uint64_t id_;
  std::string peer_;
  boost::asio::steady_timer idle_timer_;
  protocol::frame_reader reader_;
  std::size_t read_chunk_ = 0;  // bytes asked of the next read (grows while reads fill it)
  std::string out_;
  client_context client_;
  bool key_from_hello_ = false;       // hello named the routing key (client_.key_given between requests)
  protocol::position hello_min_seq_;  // hello's min_seq: for requests that carry none
  bool authenticated_;
  bool closing_ = false;           // graceful close requested
  bool close_after_flush_ = false;  // a fatal protocol error: answer, then close
  bool reading_ = false;
  bool busy_ = false;               // a request is executing (not idle)
  bool done_ = false;
  std::chrono::steady_clock::time_point last_activity_;
};

}  // namespace tandem::proxy
