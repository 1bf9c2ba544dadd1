// tandem's configuration: conf/tandem.jsonc, then command-line flags on top.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace tandem::backends {
struct d1_options;             // backends/d1_store.hpp
struct sqlite_store_options;  // backends/sqlite_store.hpp
}

namespace tandem::proxy {

struct listen_config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6440;

  bool operator==(const listen_config&) const = default;
};

struct sqlite_config {
  std::string path = "var/tandem.db";
  // "" (the default): FULL when D1 is configured (a dual mode can start at runtime), where a
  // commit lost to a power loss that D1 already applied would put D1 ahead of SQLite; NORMAL
  // otherwise. Anything set is used as it is.
  std::string synchronous;
  int busy_timeout_ms = 5000;
  int readers = 2;
  int statement_cache_size = 256;
  int max_group_size = 512;

  bool operator==(const sqlite_config&) const = default;
};

struct d1_config {
  // "rest" (D1's REST API) or "bridge" (tandem's bridge Worker, tools/d1-bridge): see
  // backends/d1_store.hpp.
  std::string transport = "rest";
  std::string endpoint = "https://api.cloudflare.com";  // bridge: the Worker's URL
  std::string account_id;   // rest
  std::string database_id;  // rest
  // The variable holding the API token (rest) or the bridge's secret (bridge).
  std::string token_env = "CLOUDFLARE_API_TOKEN";
  bool read_replication = false;  // bridge: reads in D1 sessions, any replica (backends/d1_store.hpp)
  // Statements one D1 request may hold: D1's limit per Worker invocation is 1,000 (Workers
  // Free: 50; match the bridge's TANDEM_BRIDGE_MAX_STATEMENTS). Client batches, row images and
  // replication batches are sized under it; a client batch that cannot fit is refused.
  int max_batch_statements = 1000;
  std::string ca_file;
  bool verify_tls = true;
  int connect_timeout_ms = 5000;
  int request_timeout_ms = 30000;
  int max_connections = 16;
  int max_attempts = 5;
  int backoff_base_ms = 100;
  int backoff_max_ms = 5000;
  std::int64_t max_response_bytes = 64 << 20;

  // D1 is configured at all (a config without it runs sqlite-only only).
  bool configured() const { return transport == "bridge" || !account_id.empty(); }
  bool operator==(const d1_config&) const = default;
};

struct tls_config {
  bool enabled = false;
  std::string cert_file;
  std::string key_file;

  bool operator==(const tls_config&) const = default;
};

struct limits_config {
  std::size_t max_frame_bytes = 16 * 1024 * 1024;
  int max_connections = 1024;
  std::chrono::milliseconds idle_timeout{300000};
  std::chrono::milliseconds query_timeout{30000};
  std::size_t max_batch_statements = 10000;

  bool operator==(const limits_config&) const = default;
};

// The dual modes (dual-sqlite, dual-d1): journal, replication and read routing.
struct dual_config {
  int read_percent = 0;            // routing keys (0-100) whose reads go to D1
  int shadow_read_percent = 0;     // reads (0-100) also run on the other store and compared
  std::string ack = "leader";      // "leader" or "both"
  int ack_timeout_ms = 5000;       // with ack "both": how long to wait for the follower
  bool continue_on_follower_failure = true;
  int read_your_writes_wait_ms = 100;  // a follower read waits this long for its client's position
  int key_memory_ms = 300000;      // a routing key's last position is remembered this long
  int key_memory_keys = 100000;    // for at most this many keys
  bool verify_writes = true;
  bool pause_on_verification_failure = false;
  int batch_entries = 500;         // most journal entries applied in one follower batch
  int batch_bytes = 1000000;       // and most bytes of entry bodies
  int retry_min_ms = 100;          // backoff between failed follower applies
  int retry_max_ms = 10000;
  int journal_retention_ms = 3600000;  // applied entries are pruned once older than this
  // The journal's bound while SQLite leads, and the free disk it leaves (0: none). Reaching
  // either stops journaling (never a write) and marks D1 to be rebuilt.
  std::int64_t max_journal_bytes = std::int64_t{1} << 30;
  std::int64_t min_free_disk_bytes = std::int64_t{64} << 20;

  bool operator==(const dual_config&) const = default;
};

// The admin HTTP endpoint (proxy/admin.hpp).
struct admin_config {
  bool enabled = true;
  std::string host = "127.0.0.1";
  std::uint16_t port = 6441;
  std::string token_env;   // the variable holding the bearer token; empty: no token
  std::string token_file;  // or a file holding it, read again at every reload (rotation)

  bool operator==(const admin_config&) const = default;
};

// The control socket and the runtime state file (proxy/control.hpp).
struct control_config {
  bool enabled = true;
  std::string socket = "var/tandem.sock";
  std::string state_file = "var/tandem.state.json";
  int max_pause_ms = 30000;

  bool operator==(const control_config&) const = default;
};

// The staged rollout (proxy/rollout.hpp): stages, auto-advance and guards.
struct rollout_config {
  struct stage {
    int percent = 0;
    std::chrono::milliseconds hold{0};
    bool operator==(const stage&) const = default;
  };
  std::vector<stage> stages{{5, std::chrono::hours(24)},
                            {25, std::chrono::hours(24)},
                            {50, std::chrono::hours(24)},
                            {100, std::chrono::hours(24 * 7)}};
  bool auto_advance = false;
  int tick_ms = 1000;
  std::chrono::milliseconds window{300000};
  double max_d1_error_rate = 0.01;
  int min_reads = 20;
  double max_d1_read_p99_ms = 1000;
  std::int64_t max_lag_entries = 10000;
  std::int64_t max_lag_ms = 60000;
  int max_verification_failures = 0;
  int max_shadow_mismatches = 0;

  bool operator==(const rollout_config&) const = default;
};

// One owner per store (proxy/store_lock.hpp: the SQLite file; proxy/d1_lease.hpp: D1's
// replication role).
struct ownership_config {
  int lease_ms = 30000;           // the D1 replication lease's duration; renewed every third of it
  int wait_for_owner_ms = 45000;  // at start, how long to wait for another owner to let go

  bool operator==(const ownership_config&) const = default;
};

struct log_config {
  std::string level = "info";  // trace, debug, info, warn, error, off

  bool operator==(const log_config&) const = default;
};

struct config {
  std::string mode = "sqlite-only";
  listen_config listen;
  sqlite_config sqlite;
  d1_config d1;
  // Names of environment variables that hold client tokens, and files that hold one each (read
  // again at every reload, so a token can be rotated without a restart). Both empty: no
  // authentication.
  std::vector<std::string> token_envs;
  std::vector<std::string> token_files;
  tls_config tls;
  limits_config limits;
  dual_config dual;
  admin_config admin;
  control_config control;
  rollout_config rollout;
  ownership_config ownership;
  log_config log;
  int io_threads = 2;
  // How long an idle I/O or SQLite thread polls for work before sleeping. Trades a little CPU
  // for latency: waking a sleeping thread costs tens of microseconds. 0 turns it off.
  int spin_us = 200;

  bool operator==(const config&) const = default;
};

// A configuration problem, with the file and line when it came from a file. Start-up only.
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "500ms", "30s", "5m", "24h", "7d" as a duration. Throws std::invalid_argument.
std::chrono::milliseconds parse_duration(const std::string& text);

// Parses JSON-with-comments text. Unknown keys and wrong types throw config_error naming the key
// and its line. `source` names the text in messages (usually the file path).
config parse_config(std::string_view text, const std::string& source);

// Reads and parses a file.
config load_config(const std::string& path);

// Checks cross-field rules (TLS files present when enabled, ...). Throws config_error.
void validate(const config& c);

// The D1 store's options for `d1`: the one mapping of d1_config onto backends::d1_options (serve
// and the move tools' --config). Leaves api_token empty: whoever opens the store reads it from
// the variable d1.token_env names (serve), or the one its command line names (the move tools).
// Throws config_error for a transport that is neither rest nor bridge.
backends::d1_options d1_options_of(const d1_config& d1);

// The config's sqlite section (and what of dual and d1 the SQLite store must know) as the SQLite
// store's options. Where D1 follows or may follow (a dual mode, or D1 configured), synchronous
// defaults to FULL and the writer takes D1's row limit.
backends::sqlite_store_options sqlite_options_of(const config& c);

}  // namespace tandem::proxy
