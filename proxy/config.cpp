#include "proxy/config.hpp"

#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>

#include "backends/d1_store.hpp"
#include "backends/sqlite_store.hpp"
#include "protocol/json_reader.hpp"

namespace tandem::proxy {
namespace {

namespace json = boost::json;

// Walks the parsed document and reports problems with their lines.
class reader {
 public:
  reader(const protocol::json_document& doc, std::string source) : doc_(doc), source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    std::string where = source_;
    if (auto it = doc_.key_lines.find(path); it != doc_.key_lines.end()) {
      where += ":" + std::to_string(it->second);
    }
    throw config_error(where + ": '" + path + "' " + what);
  }

  // Calls the handler of each key of the object at `path`; a key with no handler is an error.
  void object(const std::string& path, const json::value& v,
              const std::map<std::string, std::function<void(const std::string&, const json::value&)>>& keys) const {
    if (!v.is_object()) fail(path, "must be an object");
    for (const auto& kv : v.get_object()) {
      const std::string key(kv.key());
      const std::string sub = path.empty() ? key : path + "." + key;
      auto it = keys.find(key);
      if (it == keys.end()) {
        std::string known;
        for (const auto& [k, _] : keys) known += (known.empty() ? "" : ", ") + k;
        fail(sub, "is not a known key (known here: " + known + ")");
      }
      it->second(sub, kv.value());
    }
  }

  std::string string(const std::string& path, const json::value& v) const {
    if (!v.is_string()) fail(path, "must be a string");
    return std::string(v.get_string());
  }

  bool boolean(const std::string& path, const json::value& v) const {
    if (!v.is_bool()) fail(path, "must be true or false");
    return v.get_bool();
  }

  std::int64_t integer(const std::string& path, const json::value& v, std::int64_t lo, std::int64_t hi) const {
    std::int64_t n = 0;
    if (v.is_int64()) n = v.get_int64();
    else if (v.is_uint64() && v.get_uint64() <= static_cast<std::uint64_t>(hi)) n = static_cast<std::int64_t>(v.get_uint64());
    else fail(path, "must be an integer");
    if (n < lo || n > hi) fail(path, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    return n;
  }

  double number(const std::string& path, const json::value& v, double lo, double hi) const {
    double n = 0;
    if (v.is_double()) n = v.get_double();
    else if (v.is_int64()) n = static_cast<double>(v.get_int64());
    else if (v.is_uint64()) n = static_cast<double>(v.get_uint64());
    else fail(path, "must be a number");
    if (n < lo || n > hi) fail(path, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    return n;
  }

  std::chrono::milliseconds duration(const std::string& path, const json::value& v) const {
    const auto text = string(path, v);
    try {
      return parse_duration(text);
    } catch (const std::invalid_argument& e) {
      fail(path, std::string("must be a duration: ") + e.what());
    }
  }

  std::string one_of(const std::string& path, const json::value& v, std::initializer_list<const char*> allowed) const {
    auto s = string(path, v);
    std::string list;
    for (const char* a : allowed) {
      if (s == a) return s;
      list += (list.empty() ? "" : ", ") + std::string(a);
    }
    fail(path, "must be one of " + list + ", not '" + s + "'");
  }

 private:
  const protocol::json_document& doc_;
  std::string source_;
};

constexpr std::int64_t k_int_max = std::numeric_limits<int>::max();

using value = json::value;
using path = std::string;

// One function per section of the file: each reads its keys into `c`.
void read_listen(const reader& r, const path& p, const value& v, config& c) {
  r.object(p, v, {
    {"host", [&](const path& q, const value& w) { c.listen.host = r.string(q, w); }},
    {"port", [&](const path& q, const value& w) { c.listen.port = static_cast<std::uint16_t>(r.integer(q, w, 0, 65535)); }},
  });
}

void read_sqlite(const reader& r, const path& p, const value& v, config& c) {
  r.object(p, v, {
    {"path", [&](const path& q, const value& w) { c.sqlite.path = r.string(q, w); }},
    {"synchronous", [&](const path& q, const value& w) { c.sqlite.synchronous = r.one_of(q, w, {"OFF", "NORMAL", "FULL", "EXTRA"}); }},
    {"busy_timeout_ms", [&](const path& q, const value& w) { c.sqlite.busy_timeout_ms = static_cast<int>(r.integer(q, w, 0, k_int_max)); }},
    {"readers", [&](const path& q, const value& w) { c.sqlite.readers = static_cast<int>(r.integer(q, w, 1, 64)); }},
    {"statement_cache_size", [&](const path& q, const value& w) { c.sqlite.statement_cache_size = static_cast<int>(r.integer(q, w, 1, 100000)); }},
    {"max_group_size", [&](const path& q, const value& w) { c.sqlite.max_group_size = static_cast<int>(r.integer(q, w, 1, 100000)); }},
  });
}

void read_d1(const reader& r, const path& p, const value& v, config& c) {
  auto ms = [&](const path& q, const value& w) { return static_cast<int>(r.integer(q, w, 1, k_int_max)); };
  r.object(p, v, {
    {"transport", [&](const path& q, const value& w) {
       c.d1.transport = r.string(q, w);
       if (c.d1.transport != "rest" && c.d1.transport != "bridge") {
         throw config_error(q + " is \"" + c.d1.transport + "\"; expected \"rest\" (D1's REST API) or \"bridge\" (tandem's bridge Worker)");
       }
     }},
    {"read_replication", [&](const path& q, const value& w) { c.d1.read_replication = r.boolean(q, w); }},
    {"max_batch_statements", [&](const path& q, const value& w) { c.d1.max_batch_statements = static_cast<int>(r.integer(q, w, 10, 1000)); }},
    {"endpoint", [&](const path& q, const value& w) { c.d1.endpoint = r.string(q, w); }},
    {"account_id", [&](const path& q, const value& w) { c.d1.account_id = r.string(q, w); }},
    {"database_id", [&](const path& q, const value& w) { c.d1.database_id = r.string(q, w); }},
    {"token_env", [&](const path& q, const value& w) { c.d1.token_env = r.string(q, w); }},
    {"ca_file", [&](const path& q, const value& w) { c.d1.ca_file = r.string(q, w); }},
    {"verify_tls", [&](const path& q, const value& w) { c.d1.verify_tls = r.boolean(q, w); }},
    {"connect_timeout_ms", [&](const path& q, const value& w) { c.d1.connect_timeout_ms = ms(q, w); }},
    {"request_timeout_ms", [&](const path& q, const value& w) { c.d1.request_timeout_ms = ms(q, w); }},
    {"max_connections", [&](const path& q, const value& w) { c.d1.max_connections = static_cast<int>(r.integer(q, w, 1, 1024)); }},
    {"max_attempts", [&](const path& q, const value& w) { c.d1.max_attempts = static_cast<int>(r.integer(q, w, 1, 100)); }},
    {"backoff_base_ms", [&](const path& q, const value& w) { c.d1.backoff_base_ms = ms(q, w); }},
    {"backoff_max_ms", [&](const path& q, const value& w) { c.d1.backoff_max_ms = ms(q, w); }},
    {"max_response_bytes", [&](const path& q, const value& w) { c.d1.max_response_bytes = r.integer(q, w, 1 << 16, std::int64_t{1} << 32); }},
  });
}

void read_auth(const reader& r, const path& p, const value& v, config& c) {
  r.object(p, v, {
    {"token_envs", [&](const path& q, const value& w) {
       if (!w.is_array()) r.fail(q, "must be an array of environment variable names");
       c.token_envs.clear();
       for (std::size_t i = 0; i < w.get_array().size(); ++i)
         c.token_envs.push_back(r.string(q + "[" + std::to_string(i) + "]", w.get_array()[i]));
     }},
    {"token_files", [&](const path& q, const value& w) {
       if (!w.is_array()) r.fail(q, "must be an array of file paths");
       c.token_files.clear();
       for (std::size_t i = 0; i < w.get_array().size(); ++i)
         c.token_files.push_back(r.string(q + "[" + std::to_string(i) + "]", w.get_array()[i]));
     }},
  });
}

void read_tls(const reader& r, const path& p, const value& v, config& c) {
  r.object(p, v, {
    {"enabled", [&](const path& q, const value& w) { c.tls.enabled = r.boolean(q, w); }},
    {"cert_file", [&](const path& q, const value& w) { c.tls.cert_file = r.string(q, w); }},
    {"key_file", [&](const path& q, const value& w) { c.tls.key_file = r.string(q, w); }},
  });
}

void read_limits(const reader& r, const path& p, const value& v, config& c) {
  r.object(p, v, {
    {"max_frame_bytes", [&](const path& q, const value& w) { c.limits.max_frame_bytes = static_cast<std::size_t>(r.integer(q, w, 1024, std::int64_t{1} << 31)); }},
    {"max_connections", [&](const path& q, const value& w) { c.limits.max_connections = static_cast<int>(r.integer(q, w, 1, 1000000)); }},
    {"idle_timeout_ms", [&](const path& q, const value& w) { c.limits.idle_timeout = std::chrono::milliseconds(r.integer(q, w, 1, k_int_max)); }},
    {"query_timeout_ms", [&](const path& q, const value& w) { c.limits.query_timeout = std::chrono::milliseconds(r.integer(q, w, 1, k_int_max)); }},
    {"max_batch_statements", [&](const path& q, const value& w) { c.limits.max_batch_statements = static_cast<std::size_t>(r.integer(q, w, 1, 1000000)); }},
  });
}

void read_dual(const reader& r, const path& p, const value& v, config& c) {
  auto ms = [&](const path& q, const value& w) { return static_cast<int>(r.integer(q, w, 1, k_int_max)); };
  auto& d = c.dual;
  r.object(p, v, {
    {"read_percent", [&](const path& q, const value& w) { d.read_percent = static_cast<int>(r.integer(q, w, 0, 100)); }},
    {"shadow_read_percent", [&](const path& q, const value& w) { d.shadow_read_percent = static_cast<int>(r.integer(q, w, 0, 100)); }},
    {"ack", [&](const path& q, const value& w) { d.ack = r.one_of(q, w, {"leader", "both"}); }},
    {"ack_timeout_ms", [&](const path& q, const value& w) { d.ack_timeout_ms = ms(q, w); }},
    {"continue_on_follower_failure", [&](const path& q, const value& w) { d.continue_on_follower_failure = r.boolean(q, w); }},
    {"read_your_writes_wait_ms", [&](const path& q, const value& w) { d.read_your_writes_wait_ms = static_cast<int>(r.integer(q, w, 0, k_int_max)); }},
    {"key_memory_ms", [&](const path& q, const value& w) { d.key_memory_ms = static_cast<int>(r.integer(q, w, 0, k_int_max)); }},
    {"key_memory_keys", [&](const path& q, const value& w) { d.key_memory_keys = static_cast<int>(r.integer(q, w, 0, 10000000)); }},
    {"verify_writes", [&](const path& q, const value& w) { d.verify_writes = r.boolean(q, w); }},
    {"pause_on_verification_failure", [&](const path& q, const value& w) { d.pause_on_verification_failure = r.boolean(q, w); }},
    {"batch_entries", [&](const path& q, const value& w) { d.batch_entries = static_cast<int>(r.integer(q, w, 1, 100000)); }},
    {"batch_bytes", [&](const path& q, const value& w) { d.batch_bytes = static_cast<int>(r.integer(q, w, 1024, k_int_max)); }},
    {"retry_min_ms", [&](const path& q, const value& w) { d.retry_min_ms = ms(q, w); }},
    {"retry_max_ms", [&](const path& q, const value& w) { d.retry_max_ms = ms(q, w); }},
    {"journal_retention_ms", [&](const path& q, const value& w) { d.journal_retention_ms = static_cast<int>(r.integer(q, w, 0, k_int_max)); }},
    {"max_journal_bytes", [&](const path& q, const value& w) { d.max_journal_bytes = r.integer(q, w, 0, std::numeric_limits<std::int64_t>::max()); }},
    {"min_free_disk_bytes", [&](const path& q, const value& w) { d.min_free_disk_bytes = r.integer(q, w, 0, std::numeric_limits<std::int64_t>::max()); }},
  });
}

void read_admin(const reader& r, const path& p, const value& v, config& c) {
  r.object(p, v, {
    {"enabled", [&](const path& q, const value& w) { c.admin.enabled = r.boolean(q, w); }},
    {"host", [&](const path& q, const value& w) { c.admin.host = r.string(q, w); }},
    {"port", [&](const path& q, const value& w) { c.admin.port = static_cast<std::uint16_t>(r.integer(q, w, 0, 65535)); }},
    {"token_env", [&](const path& q, const value& w) { c.admin.token_env = r.string(q, w); }},
    {"token_file", [&](const path& q, const value& w) { c.admin.token_file = r.string(q, w); }},
  });
}

void read_control(const reader& r, const path& p, const value& v, config& c) {
  r.object(p, v, {
    {"enabled", [&](const path& q, const value& w) { c.control.enabled = r.boolean(q, w); }},
    {"socket", [&](const path& q, const value& w) { c.control.socket = r.string(q, w); }},
    {"state_file", [&](const path& q, const value& w) { c.control.state_file = r.string(q, w); }},
    {"max_pause_ms", [&](const path& q, const value& w) { c.control.max_pause_ms = static_cast<int>(r.integer(q, w, 1, k_int_max)); }},
  });
}

void read_rollout(const reader& r, const path& p, const value& v, config& c) {
  auto& ro = c.rollout;
  r.object(p, v, {
    {"stages", [&](const path& q, const value& w) {
       if (!w.is_array() || w.get_array().empty()) r.fail(q, "must be a non-empty array of {percent, hold}");
       ro.stages.clear();
       int previous = 0;
       for (std::size_t i = 0; i < w.get_array().size(); ++i) {
         const path at = q + "[" + std::to_string(i) + "]";
         rollout_config::stage st;
         r.object(at, w.get_array()[i], {
           {"percent", [&](const path& k, const value& x) { st.percent = static_cast<int>(r.integer(k, x, 1, 100)); }},
           {"hold", [&](const path& k, const value& x) { st.hold = r.duration(k, x); }},
         });
         if (st.percent <= previous) r.fail(at, "percentages must rise from stage to stage");
         previous = st.percent;
         ro.stages.push_back(st);
       }
     }},
    {"auto_advance", [&](const path& q, const value& w) { ro.auto_advance = r.boolean(q, w); }},
    {"tick_ms", [&](const path& q, const value& w) { ro.tick_ms = static_cast<int>(r.integer(q, w, 10, 3600000)); }},
    {"guards", [&](const path& q, const value& w) {
       r.object(q, w, {
         {"window", [&](const path& k, const value& x) { ro.window = r.duration(k, x); }},
         {"max_d1_error_rate", [&](const path& k, const value& x) { ro.max_d1_error_rate = r.number(k, x, 0, 1); }},
         {"min_reads", [&](const path& k, const value& x) { ro.min_reads = static_cast<int>(r.integer(k, x, 1, k_int_max)); }},
         {"max_d1_read_p99_ms", [&](const path& k, const value& x) { ro.max_d1_read_p99_ms = r.number(k, x, 0, 1e9); }},
         {"max_lag_entries", [&](const path& k, const value& x) { ro.max_lag_entries = r.integer(k, x, 0, std::numeric_limits<std::int64_t>::max()); }},
         {"max_lag_ms", [&](const path& k, const value& x) { ro.max_lag_ms = r.integer(k, x, 0, std::numeric_limits<std::int64_t>::max()); }},
         {"max_verification_failures", [&](const path& k, const value& x) { ro.max_verification_failures = static_cast<int>(r.integer(k, x, 0, k_int_max)); }},
         {"max_shadow_mismatches", [&](const path& k, const value& x) { ro.max_shadow_mismatches = static_cast<int>(r.integer(k, x, 0, k_int_max)); }},
       });
     }},
  });
}

void read_ownership(const reader& r, const path& p, const value& v, config& c) {
  r.object(p, v, {
    {"lease_ms", [&](const path& q, const value& w) { c.ownership.lease_ms = static_cast<int>(r.integer(q, w, 300, 3600000)); }},
    {"wait_for_owner_ms", [&](const path& q, const value& w) { c.ownership.wait_for_owner_ms = static_cast<int>(r.integer(q, w, 0, k_int_max)); }},
  });
}

void read_log(const reader& r, const path& p, const value& v, config& c) {
  r.object(p, v, {
    {"level", [&](const path& q, const value& w) { c.log.level = r.one_of(q, w, {"trace", "debug", "info", "warn", "error", "off"}); }},
  });
}

}  // namespace

std::chrono::milliseconds parse_duration(const std::string& text) {
  std::size_t end = 0;
  long long n = -1;
  try {
    n = std::stoll(text, &end);
  } catch (const std::exception&) {
  }
  const std::string unit = text.substr(end);
  if (n < 0 || end == 0) throw std::invalid_argument("'" + text + "' is not a duration (e.g. 500ms, 30s, 5m, 24h, 7d)");
  if (unit == "ms") return std::chrono::milliseconds(n);
  if (unit == "s") return std::chrono::seconds(n);
  if (unit == "m") return std::chrono::minutes(n);
  if (unit == "h") return std::chrono::hours(n);
  if (unit == "d") return std::chrono::hours(24 * n);
  throw std::invalid_argument("'" + text + "' is not a duration (e.g. 500ms, 30s, 5m, 24h, 7d)");
}

config parse_config(std::string_view text, const std::string& source) {
  protocol::json_read_options opts;
  opts.allow_comments = true;
  opts.allow_trailing_commas = true;
  opts.track_key_lines = true;
  auto doc = protocol::read_json(text, opts);
  if (!doc.ok()) {
    throw config_error(source + ":" + std::to_string(doc.error_line) + ": invalid JSON: " + doc.error);
  }
  config c;
  reader r(doc, source);
  using section_reader = void (*)(const reader&, const path&, const value&, config&);
  const std::pair<const char*, section_reader> sections[] = {
      {"listen", read_listen}, {"sqlite", read_sqlite},   {"d1", read_d1},           {"auth", read_auth},
      {"tls", read_tls},       {"limits", read_limits},   {"dual", read_dual},       {"admin", read_admin},
      {"control", read_control}, {"rollout", read_rollout}, {"ownership", read_ownership}, {"log", read_log}};
  std::map<std::string, std::function<void(const path&, const value&)>> keys{
      {"mode", [&](const path& p, const value& v) { c.mode = r.one_of(p, v, {"sqlite-only", "dual-sqlite", "dual-d1", "d1-only"}); }},
      {"io_threads", [&](const path& p, const value& v) { c.io_threads = static_cast<int>(r.integer(p, v, 1, 64)); }},
      {"spin_us", [&](const path& p, const value& v) { c.spin_us = static_cast<int>(r.integer(p, v, 0, 10000)); }},
  };
  for (auto [name, read] : sections) keys[name] = [&r, &c, read](const path& p, const value& v) { read(r, p, v, c); };
  r.object("", doc.value, keys);
  return c;
}

config load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw config_error(path + ": cannot open the configuration file");
  std::ostringstream text;
  text << in.rdbuf();
  auto c = parse_config(text.str(), path);
  return c;
}

void validate(const config& c) {
  if (c.tls.enabled && (c.tls.cert_file.empty() || c.tls.key_file.empty())) {
    throw config_error("tls.enabled is true but tls.cert_file or tls.key_file is empty");
  }
  if (c.mode != "d1-only" && c.sqlite.path.empty()) throw config_error("mode is " + c.mode + " but sqlite.path is empty");
  if (c.d1.transport == "bridge") {
    if (c.d1.endpoint == d1_config{}.endpoint) {
      throw config_error("d1.transport is \"bridge\" but d1.endpoint is D1's REST API; set it to the bridge Worker's URL");
    }
    if (c.d1.token_env.empty()) throw config_error("d1.transport is \"bridge\" but d1.token_env (the variable holding its secret) is empty");
  } else if (c.d1.read_replication) {
    throw config_error("d1.read_replication needs d1.transport \"bridge\": D1's REST API has no sessions, so every read goes to the primary");
  }
  if (c.mode != "sqlite-only" && c.d1.transport == "rest") {
    if (c.d1.account_id.empty()) throw config_error("mode is " + c.mode + " but d1.account_id is empty");
    if (c.d1.database_id.empty()) throw config_error("mode is " + c.mode + " but d1.database_id is empty");
    if (c.d1.token_env.empty()) throw config_error("mode is " + c.mode + " but d1.token_env is empty");
  }
  if (c.dual.retry_min_ms > c.dual.retry_max_ms) throw config_error("dual.retry_min_ms is above dual.retry_max_ms");
  if (!c.admin.token_env.empty() && !c.admin.token_file.empty()) {
    throw config_error("admin.token_env and admin.token_file are both set; name one place for the admin token");
  }
}

backends::d1_options d1_options_of(const d1_config& d1) {
  backends::d1_options o;
  const auto transport = backends::parse_transport(d1.transport);
  if (!transport) throw config_error("d1.transport is '" + d1.transport + "'; expected rest or bridge");
  o.transport = *transport;
  o.read_replication = d1.read_replication;
  o.endpoint = d1.endpoint;
  o.account_id = d1.account_id;
  o.database_id = d1.database_id;
  o.ca_file = d1.ca_file;
  o.verify_tls = d1.verify_tls;
  o.connect_timeout = std::chrono::milliseconds(d1.connect_timeout_ms);
  o.request_timeout = std::chrono::milliseconds(d1.request_timeout_ms);
  o.max_connections = static_cast<std::size_t>(d1.max_connections);
  o.max_attempts = d1.max_attempts;
  o.backoff_base = std::chrono::milliseconds(d1.backoff_base_ms);
  o.backoff_max = std::chrono::milliseconds(d1.backoff_max_ms);
  o.max_response_bytes = static_cast<std::size_t>(d1.max_response_bytes);
  o.limits.max_batch_statements = static_cast<std::size_t>(d1.max_batch_statements);
  return o;
}

backends::sqlite_store_options sqlite_options_of(const config& c) {
  backends::sqlite_store_options so;
  const bool d1_may_follow = c.mode != "sqlite-only" || c.d1.configured();
  so.db.path = c.sqlite.path;
  // Durable by default where D1 follows or may follow (see sqlite_config::synchronous).
  so.db.synchronous = !c.sqlite.synchronous.empty() ? c.sqlite.synchronous : d1_may_follow ? "FULL" : "NORMAL";
  so.follower_row_limit = d1_may_follow;
  so.journal_max_bytes = c.dual.max_journal_bytes;
  so.follower_limits.max_batch_statements = static_cast<std::size_t>(c.d1.max_batch_statements);
  so.min_free_disk_bytes = c.dual.min_free_disk_bytes;
  so.db.busy_timeout_ms = c.sqlite.busy_timeout_ms;
  so.db.statement_cache_size = static_cast<std::size_t>(c.sqlite.statement_cache_size);
  so.readers = static_cast<std::size_t>(c.sqlite.readers);
  so.max_group_size = static_cast<std::size_t>(c.sqlite.max_group_size);
  so.spin = std::chrono::microseconds(c.spin_us);
  return so;
}

}  // namespace tandem::proxy
