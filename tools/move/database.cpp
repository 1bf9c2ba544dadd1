#include "tools/move/database.hpp"

#include <sqlite3.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <thread>

#include "backends/d1_exact.hpp"
#include "backends/d1_statement.hpp"
#include "backends/journal.hpp"
#include "backends/sqlite_store.hpp"
#include "protocol/codec.hpp"
#include "protocol/text.hpp"

namespace tandem::tools {

namespace {

error fail(errc code, std::string message, std::string store = {}) {
  return error{code, std::move(message), std::move(store), {}};
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

std::string double_text(double d) {
  if (std::isnan(d)) return "NULL";
  if (std::isinf(d)) return d > 0 ? "9e999" : "-9e999";
  auto s = backends::exact_float_literal(d);
  return s.find_first_of("*/") == std::string::npos ? s : "(" + s + ")";
}

}  // namespace

// ---- settings and endpoints -------------------------------------------------------------------

outcome<backends::d1_options> resolve(const d1_settings& s) {
  backends::d1_options o = s.tuning.value_or(backends::d1_options{});
  const std::string transport = !s.transport.empty() ? s.transport : env_or("TANDEM_D1_TRANSPORT", "rest");
  const auto t = backends::parse_transport(transport);
  if (!t) return fail(errc::bad_request, "--d1-transport is \"" + transport + "\"; expected rest (D1's REST API) or bridge (tandem's bridge Worker)");
  o.transport = *t;
  o.endpoint = !s.endpoint.empty() ? s.endpoint : env_or("TANDEM_D1_ENDPOINT", "https://api.cloudflare.com");
  o.account_id = !s.account_id.empty() ? s.account_id : env_or("CLOUDFLARE_ACCOUNT_ID", "");
  o.database_id = !s.database_id.empty() ? s.database_id : env_or("TANDEM_D1_DATABASE_ID", "");
  o.ca_file = s.ca_file;
  o.verify_tls = s.verify_tls;
  const std::string var = s.token_env.empty() ? "CLOUDFLARE_API_TOKEN" : s.token_env;
  o.api_token = env_or(var.c_str(), "");
  if (o.transport == backends::d1_transport::bridge) {
    if (o.endpoint == "https://api.cloudflare.com")
      return fail(errc::bad_request, "the bridge transport needs the bridge Worker's URL: pass --d1-endpoint, set TANDEM_D1_ENDPOINT, or give a config with d1.endpoint");
    if (o.api_token.empty())
      return fail(errc::bad_request, "no D1 bridge secret: the environment variable " + var + " is not set (--d1-token-env names another)");
    return o;
  }
  if (o.account_id.empty())
    return fail(errc::bad_request, "no D1 account id: pass --d1-account, set CLOUDFLARE_ACCOUNT_ID, or give a config with d1.account_id");
  if (o.database_id.empty())
    return fail(errc::bad_request, "no D1 database id: pass --d1-database (or d1:ID), set TANDEM_D1_DATABASE_ID, or give a config with d1.database_id");
  if (o.api_token.empty())
    return fail(errc::bad_request, "no D1 API token: the environment variable " + var + " is not set (--d1-token-env names another)");
  return o;
}

std::string endpoint::describe() const {
  if (type == kind::sqlite) return "sqlite:" + path;
  return database_id.empty() ? "d1" : "d1:" + database_id;
}

outcome<endpoint> parse_endpoint(std::string_view text) {
  endpoint e;
  if (text.substr(0, 7) == "sqlite:") {
    e.path = std::string(text.substr(7));
    if (e.path.empty()) return fail(errc::bad_request, "'sqlite:' needs a path: sqlite:PATH");
    return e;
  }
  if (text == "d1" || text.substr(0, 3) == "d1:") {
    e.type = endpoint::kind::d1;
    if (text.size() > 3) e.database_id = std::string(text.substr(3));
    return e;
  }
  return fail(errc::bad_request, "'" + std::string(text) + "' is not a database: use sqlite:PATH, d1 or d1:DATABASE_ID");
}

// ---- quoting and display ------------------------------------------------------------------------

std::string quote_name(std::string_view name) { return backends::quote_identifier(name); }

std::string sql_literal(const value& v) {
  switch (v.index()) {
    case 0: return "NULL";
    case 1: {
      return std::to_string(std::get<std::int64_t>(v));  // SQLite reads -9223372036854775808 as an integer too
    }
    case 2: return double_text(std::get<double>(v));
    case 3: {
      const auto& s = std::get<std::string>(v);
      if (s.find('\0') != std::string::npos || !protocol::is_valid_utf8(s)) {
        std::string out = "CAST(X'";
        protocol::append_hex(out, s);
        return out + "' AS TEXT)";
      }
      std::string out = "'";
      for (char c : s) {
        if (c == '\'') out += '\'';
        out += c;
      }
      return out + "'";
    }
    default: {
      std::string out = "X'";
      protocol::append_hex(out, std::get<protocol::blob>(v).bytes);
      return out + "'";
    }
  }
}

std::string show_value(const value& v, std::size_t max_text) {
  if (const auto* d = std::get_if<double>(&v); d && std::isfinite(*d)) {
    std::string s;
    protocol::append_value(s, v);  // the shortest form that reads back as the same double
    return s;
  }
  if (const auto* s = std::get_if<std::string>(&v); s && s->size() > max_text) {
    std::size_t cut = max_text;
    while (cut > 0 && (static_cast<unsigned char>((*s)[cut]) & 0xC0) == 0x80) --cut;  // whole UTF-8 characters
    return sql_literal(value{s->substr(0, cut)}).insert(cut + 1, "…") + " (" + std::to_string(s->size()) + " bytes)";
  }
  if (const auto* b = std::get_if<protocol::blob>(&v); b && b->bytes.size() * 2 > max_text) {
    return sql_literal(value{protocol::blob{b->bytes.substr(0, max_text / 2)}}) + "… (" + std::to_string(b->bytes.size()) + " bytes)";
  }
  return sql_literal(v);
}

std::string show_key(const std::vector<std::string>& names, const row& key) {
  if (names.size() == 1 && key.size() == 1) return names[0] + "=" + show_value(key[0]);
  std::string n = "(", k = "(";
  for (std::size_t i = 0; i < names.size() && i < key.size(); ++i) {
    n += (i ? ", " : "") + names[i];
    k += (i ? ", " : "") + show_value(key[i]);
  }
  return n + ")=" + k + ")";
}

std::string select_sql(const select_spec& spec) {
  std::string sql = "SELECT ";
  for (std::size_t i = 0; i < spec.columns.size(); ++i) sql += (i ? ", " : "") + quote_name(spec.columns[i]);
  sql += " FROM " + quote_name(spec.table);
  if (!spec.where.empty()) sql += " WHERE " + spec.where;
  if (!spec.order_by.empty()) sql += " ORDER BY " + spec.order_by;
  if (spec.limit > 0) sql += " LIMIT " + std::to_string(spec.limit);
  return sql;
}

// ---- reader ----------------------------------------------------------------------------------------

outcome<std::vector<row>> reader::select_one(const select_spec& spec) {
  auto r = select({spec});
  if (!r) return r.error();
  return std::move(r->at(0));
}

outcome<protocol::query_result> reader::query_one(std::string sql, std::vector<value> params) {
  protocol::statement st{std::move(sql), {}};
  st.params.positional = std::move(params);
  std::vector<protocol::statement> sts;
  sts.push_back(std::move(st));
  auto r = query(std::move(sts));
  if (!r) return r.error();
  return std::move(r->at(0));
}

// ---- sqlite_reader ---------------------------------------------------------------------------------

sqlite_reader::sqlite_reader(backends::sqlite_db_ptr owned, sqlite3* db, std::string description)
    : owned_(std::move(owned)), db_(db), description_(std::move(description)) {}

sqlite_reader::~sqlite_reader() {
  cache_.clear();  // statements are finalized before the connection closes
  if (in_snapshot_) sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
}

outcome<std::unique_ptr<sqlite_reader>> sqlite_reader::open(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return fail(errc::unavailable, "no SQLite database at '" + path + "' (" +
                                       (std::filesystem::exists(path, ec) ? "not a regular file" : "no such file") + ")",
                "sqlite");
  }
  auto db = backends::open_sqlite(path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX);
  if (!db) return db.error();
  sqlite3* raw = db->get();
  std::unique_ptr<sqlite_reader> r(new sqlite_reader(std::move(*db), raw, "sqlite:" + path));
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, 5000);
  if (auto probe = r->query_one("SELECT count(*) FROM sqlite_schema"); !probe) {
    return fail(errc::unavailable, "'" + path + "' is not a usable SQLite database: " + probe.error().message, "sqlite");
  }
  return r;
}

std::unique_ptr<sqlite_reader> sqlite_reader::borrow(sqlite3* db, std::string description) {
  return std::unique_ptr<sqlite_reader>(new sqlite_reader(nullptr, db, std::move(description)));
}

outcome<void> sqlite_reader::snapshot() {
  std::lock_guard lock(mu_);
  if (in_snapshot_) return {};
  // BEGIN alone takes no lock: the first read does, and fixes the snapshot.
  if (sqlite3_exec(db_, "BEGIN; SELECT count(*) FROM sqlite_schema;", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return fail(errc::unavailable, "cannot start a read transaction on " + description_ + ": " + sqlite3_errmsg(db_), "sqlite");
  }
  in_snapshot_ = true;
  return {};
}

outcome<sqlite3_stmt*> sqlite_reader::prepare(const std::string& sql) {
  if (auto it = cache_.find(sql); it != cache_.end()) return it->second.get();
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  backends::sqlite_stmt_ptr st(raw);
  if (rc != SQLITE_OK) {
    return fail(errc::sql_error, std::string(sqlite3_errmsg(db_)) + " (in: " + sql.substr(0, 200) + ")", "sqlite");
  }
  if (cache_.size() > 512) cache_.clear();
  cache_.emplace(sql, std::move(st));
  return raw;
}

outcome<protocol::query_result> sqlite_reader::run(sqlite3_stmt* st, const std::vector<value>& params) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (static_cast<int>(params.size()) != sqlite3_bind_parameter_count(st)) {
    return fail(errc::bad_request, "the statement has " + std::to_string(sqlite3_bind_parameter_count(st)) + " parameters, " +
                                       std::to_string(params.size()) + " given", "sqlite");
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    const int at = static_cast<int>(i + 1);
    if (auto ok = backends::sqlite_check(db_, backends::sqlite_bind(st, at, params[i]), "binding parameter " + std::to_string(at)); !ok) return ok.error();
  }
  protocol::query_result out;
  const int n = sqlite3_column_count(st);
  for (int c = 0; c < n; ++c) out.columns.emplace_back(sqlite3_column_name(st, c));
  for (;;) {
    const int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) {
      auto e = fail(errc::sql_error, sqlite3_errmsg(db_), "sqlite");
      sqlite3_reset(st);
      return e;
    }
    row r;
    r.reserve(static_cast<std::size_t>(n));
    for (int c = 0; c < n; ++c) {
      switch (sqlite3_column_type(st, c)) {
        case SQLITE_INTEGER: r.emplace_back(static_cast<std::int64_t>(sqlite3_column_int64(st, c))); break;
        case SQLITE_FLOAT: r.emplace_back(sqlite3_column_double(st, c)); break;
        case SQLITE_TEXT: {
          const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, c));
          r.emplace_back(std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(st, c))));
          break;
        }
        case SQLITE_BLOB: {
          const auto* p = static_cast<const char*>(sqlite3_column_blob(st, c));
          const auto len = static_cast<std::size_t>(sqlite3_column_bytes(st, c));
          r.emplace_back(protocol::blob{len ? std::string(p, len) : std::string()});
          break;
        }
        default: r.emplace_back(value{}); break;
      }
    }
    out.rows.push_back(std::move(r));
  }
  sqlite3_reset(st);
  return out;
}

outcome<std::vector<std::vector<row>>> sqlite_reader::select(const std::vector<select_spec>& specs) {
  std::lock_guard lock(mu_);
  std::vector<std::vector<row>> out;
  for (const auto& spec : specs) {
    auto st = prepare(select_sql(spec));
    if (!st) return st.error();
    auto r = run(*st, spec.params);
    if (!r) return r.error();
    out.push_back(std::move(r->rows));
  }
  return out;
}

outcome<std::vector<protocol::query_result>> sqlite_reader::query(std::vector<protocol::statement> statements) {
  std::lock_guard lock(mu_);
  std::vector<protocol::query_result> out;
  for (const auto& s : statements) {
    auto st = prepare(s.sql);
    if (!st) return st.error();
    auto r = run(*st, s.params.positional);
    if (!r) return r.error();
    out.push_back(std::move(*r));
  }
  return out;
}

// ---- d1_reader -------------------------------------------------------------------------------------

d1_reader::d1_reader(backends::store& store, std::string description, std::chrono::milliseconds timeout)
    : store_(store), description_(std::move(description)), timeout_(timeout) {}

namespace {

// The select in backends/d1_exact's typed form: one type letter per cell, then each cell in a
// form JSON carries exactly (integers beyond 2^53, ±Inf and -0.0 as text).
std::string exact_sql(const select_spec& spec) {
  std::vector<std::string> columns;
  columns.reserve(spec.columns.size());
  for (const auto& c : spec.columns) columns.push_back(quote_name(c));
  std::string sql = "SELECT " + backends::typed_select_list(columns) + " FROM " + quote_name(spec.table);
  if (!spec.where.empty()) sql += " WHERE " + spec.where;
  if (!spec.order_by.empty()) sql += " ORDER BY " + spec.order_by;
  if (spec.limit > 0) sql += " LIMIT " + std::to_string(spec.limit);
  return sql;
}

}  // namespace

outcome<std::vector<std::vector<row>>> d1_reader::select(const std::vector<select_spec>& specs) {
  std::vector<protocol::statement> sts;
  for (const auto& spec : specs) {
    protocol::statement st{exact_sql(spec), {}};
    st.params.positional = spec.params;
    sts.push_back(std::move(st));
  }
  auto results = run_sync(store_, std::move(sts), backends::clock::now() + timeout_);
  if (!results) return results.error();
  std::vector<std::vector<row>> out;
  for (std::size_t k = 0; k < specs.size(); ++k) {
    auto decoded = backends::decode_typed(std::move((*results)[k]), specs[k].columns);
    if (!decoded) {
      auto e = decoded.error();
      e.message += " (table " + specs[k].table + ")";
      return e;
    }
    out.push_back(std::move(decoded->rows));
  }
  return out;
}

outcome<std::vector<protocol::query_result>> d1_reader::query(std::vector<protocol::statement> statements) {
  return run_sync(store_, std::move(statements), backends::clock::now() + timeout_);
}

// ---- stores ------------------------------------------------------------------------------------------

outcome<std::vector<protocol::query_result>> run_sync(backends::store& s, std::vector<protocol::statement> statements,
                                                      backends::clock::time_point deadline) {
  backends::exec_options o;
  o.internal = true;
  o.deadline = deadline;
  std::promise<outcome<std::vector<protocol::query_result>>> done;
  auto f = done.get_future();
  s.execute_batch(std::move(statements), o, [&done](outcome<std::vector<protocol::query_result>> r) { done.set_value(std::move(r)); });
  return f.get();
}

outcome<void> run_until_known(backends::store& s, const std::vector<protocol::statement>& statements, std::chrono::milliseconds timeout,
                              const std::function<std::optional<bool>()>& committed) {
  const auto deadline = backends::clock::now() + timeout;
  auto backoff = std::chrono::milliseconds(100);
  for (;;) {
    auto r = run_sync(s, statements, deadline);
    if (r) return {};
    if (!protocol::is_transient(r.error())) return r.error();
    for (;;) {
      if (backends::clock::now() + backoff > deadline) return r.error();
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
      if (!committed) break;
      const auto in = committed();
      if (!in) continue;  // cannot tell yet
      if (*in) return {};
      break;
    }
  }
}

outcome<opened> open_database(const endpoint& e, const d1_settings& d1, bool for_write, std::chrono::milliseconds timeout) {
  opened out;
  out.where = e;
  if (e.type == endpoint::kind::sqlite) {
    if (for_write) {
      std::error_code ec;
      const auto parent = std::filesystem::path(e.path).parent_path();
      if (!parent.empty() && !std::filesystem::is_directory(parent, ec))
        return fail(errc::unavailable, "cannot create '" + e.path + "': no folder " + parent.string(), "sqlite");
      backends::sqlite_store_options so;
      so.db.path = e.path;
      so.readers = 1;
      auto s = backends::sqlite_store::open(so);
      if (!s) return s.error();
      out.store = std::move(*s);
    }
    auto r = sqlite_reader::open(e.path);
    if (!r) return r.error();
    out.read = std::move(*r);
    return out;
  }
  d1_settings settings = d1;
  if (!e.database_id.empty()) settings.database_id = e.database_id;
  auto options = resolve(settings);
  if (!options) return options.error();
  options->request_timeout = std::min<std::chrono::milliseconds>(options->request_timeout, timeout);
  auto s = backends::d1_store::open(*options);
  if (!s) return s.error();
  out.store = std::move(*s);
  out.read = std::make_unique<d1_reader>(*out.store, "d1:" + options->database_id, timeout);
  if (auto probe = out.read->query_one("SELECT 1"); !probe) {
    return fail(probe.error().code, "cannot use D1 database " + options->database_id + " at " + options->endpoint + ": " + probe.error().message, "d1");
  }
  return out;
}

}  // namespace tandem::tools
