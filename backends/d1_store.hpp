// The D1 store: Cloudflare D1 reached over one of two transports that take the same request and
// give the same answer (D1's /raw envelope):
//  - rest: D1's REST API (POST …/accounts/{account}/d1/database/{id}/raw), under Cloudflare's
//    account-wide API rate limit; fine for admin work and light traffic;
//  - bridge: tandem's bridge Worker (tools/d1-bridge, POST {endpoint}/v1/query), which binds
//    the database: no API rate limit, and D1's read replicas through the Sessions API.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "backends/d1_statement.hpp"
#include "backends/http_client.hpp"
#include "backends/store.hpp"

namespace tandem::backends {

enum class d1_transport { rest, bridge };
std::string_view transport_name(d1_transport t);
// "rest" or "bridge"; nullopt for anything else.
std::optional<d1_transport> parse_transport(std::string_view name);

// The header a bridge request names its D1 session in, and its answer the session's newest
// bookmark (tools/d1-bridge/README.md).
inline constexpr std::string_view k_bookmark_header = "x-tandem-d1-bookmark";

struct d1_options {
  d1_transport transport = d1_transport::rest;
  // rest: D1's REST API (or the local D1's URL). bridge: the bridge Worker's URL; a
  // "{database_id}" in it is replaced by database_id (one bridge in front of several databases,
  // as tools/d1-local serves one per pool database).
  std::string endpoint = "https://api.cloudflare.com";
  std::string account_id;   // rest
  std::string database_id;  // rest; bridge only where the endpoint names it
  std::string api_token;    // rest: the API token; bridge: its secret. Never logged or put in errors
  // bridge only: reads run in a D1 session (Sessions API), so any replica may answer one; a read
  // whose exec_options carry a bookmark is answered by a replica at least that new. Every answer
  // carries its bookmark (meta.bookmark).
  bool read_replication = false;
  std::string ca_file;
  bool verify_tls = true;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{30000};
  std::size_t max_connections = 16;
  int max_attempts = 5;
  std::chrono::milliseconds backoff_base{100};
  std::chrono::milliseconds backoff_max{5000};
  std::size_t max_response_bytes = 64u << 20;  // a larger answer is UNSUPPORTED, not an outage
  d1_limits limits;
  // A pooled connection idle longer than this is not reused (http_client_options::max_idle).
  std::chrono::milliseconds max_idle{3000};
};

struct d1_health {
  bool ok = false;
  double latency_ms = 0;
  std::string error;
};

// Reads D1's answer to a /raw request: the Cloudflare envelope with `expected` results, one per
// statement, or D1's error mapped onto tandem's codes (`idempotent`: the request may be retried,
// so a 5xx does not leave its outcome unknown). Cells are as D1's JSON has them, every JSON
// number accepted (integers beyond 64 bits as doubles); backends/d1_exact.hpp makes them exact.
// Sans-io.
outcome<std::vector<protocol::query_result>> parse_d1_reply(unsigned status, std::string_view body, std::size_t expected,
                                                           bool idempotent);

class d1_store final : public store {
 public:
  // Validates the options (no request is made: D1 may be down when tandem starts).
  static outcome<std::unique_ptr<d1_store>> open(const d1_options& options);
  ~d1_store() override;

  // store
  std::string_view name() const noexcept override { return "d1"; }
  void execute(protocol::statement st, exec_options options, query_done done) override;
  void execute_batch(std::vector<protocol::statement> statements, exec_options options,
                     batch_done done) override;
  void shutdown() override;

  // `SELECT 1` and its latency. Thread-safe; `done` runs on the store's thread.
  void health(std::function<void(d1_health)> done);

  http_stats http() const;
  // Also counts each HTTP request sent to D1 into `counter` (null: stop); see http_client.
  void count_requests_into(std::atomic<std::uint64_t>* counter) noexcept;
  d1_transport transport() const noexcept;
  bool read_replication() const noexcept;
  // With read replication: the newest bookmark a write through this store brought back (a read
  // given it sees every write this store made before). Empty otherwise. Thread-safe.
  std::string latest_bookmark() const;

 private:
  struct impl;
  explicit d1_store(std::unique_ptr<impl> i);
  std::unique_ptr<impl> impl_;
};

}  // namespace tandem::backends
