#include "proxy/session.hpp"

#include "proxy/await.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace tandem::proxy {
namespace asio = boost::asio;
using protocol::errc;
using protocol::make_error;

namespace {

constexpr auto k_tuple = asio::as_tuple(asio::use_awaitable);
// Reads start small, so that an idle connection holds little memory, and grow while they fill.
constexpr std::size_t k_min_read_chunk = 2 * 1024;
constexpr std::size_t k_max_read_chunk = 64 * 1024;
constexpr std::size_t k_flush_threshold = 256 * 1024;

// Awaits a store call; the result comes back on this coroutine's strand.
template <class T, class Start>
asio::awaitable<backends::outcome<T>> await_store(Start start) {
  return await_callback<backends::outcome<T>>(std::move(start));
}

using digest = std::array<unsigned char, 32>;

digest sha256(std::string_view s) {
  digest d{};
  unsigned int len = 0;
  EVP_Digest(s.data(), s.size(), d.data(), &len, EVP_sha256(), nullptr);
  return d;
}

// Compares in time independent of where the strings differ (and of their lengths, by comparing
// digests).
bool token_matches(std::string_view given, const std::vector<std::string>& tokens) {
  const digest g = sha256(given);
  bool match = false;
  for (const auto& t : tokens) {
    const digest d = sha256(t);
    match |= CRYPTO_memcmp(g.data(), d.data(), d.size()) == 0;
  }
  return match;
}

}  // namespace

session_shared::session_shared(server_options o, router& r)
    : options(std::move(o)),
      route(r),
      tls_context(asio::ssl::context::tls_server),
      tokens_(std::make_shared<const std::vector<std::string>>(options.tokens)) {}

std::shared_ptr<const std::vector<std::string>> session_shared::tokens() const {
  std::lock_guard lock(tokens_mu_);
  return tokens_;
}

void session_shared::set_tokens(std::vector<std::string> tokens) {
  auto next = std::make_shared<const std::vector<std::string>>(std::move(tokens));
  std::lock_guard lock(tokens_mu_);
  tokens_ = std::move(next);
}

session::session(asio::ip::tcp::socket socket, std::shared_ptr<session_shared> shared, bool over_limit)
    : socket_(std::move(socket)),
      shared_(std::move(shared)),
      tls_(shared_->options.tls.enabled),
      over_limit_(over_limit),
      id_(shared_->next_session_id++),
      idle_timer_(socket_.get_executor()),
      reader_(shared_->options.limits.max_frame_bytes),
      authenticated_(shared_->tokens()->empty()),
      last_activity_(std::chrono::steady_clock::now()) {
  // Without TLS there is no TLS stream: its engine's record buffers (2 x 17 KB) and SSL object
  // would otherwise be most of an idle connection's memory.
  if (tls_) tls_stream_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(socket_, shared_->tls_context);
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  peer_ = ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
  // Without a routing key from hello, the connection is the key (sticky for its lifetime).
  client_.routing_key = "connection-" + std::to_string(id_) + "@" + peer_;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
}

void session::touch() { last_activity_ = std::chrono::steady_clock::now(); }

void session::close_now() {
  done_ = true;
  boost::system::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  idle_timer_.cancel();
}

void session::stop() {
  closing_ = true;
  if (reading_) {
    boost::system::error_code ec;
    socket_.cancel(ec);
  }
}

asio::awaitable<void> session::run() {
  spdlog::debug("session {} from {} opened", id_, peer_);
  asio::co_spawn(executor(), [self = shared_from_this()] { return self->watchdog(); }, asio::detached);
  try {
    co_await serve();
  } catch (const std::exception& e) {
    // Only a bug lands here; it ends this session and no other.
    spdlog::error("session {} from {} failed: {}", id_, peer_, e.what());
  }
  close_now();
  spdlog::debug("session {} from {} closed", id_, peer_);
}

asio::awaitable<void> session::watchdog() {
  const auto idle = shared_->options.limits.idle_timeout;
  while (!done_) {
    idle_timer_.expires_at(last_activity_ + idle);
    co_await idle_timer_.async_wait(k_tuple);
    if (done_) co_return;
    if (!busy_ && std::chrono::steady_clock::now() >= last_activity_ + idle) {
      spdlog::info("session {} from {} idle for {} ms, closing", id_, peer_, idle.count());
      close_now();
      co_return;
    }
  }
}

asio::awaitable<bool> session::flush() {
  if (out_.empty()) co_return true;
  boost::system::error_code ec;
  if (tls_) std::tie(ec, std::ignore) = co_await asio::async_write(*tls_stream_, asio::buffer(out_), k_tuple);
  else std::tie(ec, std::ignore) = co_await asio::async_write(socket_, asio::buffer(out_), k_tuple);
  out_.clear();
  if (out_.capacity() > 4 * k_flush_threshold) out_.shrink_to_fit();
  touch();
  co_return !ec;
}

asio::awaitable<void> session::serve() {
  if (tls_) {
    auto [ec] = co_await tls_stream_->async_handshake(asio::ssl::stream_base::server, k_tuple);
    if (ec) {
      spdlog::info("session {} from {}: TLS handshake failed: {}", id_, peer_, ec.message());
      co_return;
    }
    touch();
  }
  if (over_limit_) {
    protocol::encode_response(make_error("null", errc::overloaded,
                                         "too many connections (max_connections = " +
                                             std::to_string(shared_->options.limits.max_connections) + "); try again later"),
                              out_);
    co_await flush();
    co_return;
  }
  for (;;) {
    for (bool more = true; more && !close_after_flush_;) {
      auto next = reader_.next();
      switch (next.st) {
        case protocol::frame_reader::status::frame:
          co_await handle(next.frame);
          if (out_.size() >= k_flush_threshold && !co_await flush()) co_return;
          break;
        case protocol::frame_reader::status::too_large:
          protocol::encode_response(
              make_error("null", errc::frame_too_large,
                         "a request line exceeded max_frame_bytes (" +
                             std::to_string(shared_->options.limits.max_frame_bytes) + "); closing the connection"),
              out_);
          close_after_flush_ = true;
          break;
        case protocol::frame_reader::status::need_more:
          more = false;
          break;
      }
    }
    if (!co_await flush()) co_return;
    if (closing_ || close_after_flush_ || done_) co_return;

    if (read_chunk_ == 0) read_chunk_ = k_min_read_chunk;
    char* buf = reader_.prepare(read_chunk_);
    reading_ = true;
    boost::system::error_code ec;
    std::size_t n = 0;
    if (tls_) std::tie(ec, n) = co_await tls_stream_->async_read_some(asio::buffer(buf, read_chunk_), k_tuple);
    else std::tie(ec, n) = co_await socket_.async_read_some(asio::buffer(buf, read_chunk_), k_tuple);
    reading_ = false;
    reader_.commit(n);
    if (n == read_chunk_ && read_chunk_ < k_max_read_chunk) read_chunk_ *= 2;
    if (ec) {
      // EOF, reset, cancellation by a graceful stop: all end the session. Bytes that arrived
      // with the error were committed; a partial frame without its newline is dropped.
      if (ec == asio::error::operation_aborted && closing_ && !done_) continue;
      co_return;
    }
    touch();
  }
}

asio::awaitable<void> session::handle(std::string_view frame) {
  auto decoded = protocol::decode_request(frame, {shared_->options.limits.max_batch_statements});
  if (auto* err = std::get_if<protocol::response>(&decoded)) {
    protocol::encode_response(*err, out_);
    co_return;
  }
  auto& req = std::get<protocol::request>(decoded);
  busy_ = true;
  auto resp = co_await execute(req);
  busy_ = false;
  touch();
  protocol::encode_response(resp, out_);
}

protocol::response session::hello(const protocol::request& req) {
  // The tokens in force at this hello: after a rotation, the new ones (a connection that
  // authenticated before keeps its session).
  const auto tokens = shared_->tokens();
  if (!tokens->empty() && !token_matches(req.hello.token, *tokens)) {
    spdlog::warn("session {} from {}: hello with a wrong or missing token; closing", id_, peer_);
    close_after_flush_ = true;
    return make_error(req.id_json, errc::unauthorized, "wrong or missing token");
  }
  authenticated_ = true;
  if (!req.hello.routing_key.empty()) {
    client_.routing_key = req.hello.routing_key;
    client_.key_given = key_from_hello_ = true;
  }
  if (!req.hello.min_seq.empty()) hello_min_seq_ = req.hello.min_seq;
  protocol::hello_result h;
  h.version = TANDEM_VERSION;
  return {req.id_json, protocol::success{h}};
}

asio::awaitable<protocol::response> session::execute(protocol::request& req) {
  if (req.kind == protocol::op::hello) co_return hello(req);
  if (!authenticated_) {
    co_return make_error(req.id_json, errc::unauthorized, "authenticate first: send hello with a token");
  }
  backends::exec_options opts;
  opts.deadline = backends::clock::now() + shared_->options.limits.query_timeout;
  // A per-request routing key applies to this request only (requests run one at a time).
  struct key_override {
    client_context& client;
    std::string saved;
    bool key_given;
    ~key_override() {
      if (!saved.empty()) client.routing_key = std::move(saved);
      client.key_given = key_given;
    }
  } restore{client_, {}, key_from_hello_};
  if (!req.routing_key.empty()) {
    restore.saved = std::exchange(client_.routing_key, req.routing_key);
    client_.key_given = true;
  }
  // The request's min_seq stands for this request; without one, hello's does.
  client_.min_seq = req.min_seq.empty() ? hello_min_seq_ : req.min_seq;
  client_.min_seq_leader = req.min_seq_leader;
  switch (req.kind) {
    case protocol::op::ping:
      co_return protocol::response{req.id_json, protocol::success{protocol::ping_result{}}};
    case protocol::op::query: {
      // A short read may run on this I/O thread (sqlite_store::try_inline).
      opts.may_run_inline = true;
      auto start = [&](backends::query_done done) {
        shared_->route.execute(client_, std::move(req.statements[0]), opts, std::move(done));
      };
      auto r = co_await await_store<protocol::query_result>(start);
      if (!r) co_return protocol::response{req.id_json, std::move(r.error())};
      co_return protocol::response{req.id_json, protocol::success{std::move(*r)}};
    }
    case protocol::op::batch: {
      auto start = [&](backends::batch_done done) {
        shared_->route.execute_batch(client_, std::move(req.statements), opts, std::move(done));
      };
      auto r = co_await await_store<std::vector<protocol::query_result>>(start);
      if (!r) co_return protocol::response{req.id_json, std::move(r.error())};
      co_return protocol::response{req.id_json, protocol::success{std::move(*r)}};
    }
    case protocol::op::hello:
      break;
  }
  co_return make_error(req.id_json, errc::internal, "unhandled op");
}

}  // namespace tandem::proxy
