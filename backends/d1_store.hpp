// The D1 store: Cloudflare D1 reached over its REST API (POST …/d1/database/{id}/raw).
#pragma once

#include <memory>
#include <string>

#include "backends/d1_statement.hpp"
#include "backends/http_client.hpp"
#include "backends/store.hpp"

namespace tandem::backends {

struct d1_options {
  std::string endpoint = "https://api.cloudflare.com";  // or the local D1's URL
  std::string account_id;
  std::string database_id;
  std::string api_token;  // the value; never logged or put in errors
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

 private:
  struct impl;
  explicit d1_store(std::unique_ptr<impl> i);
  std::unique_ptr<impl> impl_;
};

}  // namespace tandem::backends
