// The accept loop, the registry of live connections, the graceful stop and the per-operation
// deadline, written once for the three servers of a tandem process: the SQL listener
// (server.hpp, TCP), the admin endpoint (admin.hpp, TCP) and the control socket (control.hpp,
// unix). Internal to proxy/.
//
// Stopping is where three copies of this went wrong before (a CI hang, fixed three times):
// collecting the live connections on the caller's thread raced with the last one ending, the
// io_context ran out of work, and the closes posted to the connections never ran. stop() does
// everything inside one handler on the io_context instead.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

namespace tandem::proxy {

// One accepted connection, as its listener sees it. Everything it does runs on its executor, one
// handler at a time (a strand of its own, or an io_context run by one thread: see io_pool.hpp).
class connection {
 public:
  virtual ~connection() = default;
  // Runs the connection until it ends. The listener co_spawns it on executor().
  virtual boost::asio::awaitable<void> run() = 0;
  // Asks it to end (a graceful stop): what that means is the connection's to say. Called on its
  // executor.
  virtual void stop() = 0;
  virtual boost::asio::any_io_executor executor() = 0;
};

// A bound on one operation of a connection (a read, a write): arm() before it, disarm() after.
// When the bound passes first, `expired` runs on the timer's executor; it typically closes the
// socket, which fails the operation, and must keep the deadline's owner alive (it holds a
// shared_ptr to the connection). Use on the connection's executor only.
class deadline {
 public:
  explicit deadline(boost::asio::any_io_executor ex) : timer_(std::move(ex)) {}
  void arm(std::chrono::steady_clock::duration bound, std::function<void()> expired);
  void disarm();

 private:
  boost::asio::steady_timer timer_;
  std::uint64_t armed_ = 0;  // which arm() a firing timer belongs to: a late one does nothing
};

// Accepts connections on one endpoint and keeps the registry of those still running. Held by
// shared_ptr: the accept loop and the stop handler keep it alive while they run.
template <class Protocol>
class listener : public std::enable_shared_from_this<listener<Protocol>> {
 public:
  using socket_type = typename Protocol::socket;
  using endpoint_type = typename Protocol::endpoint;
  // Makes the connection for a socket just accepted (on the executor `place` chose); `live`
  // is how many connections run now, for a connection limit. May throw (out of memory, TLS):
  // that is logged, and the listener goes on accepting.
  using factory = std::function<std::shared_ptr<connection>(socket_type socket, std::size_t live)>;

  // Where an accepted connection runs: an executor that runs its handlers one at a time.
  using placement = std::function<boost::asio::any_io_executor()>;

  // `name` prefixes its log lines ("admin", "control"; "" for the SQL listener). The acceptor
  // runs on `ioc`; each connection on `place()` (default: a strand of `ioc` of its own).
  listener(boost::asio::io_context& ioc, std::string name, factory make, placement place = {});

  // Opens, binds and listens (TCP with SO_REUSEADDR), then starts accepting. Throws
  // boost::system::system_error when it cannot. Returns the bound endpoint (port 0 picks one).
  endpoint_type listen(const endpoint_type& endpoint);

  // Graceful stop, once (later calls do nothing). Thread-safe, returns at once. Inside one
  // handler on the io_context: closes the acceptor, runs `closed` if the acceptor was open (the
  // control socket removes its file), and asks every live connection to stop(). `on_stopped` is
  // called (on some thread) once the last connection has ended. A connection accepted while the
  // stop begins is closed without being served.
  void stop(std::function<void()> on_stopped = {}, std::function<void()> closed = {});

  // Connections running now.
  std::size_t connections() const;

 private:
  boost::asio::awaitable<void> accept_loop();
  void serve(socket_type socket);
  void forget(std::uint64_t id);

  boost::asio::io_context& ioc_;
  typename Protocol::acceptor acceptor_;
  const std::string prefix_;  // "admin: ", or ""
  const factory make_;
  const placement place_;
  std::atomic<bool> stop_requested_{false};
  mutable std::mutex mu_;
  bool stopping_ = false;  // under mu_, from the stop handler on
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, std::weak_ptr<connection>> live_;
  std::function<void()> on_stopped_;  // called once, when stopping and the last connection ended
};

// Compiled once, in listener.cpp.
extern template class listener<boost::asio::ip::tcp>;
extern template class listener<boost::asio::local::stream_protocol>;

using tcp_listener = listener<boost::asio::ip::tcp>;
using unix_listener = listener<boost::asio::local::stream_protocol>;

}  // namespace tandem::proxy
