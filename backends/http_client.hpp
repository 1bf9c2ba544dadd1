// A small HTTP/1.1 client for D1's REST API: keep-alive connection pool, TLS with certificate
// and host-name verification, deadlines, and retries with exponential backoff and jitter for
// what is safe to repeat. One of the two translation units that include Boost.Beast (proxy/admin.cpp,
// the admin HTTP endpoint, is the other): keep Beast out of headers.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "backends/store.hpp"

namespace tandem::backends {

struct http_url {
  bool tls = true;
  std::string host;
  std::string port;
  std::string base_path;  // without a trailing '/'
};

// Parses "https://host[:port][/base]" or "http://…". The error names what is wrong.
outcome<http_url> parse_http_url(std::string_view url);

struct http_client_options {
  http_url url;
  std::string ca_file;     // extra CA to trust (e.g. a test's self-signed certificate)
  bool verify_tls = true;  // certificate chain and host name
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{30000};  // per attempt
  std::size_t max_connections = 16;                  // open at once; more requests wait
  int max_attempts = 5;                              // tries for a request that may be repeated
  std::chrono::milliseconds backoff_base{100};
  std::chrono::milliseconds backoff_max{5000};
  // The largest answer body taken. A larger one fails at once (UNSUPPORTED, not retried: it
  // would be as large again), instead of passing for an unreachable D1.
  std::size_t max_response_bytes = 64u << 20;
  // Answer headers the caller reads (http_reply::header); others are not kept.
  std::vector<std::string> reply_headers;
  // A pooled connection idle longer than this is closed, not reused. Servers close idle
  // keep-alive connections (Node's default, and the local D1's, after 5 s); one that closes as a
  // request is sent leaves a write's outcome unknown. Below such a timeout, a request never
  // meets that race; above it, the cost is a new connection after an idle spell.
  std::chrono::milliseconds max_idle{3000};
};

struct http_reply {
  unsigned status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // those named in reply_headers that came
  // The value of header `name` (one of reply_headers), or empty.
  std::string header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return v;
    }
    return {};
  }
};

struct http_stats {
  std::uint64_t requests = 0;  // attempts sent
  std::uint64_t retries = 0;
  std::uint64_t connects = 0;
  std::size_t open_connections = 0;
};

class http_client {
 public:
  // All calls must come from coroutines on `ex`, which must not run handlers concurrently
  // (one thread, or a strand).
  http_client(boost::asio::any_io_executor ex, http_client_options options);
  ~http_client();

  // POSTs `body` (JSON) to base_path + path with the given extra headers.
  //  - Failures before the request was sent (connect, TLS handshake, a pooled connection found
  //    closed) are retried for every request, as are 429 answers (honouring Retry-After).
  //  - 5xx answers, and connections that fail after the request was sent, are retried only when
  //    `idempotent`; otherwise a sent request that got no answer is UNAVAILABLE/TIMEOUT with
  //    "outcome unknown", and a 5xx answer is returned as it is.
  //  - Nothing is tried after `deadline`.
  // Any HTTP answer that is not retried is returned as a reply, whatever its status.
  boost::asio::awaitable<outcome<http_reply>> post(std::string path, std::string body,
                                                   std::vector<std::pair<std::string, std::string>> headers,
                                                   bool idempotent, clock::time_point deadline);

  http_stats stats() const;

  // Also counts each request sent into `counter` (null: stop). Thread-safe; `counter` must
  // outlive the client or be unset first.
  void count_requests_into(std::atomic<std::uint64_t>* counter) noexcept;

  // Closes idle connections (in-flight requests finish).
  void close_idle();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace tandem::backends
