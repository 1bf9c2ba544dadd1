// Helpers for tandem's tests: temporary directories, an in-process server on port 0, and a raw
// line-oriented socket for sending bytes no well-behaved client would send.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>

#include <boost/json/object.hpp>

#include "backends/sqlite_store.hpp"
#include "protocol/client.hpp"
#include "proxy/config.hpp"
#include "proxy/router.hpp"
#include "proxy/server.hpp"

namespace tandem::testing {

// A fresh directory under the system temp dir, removed on destruction.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A real tandem server in this process: SQLite file in a temp dir, bound to 127.0.0.1:0.
class test_server {
 public:
  explicit test_server(proxy::server_options options = default_options(), backends::sqlite_store_options store = {});
  // Serves the given store (e.g. a D1 store) instead of a SQLite file.
  test_server(proxy::server_options options, std::unique_ptr<backends::store> store);
  // Serves through the given router (the dual modes).
  test_server(proxy::server_options options, std::unique_ptr<proxy::router> route);
  ~test_server();

  static proxy::server_options default_options();

  protocol::client_options client_options() const;
  std::unique_ptr<protocol::client> connect() const;  // asserts success
  std::uint16_t port() const { return port_; }
  const std::string& db_path() const { return db_path_; }
  proxy::server& server() { return *server_; }
  proxy::router& router() { return *router_; }
  // Graceful stop, waiting until every session has ended.
  void stop();

 private:
  temp_dir dir_;
  std::string db_path_;
  proxy::io_pool pool_{2, std::chrono::microseconds(0)};
  std::unique_ptr<proxy::router> router_;
  std::unique_ptr<proxy::server> server_;
  std::thread control_thread_;  // runs pool_.control() (the acceptor) until the stop
  std::uint16_t port_ = 0;
  proxy::server_options options_;
  bool stopped_ = false;

  void start(std::unique_ptr<proxy::router> route);
};

// A blocking TCP connection that sends raw bytes and reads lines.
class raw_connection {
 public:
  explicit raw_connection(std::uint16_t port);
  ~raw_connection();
  void send(const std::string& bytes);
  // The next line without its '\n', or nullopt at EOF / error.
  std::optional<std::string> read_line();
  // True once the peer has closed (reads EOF), after discarding any pending lines.
  bool wait_closed();
  void close();
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::string buf_;
};

// Runs `command` with /bin/sh; its exit status (-1 if it could not run) and its stdout.
struct command_result {
  int status = -1;
  std::string output;
};
command_result run_shell(const std::string& command);

// The whole content of a file ("" when it cannot be read).
std::string read_file(const std::string& path);

// A TCP port on 127.0.0.1 that was free a moment ago (for a child process's config).
std::uint16_t free_port();

// `tandem serve --config CONFIG --log-level warn [ARGS…]` in a child process.
class proxy_process {
 public:
  proxy_process(std::string binary, std::string config, std::vector<std::string> args = {})
      : binary_(std::move(binary)), config_(std::move(config)), args_(std::move(args)) {}
  ~proxy_process() { kill9(); }
  // Starts it and waits for "tandem listening on" (fails the test if it exits first).
  void start();
  bool started() const { return started_; }
  void signal(int sig);
  void kill9();
  // SIGTERM, and expects exit status 0.
  void stop();
  // Where its stderr goes (before start(); default: this process's).
  void set_stderr(std::string path) { stderr_ = std::move(path); }
  pid_t pid() const { return pid_; }

 private:
  std::string binary_;
  std::string config_;
  std::vector<std::string> args_;
  std::string stderr_;
  pid_t pid_ = -1;
  bool started_ = false;
};

// Sends one command line to a control socket and returns the answer, parsed.
boost::json::object control_ask(const std::string& socket_path, const std::string& line);
// The newest operator event named `command` (asks `status` until one shows, with eventually()'s
// bound: a signal is handled asynchronously); fails the test and returns {} if none does.
boost::json::object wait_for_control_event(const std::string& socket_path, const std::string& command);

// Parses a response line; fails the test if it is not one.
protocol::response parse_response(const std::string& line);
// The error code of an error response line, or "OK".
std::string code_of(const std::string& line);

}  // namespace tandem::testing
