// The one translation unit of proxy/ that includes Boost.Beast (each costs seconds to compile).
#include "proxy/admin.hpp"

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <mutex>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/serialize.hpp>

#include "proxy/await.hpp"
#include "proxy/control.hpp"
#include "proxy/d1_lease.hpp"
#include "proxy/dashboard.hpp"

namespace tandem::proxy {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace {

constexpr auto k_tuple = asio::as_tuple(asio::use_awaitable);
constexpr auto k_timeout = std::chrono::seconds(30);

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

response reply(const request& req, http::status status, std::string body, std::string type = "application/json") {
  response r{status, req.version()};
  r.set(http::field::server, "tandem");
  r.set(http::field::content_type, type);
  r.set(http::field::cache_control, "no-store");
  r.keep_alive(req.keep_alive());
  r.body() = std::move(body);
  r.prepare_payload();
  return r;
}

bool token_ok(const request& req, const std::string& token) {
  if (token.empty()) return true;
  const std::string expected = "Bearer " + token;
  const auto given = req[http::field::authorization];
  return given.size() == expected.size() && CRYPTO_memcmp(given.data(), expected.data(), expected.size()) == 0;
}

double ms_since(backends::clock::time_point start) {
  return std::chrono::duration<double, std::milli>(backends::clock::now() - start).count();
}

}  // namespace

struct admin_server::impl : std::enable_shared_from_this<impl> {
  impl(admin_options options, router& r) : options(std::move(options)), route(r) {}

  // One HTTP connection: keep-alive requests, one at a time, each read and write bounded.
  struct http_connection final : connection, std::enable_shared_from_this<http_connection> {
    http_connection(tcp::socket s, std::shared_ptr<impl> server) : socket(std::move(s)), bound(socket.get_executor()), server(std::move(server)) {}
    asio::awaitable<void> run() override { return server->serve(shared_from_this()); }
    void stop() override {
      beast::error_code ignored;
      socket.close(ignored);
    }
    asio::any_io_executor executor() override { return socket.get_executor(); }
    // Bounds the next read or write: a client that stalls is closed.
    void expires_after(std::chrono::seconds d) {
      bound.arm(d, [self = shared_from_this()] { self->stop(); });
    }

    tcp::socket socket;
    deadline bound;
    std::shared_ptr<impl> server;
  };

  tcp_listener::factory connections() {
    return [self = shared_from_this()](tcp::socket socket, std::size_t) {
      return std::make_shared<http_connection>(std::move(socket), self);
    };
  }

  asio::awaitable<void> serve(std::shared_ptr<http_connection> c) {
    beast::flat_buffer buffer;
    for (;;) {
      request req;
      c->expires_after(k_timeout);
      auto [ec, n] = co_await http::async_read(c->socket, buffer, req, k_tuple);
      if (ec) break;  // closed, timed out, or not HTTP: nothing to answer
      c->bound.disarm();  // answering may take a while (a health check of D1)
      auto res = co_await handle(req);
      c->expires_after(k_timeout);
      auto [wec, wn] = co_await http::async_write(c->socket, res, k_tuple);
      if (wec || !res.keep_alive()) break;
    }
    c->bound.disarm();
    beast::error_code ignored;
    c->socket.shutdown(tcp::socket::shutdown_both, ignored);
  }

  asio::awaitable<response> handle(const request& req) {
    const auto target = std::string_view(req.target().data(), req.target().size());
    const auto path = target.substr(0, target.find('?'));
    if (path == "/" && req.method() == http::verb::get) {
      co_return reply(req, http::status::ok, std::string(dashboard_html()), "text/html; charset=utf-8");
    }
    if (!token_ok(req, token())) {
      auto r = reply(req, http::status::unauthorized, R"({"error":"a valid bearer token is required"})");
      r.set(http::field::www_authenticate, "Bearer");
      co_return r;
    }
    if (req.method() != http::verb::get) {
      auto r = reply(req, http::status::method_not_allowed, R"({"error":"only GET is supported"})");
      r.set(http::field::allow, "GET");
      co_return r;
    }
    if (path == "/health/database") co_return co_await health(req);
    if (path == "/metrics") co_return reply(req, http::status::ok, metrics_now(route).prometheus(), "text/plain; version=0.0.4; charset=utf-8");
    if (path == "/status") co_return reply(req, http::status::ok, json::serialize(status_source ? status_source() : status_of(route)));
    co_return reply(req, http::status::not_found,
                    R"({"error":"not found","endpoints":["/","/health/database","/metrics","/status"]})");
  }

  // The store's health: `SELECT 1` and its latency.
  asio::awaitable<json::object> sqlite_health() {
    auto* s = route.sqlite();
    if (s == nullptr) co_return json::object{{"ok", false}, {"configured", false}};
    const auto start = backends::clock::now();
    backends::exec_options o;
    o.internal = true;
    o.deadline = start + std::chrono::seconds(5);
    // Named, not a temporary in the co_await expression (GCC PR 101367, see await.hpp).
    auto run = [s, o](auto done) { s->execute({"SELECT 1", {}}, o, std::move(done)); };
    auto r = co_await await_callback<backends::outcome<protocol::query_result>>(std::move(run));
    json::object h{{"ok", bool(r)}, {"latencyMs", ms_since(start)}};
    if (!r) h["error"] = r.error().message;
    co_return h;
  }

  asio::awaitable<json::object> d1_health() {
    auto* d = route.d1();
    if (d == nullptr) co_return json::object{{"ok", false}, {"configured", false}};
    auto run = [d](auto done) { d->health(std::move(done)); };
    auto h = co_await await_callback<backends::d1_health>(std::move(run));
    json::object o{{"ok", h.ok}, {"latencyMs", h.latency_ms}};
    if (!h.ok) o["error"] = h.error;
    co_return o;
  }

  asio::awaitable<response> health(const request& req) {
    auto sqlite = co_await sqlite_health();
    auto d1 = co_await d1_health();
    const mode m = route.current_mode();
    const bool leader_ok = (m == mode::sqlite_only || m == mode::dual_sqlite) ? sqlite.at("ok").as_bool() : d1.at("ok").as_bool();
    // A follower that refuses a journal entry is unhealthy: what it holds falls further behind
    // with every write until the operator acts (the leader, and so the application, is fine).
    if (auto rep = route.replication()) {
      if (auto st = rep->stopped()) {
        auto& follower = (m == mode::dual_sqlite) ? d1 : sqlite;
        follower["ok"] = false;
        follower["error"] = "replication stopped at seq " + std::to_string(st->seq) + ": the follower refuses it: " + st->error;
        follower["replicationStoppedSeq"] = st->seq;
      }
      if (auto why = rep->rebuild_needed()) {
        auto& follower = (m == mode::dual_sqlite) ? d1 : sqlite;
        follower["ok"] = false;
        follower["error"] = "the follower must be rebuilt: " + *why;
        follower["rebuildNeeded"] = true;
      }
    }
    json::object dual{{"mode", to_string(m)}, {"metrics", metrics_now(route).snapshot()}};
    if (auto* lease = route.lease()) dual["lease"] = lease->status();
    json::object body{{"status", leader_ok ? "ok" : "unhealthy"},
                      {"sqlite", std::move(sqlite)},
                      {"d1", std::move(d1)},
                      {"dualWrite", std::move(dual)}};
    co_return reply(req, leader_ok ? http::status::ok : http::status::service_unavailable, json::serialize(body));
  }

  admin_options options;
  router& route;
  std::function<json::object()> status_source;
  std::mutex mu;
  std::string token() {
    std::lock_guard lock(mu);
    return options.token;
  }
};

admin_server::admin_server(asio::io_context& ioc, admin_options options, router& r)
    : impl_(std::make_shared<impl>(std::move(options), r)), listener_(std::make_shared<tcp_listener>(ioc, "admin", impl_->connections())) {}

admin_server::~admin_server() { stop(); }

tcp::endpoint admin_server::start() {
  return listener_->listen(tcp::endpoint(asio::ip::make_address(impl_->options.host), impl_->options.port));
}

void admin_server::set_status(std::function<json::object()> status) { impl_->status_source = std::move(status); }

void admin_server::set_token(std::string token) {
  std::lock_guard lock(impl_->mu);
  impl_->options.token = std::move(token);
}

void admin_server::stop() { listener_->stop(); }

}  // namespace tandem::proxy
