// The real local D1 (tools/d1-local) for tests, and a scripted HTTP server for fault injection.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include <thread>

#include "backends/d1_store.hpp"
#include "proxy/router.hpp"
#include "tests/support/test_support.hpp"

namespace tandem::testing {

inline constexpr const char* k_d1_account = "0123456789abcdef0123456789abcdef";
inline constexpr const char* k_d1_token = "local-dev-token";

// One local D1 per test process, started on first use (tools/d1-local/start.sh) and stopped when
// the process exits. Each call to fresh_database() hands out one of its 32 databases, emptied.
class local_d1 {
 public:
  static local_d1& instance();
  const std::string& url() const { return url_; }
  // A database id nobody else in this process is using right now, with no tables.
  std::string fresh_database();
  // The transport every test of this process reaches D1 over: TANDEM_D1_TRANSPORT ("rest", the
  // default, or "bridge": tools/d1-bridge's Worker, which the local D1 serves in front of each
  // database at /bridge/{database_id}; ctest runs the D1 suites over both).
  static backends::d1_transport transport();
  // The D1 store's options for `database_id`, at `base` (the local D1's URL unless given, e.g. a
  // slow_http_proxy in front of it) over transport().
  backends::d1_options options(const std::string& database_id, const std::string& base = {}) const;
  // The same as the members of a config's "d1" object (without braces), the secret in `token_env`.
  std::string config_members(const std::string& database_id, const std::string& token_env) const;
  // The endpoint the move tools take (TANDEM_D1_ENDPOINT): over the bridge with {database_id}.
  std::string tools_endpoint() const;
  // Arms the local D1's fault hook for `database_id` (tools/d1-local/README.md: `/fault`), e.g.
  // {"count":1,"delay_ms":2500,"fail":false}: the next request waits 2.5 s, then runs.
  void inject_fault(const std::string& database_id, const std::string& fault_json);
  // How many faulted requests to `database_id` have finished since its last reset.
  int faulted_requests_finished(const std::string& database_id);
  // Stops and restarts the local D1 (same state folder, same port): a real outage.
  void stop();
  void start();
  ~local_d1();

 private:
  local_d1();
  temp_dir state_;
  std::string url_;
  std::string port_;
  int next_ = 0;
};

// A store for tests: "sqlite" (a file in `dir`) or "d1" (a fresh local D1 database).
std::unique_ptr<backends::store> make_store(const std::string& kind, const temp_dir& dir);

// A router over a SQLite file in `dir` and a local D1 database (a fresh one unless `database`
// names one), in `options.initial` mode, with short replication backoffs. The store pointers
// stay valid while `route` lives.
struct dual_router {
  std::unique_ptr<proxy::router> route;
  backends::sqlite_store* sqlite = nullptr;
  backends::d1_store* d1 = nullptr;
  std::string database;
};
// `d1_endpoint`, when given, replaces the local D1's URL (a slow_http_proxy in front of it).
// `sqlite`, when given, holds the SQLite store's options (its path is set here).
dual_router make_dual_router(const temp_dir& dir, proxy::router_options options, std::string database = {},
                             std::string d1_endpoint = {}, backends::sqlite_store_options sqlite = {});

// The rows of `table` on a store (tandem's internal path), ordered by the first column.
std::vector<std::vector<protocol::value>> rows_of(backends::store& s, const std::string& table);
// The user tables of a store (not sqlite_*, _cf_* or _tandem_*), by name.
std::vector<std::string> user_tables(backends::store& s);
// Expects both stores to hold the same tables with the same rows, compared cell by cell as
// (type, exact text), through the same SQL on both sides.
void expect_equal_stores(backends::store& a, backends::store& b);
// Stricter: also every rowid, generated column, AUTOINCREMENT counter, and the schema (each
// table, index, view and trigger's SQL). Returns false (after reporting) on any difference.
bool expect_identical_stores(backends::store& a, backends::store& b);

// A tiny HTTP/1.1 server on 127.0.0.1 that answers each request with what a script returns:
// the raw bytes to send, "HANG" to never answer, or "CLOSE" to close at once. Optional TLS.
class scripted_http_server {
 public:
  using script = std::function<std::string(int request_number, const std::string& request)>;
  explicit scripted_http_server(script s, std::string cert_file = {}, std::string key_file = {});
  ~scripted_http_server();
  std::string url() const;
  int requests() const { return requests_.load(); }
  int connections() const { return connections_.load(); }

  // A well-formed D1 /raw answer for one statement returning `rows_json` (e.g. "[[1]]").
  static std::string d1_ok(const std::string& columns_json = "[\"x\"]", const std::string& rows_json = "[[1]]");
  static std::string http(int status, const std::string& body, const std::string& extra_headers = "");

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::atomic<int> requests_{0};
  std::atomic<int> connections_{0};
};

// A forwarding HTTP proxy on 127.0.0.1 that holds every answer back for `delay` before passing
// it on: an injected slow endpoint in front of a real server (the local D1).
class slow_http_proxy {
 public:
  explicit slow_http_proxy(std::string target_url);
  std::string url() const { return server_.url(); }
  void set_delay(std::chrono::milliseconds d) { delay_ms_ = static_cast<int>(d.count()); }
  // While unreachable, requests are not passed on: each connection is closed at once.
  void set_unreachable(bool on) { unreachable_ = on; }
  // The requests passed on so far (head and body, as sent), oldest first.
  std::vector<std::string> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> requests_;
  std::string host_;
  std::string port_;
  std::atomic<int> delay_ms_{0};
  std::atomic<bool> unreachable_{false};
  scripted_http_server server_;
};

}  // namespace tandem::testing
