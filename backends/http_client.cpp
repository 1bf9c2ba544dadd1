#include "backends/http_client.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <deque>
#include <random>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace tandem::backends {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using protocol::errc;
using protocol::error;

namespace {

constexpr auto k_tuple = asio::as_tuple(asio::use_awaitable);

error unavailable(std::string m) { return error{errc::unavailable, std::move(m), "d1", {}}; }

}  // namespace

outcome<http_url> parse_http_url(std::string_view url) {
  http_url u;
  auto bad = [&](const std::string& why) {
    return error{errc::bad_request, "bad endpoint URL '" + std::string(url) + "': " + why, "d1", {}};
  };
  std::string_view rest;
  if (url.substr(0, 8) == "https://") {
    u.tls = true;
    rest = url.substr(8);
  } else if (url.substr(0, 7) == "http://") {
    u.tls = false;
    rest = url.substr(7);
  } else {
    return bad("it must start with https:// or http://");
  }
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  u.base_path = std::string(path);
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated [");
    u.host = std::string(authority.substr(1, close - 1));
    authority = authority.substr(close + 1);
  } else {
    const auto colon = authority.find(':');
    u.host = std::string(authority.substr(0, colon));
    authority = colon == std::string_view::npos ? std::string_view{} : authority.substr(colon);
  }
  if (u.host.empty()) return bad("missing host");
  if (!authority.empty()) {
    if (authority.front() != ':') return bad("junk after the host");
    const auto p = authority.substr(1);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (ec != std::errc() || end != p.data() + p.size() || port == 0 || port > 65535) return bad("bad port");
    u.port = std::string(p);
  } else {
    u.port = u.tls ? "443" : "80";
  }
  return u;
}

struct http_client::impl {
  using ssl_stream = beast::ssl_stream<beast::tcp_stream>;

  struct connection {
    std::unique_ptr<beast::tcp_stream> plain;
    std::unique_ptr<ssl_stream> secure;
    beast::flat_buffer buffer;
    clock::time_point idle_since;  // when it was last handed back to the pool

    beast::tcp_stream& tcp() { return plain ? *plain : beast::get_lowest_layer(*secure); }
  };

  impl(asio::any_io_executor e, http_client_options o)
      : ex(std::move(e)), options(std::move(o)), ssl_ctx(asio::ssl::context::tls_client), rng(std::random_device{}()) {
    if (options.url.tls) {
      if (options.verify_tls) {
        ssl_ctx.set_default_verify_paths();
        if (!options.ca_file.empty()) {
          boost::system::error_code ec;
          ssl_ctx.load_verify_file(options.ca_file, ec);
          ca_error = ec ? "cannot load CA file '" + options.ca_file + "': " + ec.message() : "";
        }
        ssl_ctx.set_verify_mode(asio::ssl::verify_peer);
      } else {
        ssl_ctx.set_verify_mode(asio::ssl::verify_none);
      }
    }
  }

  std::string where() const {
    return (options.url.tls ? "https://" : "http://") + options.url.host + ":" + options.url.port;
  }

  // A connection nobody is using, idle less than max_idle, whose peer has not closed it, or a
  // new one.
  asio::awaitable<outcome<std::unique_ptr<connection>>> acquire(clock::time_point deadline) {
    while (active >= std::max<std::size_t>(options.max_connections, 1)) {
      auto timer = std::make_shared<asio::steady_timer>(ex, deadline);
      waiters.push_back(timer);
      co_await timer->async_wait(k_tuple);
      if (clock::now() >= deadline) {
        co_return error{errc::timeout, "timed out waiting for a free connection to D1 (max_connections = " +
                                           std::to_string(options.max_connections) + ")", "d1", {}};
      }
    }
    ++active;
    while (!idle.empty()) {
      auto c = std::move(idle.back());
      idle.pop_back();
      if (clock::now() - c->idle_since < options.max_idle && still_open(*c)) co_return c;
    }
    auto fresh = co_await connect(deadline);
    if (!fresh) release(nullptr);
    co_return fresh;
  }

  // Hands the connection back (null: it was closed) and wakes one waiter.
  void release(std::unique_ptr<connection> c) {
    --active;
    if (c) {
      c->idle_since = clock::now();
      idle.push_back(std::move(c));
    }
    while (!waiters.empty()) {
      auto w = waiters.front().lock();
      waiters.pop_front();
      if (w) {
        w->cancel();
        break;
      }
    }
  }

  // A pooled connection the server closed while it sat idle would fail our next request in a
  // way that looks like "sent, outcome unknown". Peek first: readable means closed (or a TLS
  // close_notify), and the connection is dropped before anything is sent on it.
  static bool still_open(connection& c) {
    auto& sock = c.tcp().socket();
    char byte;
    const auto n = ::recv(sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  asio::awaitable<outcome<std::unique_ptr<connection>>> connect(clock::time_point deadline) {
    if (!ca_error.empty()) co_return unavailable(ca_error);
    auto c = std::make_unique<connection>();
    tcp::resolver resolver(ex);
    auto [rec, endpoints] = co_await resolver.async_resolve(options.url.host, options.url.port, k_tuple);
    if (rec) co_return unavailable("cannot resolve " + options.url.host + ": " + rec.message());
    const auto connect_deadline = std::min(deadline, clock::now() + options.connect_timeout);
    if (options.url.tls) {
      c->secure = std::make_unique<ssl_stream>(ex, ssl_ctx);
    } else {
      c->plain = std::make_unique<beast::tcp_stream>(ex);
    }
    c->tcp().expires_at(connect_deadline);
    auto [cec, ep] = co_await c->tcp().async_connect(endpoints, k_tuple);
    ++stats.connects;
    if (cec) co_return unavailable("cannot connect to D1 at " + where() + ": " + cec.message());
    c->tcp().socket().set_option(tcp::no_delay(true));
    if (c->secure) {
      if (!SSL_set_tlsext_host_name(c->secure->native_handle(), options.url.host.c_str())) {
        co_return unavailable("cannot set TLS SNI for " + options.url.host);
      }
      if (options.verify_tls) c->secure->set_verify_callback(asio::ssl::host_name_verification(options.url.host));
      auto [hec] = co_await c->secure->async_handshake(asio::ssl::stream_base::client, k_tuple);
      if (hec) {
        // A certificate that does not verify will not verify on the next try either.
        handshake_refused = hec.category() == asio::error::get_ssl_category();
        co_return unavailable("TLS handshake with " + where() + " failed: " + hec.message());
      }
    }
    co_return c;
  }

  struct attempt {
    enum class kind { reply, not_sent, sent_no_reply, timeout_after_send, too_large } what = kind::reply;
    http_reply reply;
    std::string retry_after;
    bool keep_alive = false;
    std::string detail;
  };

  template <class Stream>
  asio::awaitable<attempt> exchange(Stream& stream, connection& c, http::request<http::string_body>& req,
                                    clock::time_point deadline) {
    attempt a;
    c.tcp().expires_at(std::min(deadline, clock::now() + options.request_timeout));
    auto [wec, wn] = co_await http::async_write(stream, req, k_tuple);
    if (wec) {
      // An incomplete request is never executed: the server waits for the rest of the body.
      a.what = attempt::kind::not_sent;
      a.detail = wec.message();
      co_return a;
    }
    ++stats.requests;
    if (auto* n = counter.load(std::memory_order_acquire)) n->fetch_add(1, std::memory_order_relaxed);
    http::response_parser<http::string_body> parser;
    parser.body_limit(options.max_response_bytes);
    auto [rec, rn] = co_await http::async_read(stream, c.buffer, parser, k_tuple);
    if (rec) {
      a.what = rec == http::error::body_limit ? attempt::kind::too_large
               : rec == beast::error::timeout  ? attempt::kind::timeout_after_send
                                               : attempt::kind::sent_no_reply;
      a.detail = rec.message();
      co_return a;
    }
    auto res = parser.release();
    a.reply.status = res.result_int();
    a.reply.body = std::move(res.body());
    a.keep_alive = res.keep_alive();
    if (auto it = res.find(http::field::retry_after); it != res.end()) a.retry_after = std::string(it->value());
    for (const auto& name : options.reply_headers) {
      if (auto it = res.find(name); it != res.end()) a.reply.headers.emplace_back(name, std::string(it->value()));
    }
    co_return a;
  }

  std::chrono::milliseconds backoff(int attempt_no, const std::string& retry_after) {
    const auto cap = options.backoff_max.count();
    const auto exp = std::min<long long>(cap, options.backoff_base.count() << std::min(attempt_no, 20));
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    auto ms = static_cast<long long>(exp * jitter(rng));
    long long seconds = 0;
    auto [p, ec] = std::from_chars(retry_after.data(), retry_after.data() + retry_after.size(), seconds);
    if (ec == std::errc() && seconds > 0) ms = std::max(ms, std::min<long long>(seconds * 1000, cap));
    return std::chrono::milliseconds(ms);
  }

  asio::any_io_executor ex;
  http_client_options options;
  asio::ssl::context ssl_ctx;
  std::string ca_error;
  bool handshake_refused = false;  // the last connect failed TLS verification
  std::vector<std::unique_ptr<connection>> idle;
  std::deque<std::weak_ptr<asio::steady_timer>> waiters;
  std::size_t active = 0;
  std::mt19937_64 rng;
  http_stats stats;
  std::atomic<std::atomic<std::uint64_t>*> counter{nullptr};  // count_requests_into
};

http_client::http_client(asio::any_io_executor ex, http_client_options options)
    : impl_(std::make_unique<impl>(std::move(ex), std::move(options))) {}

http_client::~http_client() = default;

http_stats http_client::stats() const {
  auto s = impl_->stats;
  s.open_connections = impl_->active + impl_->idle.size();
  return s;
}

void http_client::close_idle() { impl_->idle.clear(); }

void http_client::count_requests_into(std::atomic<std::uint64_t>* counter) noexcept { impl_->counter.store(counter, std::memory_order_release); }

asio::awaitable<outcome<http_reply>> http_client::post(std::string path, std::string body,
                                                      std::vector<std::pair<std::string, std::string>> headers,
                                                      bool idempotent, clock::time_point deadline) {
  auto& m = *impl_;
  http::request<http::string_body> req{http::verb::post, m.options.url.base_path + path, 11};
  req.set(http::field::host, m.options.url.host);
  req.set(http::field::user_agent, "tandem/" TANDEM_VERSION);
  req.set(http::field::content_type, "application/json");
  req.set(http::field::connection, "keep-alive");
  for (auto& [k, v] : headers) req.set(k, v);
  req.body() = std::move(body);
  req.prepare_payload();

  std::string last_problem;
  for (int attempt_no = 0;; ++attempt_no) {
    if (attempt_no > 0) {
      ++m.stats.retries;
    }
    if (clock::now() >= deadline) {
      co_return error{errc::timeout, "D1 request timed out" + (last_problem.empty() ? "" : " (last: " + last_problem + ")"), "d1", {}};
    }
    m.handshake_refused = false;
    auto conn = co_await m.acquire(deadline);
    impl::attempt a;
    if (!conn) {
      if (conn.error().code == errc::timeout || m.handshake_refused || !m.ca_error.empty()) co_return conn.error();
      a.what = impl::attempt::kind::not_sent;
      a.detail = conn.error().message;
    } else {
      auto& c = **conn;
      if (c.secure) a = co_await m.exchange(*c.secure, c, req, deadline);
      else a = co_await m.exchange(*c.plain, c, req, deadline);
      const bool reusable = a.what == impl::attempt::kind::reply && a.keep_alive;
      m.release(reusable ? std::move(*conn) : nullptr);
    }

    bool retry = false;
    switch (a.what) {
      case impl::attempt::kind::not_sent:
        retry = true;
        last_problem = a.detail;
        break;
      case impl::attempt::kind::sent_no_reply:
      case impl::attempt::kind::timeout_after_send:
        last_problem = a.detail;
        if (!idempotent) {
          const bool timed_out = a.what == impl::attempt::kind::timeout_after_send;
          co_return error{timed_out ? errc::timeout : errc::unavailable,
                          std::string(timed_out ? "D1 did not answer in time" : "the connection to D1 failed") +
                              " after the request was sent (" + a.detail +
                              "): outcome unknown, the write may or may not have been applied",
                          "d1", {}};
        }
        retry = true;
        break;
      case impl::attempt::kind::too_large:
        // The connection is dropped (the rest of the body is unread). Whatever the request did,
        // it did: a write is reported as applied or not by the caller's own recovery.
        co_return error{errc::unsupported,
                        "D1's answer is larger than tandem takes (" + std::to_string(m.options.max_response_bytes >> 20) +
                            " MiB): read fewer rows at a time (LIMIT and a key range)" +
                            (idempotent ? "" : "; the write was sent, its outcome is unknown"),
                        "d1", {}};
      case impl::attempt::kind::reply:
        if (a.reply.status == 429 || (idempotent && a.reply.status >= 500)) {
          retry = true;
          last_problem = "HTTP " + std::to_string(a.reply.status);
        }
        break;
    }
    if (!retry) co_return a.reply;
    const auto wait = m.backoff(attempt_no, a.retry_after);
    const bool out_of_attempts = attempt_no + 1 >= m.options.max_attempts;
    if (out_of_attempts || clock::now() + wait >= deadline) {
      if (a.what == impl::attempt::kind::reply) co_return a.reply;  // the caller maps 429/5xx
      const std::string why = out_of_attempts ? " after " + std::to_string(attempt_no + 1) + " attempts" : " (no time left to retry)";
      if (a.what == impl::attempt::kind::timeout_after_send)
        co_return error{errc::timeout, "D1 did not answer in time" + why, "d1", {}};
      co_return unavailable("cannot reach D1 at " + m.where() + why + ": " + last_problem);
    }
    asio::steady_timer timer(m.ex, wait);
    co_await timer.async_wait(k_tuple);
  }
}

}  // namespace tandem::backends
