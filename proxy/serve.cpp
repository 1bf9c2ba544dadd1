#include "proxy/serve.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <thread>

#include "backends/d1_store.hpp"
#include "backends/sqlite_store.hpp"
#include "proxy/router.hpp"
#include "proxy/server.hpp"

namespace tandem::proxy {
namespace asio = boost::asio;

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("tandem");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
}

std::vector<std::string> resolve_tokens(const std::vector<std::string>& names) {
  std::vector<std::string> tokens;
  for (const auto& name : names) {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr || *v == '\0') {
      throw config_error("auth.token_envs names " + name + ", but that environment variable is unset or empty");
    }
    tokens.emplace_back(v);
  }
  return tokens;
}

void run_io(asio::io_context& ioc, std::chrono::microseconds spin) {
  if (spin.count() <= 0) {
    ioc.run();
    return;
  }
  // Like run(), but an I/O thread that runs out of handlers polls for a short while before it
  // sleeps in epoll: a store completing a request then finds it awake (see sqlite_store).
  using steady = std::chrono::steady_clock;
  auto last_work = steady::now();
  while (!ioc.stopped()) {
    if (ioc.poll() > 0) {
      last_work = steady::now();
    } else if (steady::now() - last_work < spin) {
      std::this_thread::yield();
    } else {
      ioc.run_one();
      last_work = steady::now();
    }
  }
}

backends::outcome<std::unique_ptr<backends::store>> open_store(const config& c) {
  if (c.mode == "d1-only") {
    backends::d1_options o;
    o.endpoint = c.d1.endpoint;
    o.account_id = c.d1.account_id;
    o.database_id = c.d1.database_id;
    const char* token = std::getenv(c.d1.token_env.c_str());
    if (token == nullptr || *token == '\0') {
      throw config_error("d1.token_env names " + c.d1.token_env + ", but that environment variable is unset or empty");
    }
    o.api_token = token;
    o.ca_file = c.d1.ca_file;
    o.verify_tls = c.d1.verify_tls;
    o.connect_timeout = std::chrono::milliseconds(c.d1.connect_timeout_ms);
    o.request_timeout = std::chrono::milliseconds(c.d1.request_timeout_ms);
    o.max_connections = static_cast<std::size_t>(c.d1.max_connections);
    o.max_attempts = c.d1.max_attempts;
    o.backoff_base = std::chrono::milliseconds(c.d1.backoff_base_ms);
    o.backoff_max = std::chrono::milliseconds(c.d1.backoff_max_ms);
    auto s = backends::d1_store::open(o);
    if (!s) return s.error();
    return std::unique_ptr<backends::store>(std::move(*s));
  }
  backends::sqlite_store_options so;
  so.db.path = c.sqlite.path;
  so.db.synchronous = c.sqlite.synchronous;
  so.db.busy_timeout_ms = c.sqlite.busy_timeout_ms;
  so.db.statement_cache_size = static_cast<std::size_t>(c.sqlite.statement_cache_size);
  so.readers = static_cast<std::size_t>(c.sqlite.readers);
  so.max_group_size = static_cast<std::size_t>(c.sqlite.max_group_size);
  so.spin = std::chrono::microseconds(c.spin_us);
  if (auto parent = std::filesystem::path(c.sqlite.path).parent_path(); !parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
  }
  auto s = backends::sqlite_store::open(so);
  if (!s) return s.error();
  return std::unique_ptr<backends::store>(std::move(*s));
}

int serve(const config& c) {
  validate(c);
  auto tokens = resolve_tokens(c.token_envs);

  auto store = open_store(c);
  if (!store) {
    spdlog::critical("{}", store.error().message);
    return 1;
  }
  router route(std::move(*store));

  asio::io_context ioc(c.io_threads);
  server srv(ioc, server_options{c.listen, c.tls, c.limits, tokens}, route);
  asio::ip::tcp::endpoint ep;
  try {
    ep = srv.start();
  } catch (const std::exception& e) {
    spdlog::critical("cannot listen on {}:{}: {}", c.listen.host, c.listen.port, e.what());
    return 1;
  }
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  std::function<void(const boost::system::error_code&, int)> on_signal;
  bool stopping = false;
  on_signal = [&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (stopping) {
      // Nothing unacknowledged is lost: every acknowledged write is already committed.
      spdlog::warn("signal {} again: exiting without waiting for in-flight requests", sig);
      std::_Exit(1);
    }
    stopping = true;
    spdlog::info("signal {}: stopping (finishing in-flight requests; send it again to exit at once)", sig);
    // Re-arm before stop(): with several I/O threads, the cancel that stop() posts can run on
    // another thread at once, and a wait armed after it would keep the io_context alive forever.
    signals.async_wait(on_signal);
    srv.stop([&] { asio::post(ioc, [&] { signals.cancel(); }); });
  };
  signals.async_wait(on_signal);
  spdlog::info("tandem {} serving {} in {} mode on {}:{}{}{}", TANDEM_VERSION,
               c.mode == "d1-only" ? "D1 database " + c.d1.database_id + " at " + c.d1.endpoint : c.sqlite.path, c.mode,
               ep.address().to_string(), ep.port(), c.tls.enabled ? " with TLS" : "",
               tokens.empty() ? " without authentication" : "");
  std::cout << "tandem listening on " << ep.address().to_string() << ":" << ep.port() << std::endl;

  std::vector<std::thread> threads;
  const auto spin = std::chrono::microseconds(c.spin_us);
  for (int i = 1; i < c.io_threads; ++i) threads.emplace_back([&] { run_io(ioc, spin); });
  run_io(ioc, spin);
  for (auto& t : threads) t.join();
  route.shutdown();
  spdlog::info("stopped");
  return 0;
}

}  // namespace tandem::proxy
