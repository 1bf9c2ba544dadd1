#include "backends/d1_store.hpp"

#include <sqlite3.h>

#include <atomic>
#include <limits>
#include <mutex>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/value.hpp>

#include "backends/d1_exact.hpp"
#include "backends/journal.hpp"
#include "backends/sqlite_connection.hpp"
#include "protocol/json_reader.hpp"
#include "protocol/text.hpp"

namespace tandem::backends {
namespace asio = boost::asio;
namespace json = boost::json;
using protocol::errc;
using protocol::error;
using protocol::query_result;

namespace {

error d1_error(errc code, std::string m) { return error{code, std::move(m), "d1", {}}; }

double number(const json::value* v) {
  if (v == nullptr) return 0;
  if (v->is_int64()) return static_cast<double>(v->get_int64());
  if (v->is_uint64()) return static_cast<double>(v->get_uint64());
  if (v->is_double()) return v->get_double();
  return 0;
}

// A JSON number as an integer; D1's are JavaScript doubles, so beyond int64 it saturates.
std::int64_t integer(const json::value* v) {
  if (v != nullptr && v->is_int64()) return v->get_int64();
  const double d = number(v);
  if (!(d > -9223372036854775808.0)) return d < 0 ? std::numeric_limits<std::int64_t>::min() : 0;  // NaN: 0
  if (d >= 9223372036854775808.0) return std::numeric_limits<std::int64_t>::max();
  return static_cast<std::int64_t>(d);
}

// A D1 cell as its JSON has it. D1 writes JSON through JavaScript: blobs are arrays of byte
// values, integers beyond 2^53 arrive already rounded, and whole-number floats arrive as
// integers (beyond 64 bits: as doubles). backends/d1_exact.hpp makes the cells exact.
outcome<protocol::value> cell(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return protocol::value{};
    case json::kind::bool_: return protocol::value{std::int64_t{v.get_bool() ? 1 : 0}};
    case json::kind::int64: return protocol::value{v.get_int64()};
    case json::kind::uint64:
      if (v.get_uint64() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return protocol::value{static_cast<std::int64_t>(v.get_uint64())};
      return protocol::value{static_cast<double>(v.get_uint64())};
    case json::kind::double_: return protocol::value{v.get_double()};
    case json::kind::string: return protocol::value{std::string(v.get_string())};
    case json::kind::array: {
      protocol::blob b;
      for (const auto& byte : v.get_array()) {
        if (!byte.is_int64() || byte.get_int64() < 0 || byte.get_int64() > 255)
          return d1_error(errc::internal, "D1 returned an array cell that is not a blob");
        b.bytes.push_back(static_cast<char>(byte.get_int64()));
      }
      return protocol::value{std::move(b)};
    }
    case json::kind::object: break;
  }
  return d1_error(errc::internal, "D1 returned an object cell");
}

// D1's error onto tandem's codes, keeping D1's message and code.
error map_error(unsigned status, std::int64_t code, const std::string& message, bool idempotent) {
  std::string text = message.empty() ? "D1 answered HTTP " + std::to_string(status) : message;
  text += " [D1 HTTP " + std::to_string(status) + (code ? ", code " + std::to_string(code) : "") + "]";
  auto has = [&](std::string_view s) { return message.find(s) != std::string::npos; };
  if (status == 429) return d1_error(errc::overloaded, "D1 is overloaded, retry later: " + text);
  if (status == 401 || status == 403) return d1_error(errc::unavailable, "D1 refused tandem's credentials: " + text);
  if (status == 404) return d1_error(errc::unavailable, "D1 database not found: " + text);
  if (status >= 500) {
    return d1_error(errc::unavailable, "D1 failed: " + text + (idempotent ? "" : " (outcome unknown: the write may or may not have been applied)"));
  }
  if (has("SQLITE_CONSTRAINT")) return d1_error(errc::constraint, text);
  if (has("SQLITE_AUTH") || has("not authorized") || has("To execute a transaction") || has("SQLITE_TOOBIG"))
    return d1_error(errc::unsupported, text);
  if (status == 400 && code == 7500) return d1_error(errc::sql_error, text);
  if (status == 400) return d1_error(errc::bad_request, "D1 rejected the request: " + text);
  return d1_error(errc::internal, "unexpected answer from D1: " + text);
}

}  // namespace

outcome<std::vector<query_result>> parse_d1_reply(unsigned status, std::string_view body, std::size_t expected, bool idempotent) {
  protocol::json_read_options ro;
  ro.big_integers_as_double = true;  // JavaScript's numbers: -2^63 is -9223372036854776000
  auto doc = protocol::read_json(body, ro);
  const json::object* o = doc.ok() ? doc.value.if_object() : nullptr;
  if (o == nullptr) {
    if (status != 200) return map_error(status, 0, std::string(body.substr(0, 200)), idempotent);
    return d1_error(errc::internal, "D1 answered with something that is not JSON: " + std::string(body.substr(0, 200)));
  }
  const auto* success = o->if_contains("success");
  if (status != 200 || success == nullptr || !success->is_bool() || !success->get_bool()) {
    std::int64_t code = 0;
    std::string message;
    if (const auto* errs = o->if_contains("errors"); errs && errs->is_array() && !errs->get_array().empty()) {
      const auto& e = errs->get_array()[0];
      if (const auto* eo = e.if_object()) {
        code = integer(eo->if_contains("code"));
        if (const auto* m = eo->if_contains("message"); m && m->is_string()) message = std::string(m->get_string());
      }
    }
    return map_error(status, code, message, idempotent);
  }
  const auto* result = o->if_contains("result");
  if (result == nullptr || !result->is_array() || result->get_array().size() != expected) {
    return d1_error(errc::internal, "D1 answered with " +
                                        std::to_string(result && result->is_array() ? result->get_array().size() : 0) +
                                        " results for " + std::to_string(expected) + " statements");
  }
  std::vector<query_result> out;
  for (const auto& one : result->get_array()) {
    const auto* ro = one.if_object();
    if (ro == nullptr) return d1_error(errc::internal, "D1 result is not an object");
    query_result q;
    if (const auto* res = ro->if_contains("results"); res && res->is_object()) {
      if (const auto* cols = res->get_object().if_contains("columns"); cols && cols->is_array()) {
        for (const auto& c : cols->get_array()) q.columns.emplace_back(c.is_string() ? std::string(c.get_string()) : "");
      }
      if (const auto* rows = res->get_object().if_contains("rows"); rows && rows->is_array()) {
        for (const auto& row : rows->get_array()) {
          if (!row.is_array()) return d1_error(errc::internal, "D1 row is not an array");
          auto& r = q.rows.emplace_back();
          for (const auto& c : row.get_array()) {
            auto v = cell(c);
            if (!v) return v.error();
            r.push_back(std::move(*v));
          }
        }
      }
    }
    if (const auto* m = ro->if_contains("meta"); m && m->is_object()) {
      const auto& mo = m->get_object();
      q.meta.changes = integer(mo.if_contains("changes"));
      q.meta.last_row_id = integer(mo.if_contains("last_row_id"));
      q.meta.rows_read = integer(mo.if_contains("rows_read"));
      q.meta.rows_written = integer(mo.if_contains("rows_written"));
      q.meta.duration_ms = number(mo.if_contains("duration"));
      if (const auto* r = mo.if_contains("served_by_region"); r && r->is_string()) q.meta.served_by_region = std::string(r->get_string());
      if (const auto* p = mo.if_contains("served_by_primary"); p && p->is_bool()) q.meta.served_by_primary = p->get_bool();
    }
    q.meta.served_by = "d1";
    out.push_back(std::move(q));
  }
  return out;
}

namespace {

outcome<std::vector<query_result>> parse_reply(const http_reply& reply, std::size_t expected, bool idempotent) {
  return parse_d1_reply(reply.status, reply.body, expected, idempotent);
}

// What the schema mirror (the follower's SQLite) answers for SQL it could never run, whatever
// the schema: a function it lacks, or syntax it does not know. "no such table" is not among them
// (a batch may create the table first).
bool sqlite_cannot_replay(const std::string& why) {
  return why.find("no such function") != std::string::npos || why.find("syntax error") != std::string::npos ||
         why.find("unrecognized token") != std::string::npos;
}

bool is_schema_change(const std::string& sql) {
  const auto k = first_keyword(sql);
  return k == "CREATE" || k == "DROP" || k == "ALTER";
}

}  // namespace

std::string_view transport_name(d1_transport t) { return t == d1_transport::bridge ? "bridge" : "rest"; }

std::optional<d1_transport> parse_transport(std::string_view name) {
  if (name == "rest") return d1_transport::rest;
  if (name == "bridge") return d1_transport::bridge;
  return std::nullopt;
}

struct d1_store::impl {
  explicit impl(const d1_options& o, http_url url)
      : options(o),
        http(ioc.get_executor(),
             http_client_options{std::move(url), o.ca_file, o.verify_tls, o.connect_timeout, o.request_timeout, o.max_connections,
                                 o.max_attempts, o.backoff_base, o.backoff_max, o.max_response_bytes,
                                 o.read_replication ? std::vector<std::string>{std::string(k_bookmark_header)} : std::vector<std::string>{},
                                 o.max_idle}),
        path(o.transport == d1_transport::bridge ? "/v1/query"
                                                 : "/client/v4/accounts/" + o.account_id + "/d1/database/" + o.database_id + "/raw") {}

  // `session`: with read replication, the D1 session the request runs in (a bookmark, or
  // "first-primary" / "first-unconstrained"); empty: none (D1's primary, no bookmark back).
  std::vector<std::pair<std::string, std::string>> headers(std::string session = {}) const {
    std::vector<std::pair<std::string, std::string>> h{{"Authorization", "Bearer " + options.api_token}};
    if (options.read_replication && !session.empty()) h.emplace_back(std::string(k_bookmark_header), std::move(session));
    return h;
  }

  // With read replication: a write goes to the primary and brings back its bookmark; a client's
  // read goes to any replica at least as new as the bookmark it was given; tandem's own reads
  // (the journal, applied positions, the lease) read the primary, in no session.
  std::string session_for(bool all_reads, const exec_options& opts) const {
    if (!options.read_replication) return {};
    if (!all_reads) return "first-primary";
    if (opts.internal) return {};
    return opts.bookmark.empty() ? "first-unconstrained" : opts.bookmark;
  }

  // Keeps the newer of the known bookmark and `b` (D1's bookmarks order as strings).
  void note_bookmark(const std::string& b) {
    if (b.empty()) return;
    std::lock_guard lock(bookmark_mu);
    if (b > latest_bookmark) latest_bookmark = b;
  }

  // Rebuilds the in-memory schema mirror from D1's sqlite_schema. The mirror lets SQLite itself
  // classify statements (a read may be retried, a write may not) and refuse what tandem refuses,
  // with the same messages as the SQLite store.
  asio::awaitable<bool> load_schema(clock::time_point deadline) {
    const std::string body =
        R"({"sql":"SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'view' THEN 1 ELSE 2 END"})";
    auto reply = co_await http.post(path, body, headers(), true, deadline);
    if (!reply) co_return false;
    auto results = parse_reply(*reply, 1, true);
    if (!results) co_return false;
    sqlite_options so;
    so.path = ":memory:";
    auto fresh = sqlite_connection::open(so);
    if (!fresh) co_return false;
    for (const auto& row : (*results)[0].rows) {
      if (const auto* sql = std::get_if<std::string>(&row.at(0))) (*fresh)->exec_internal(sql->c_str());
    }
    shadow = std::move(*fresh);
    planner.clear();  // `SELECT *` may stand for other columns now
    schema_current = true;
    co_return true;
  }

  // SQLite's verdict on one statement: read, write, or unknown (the mirror could not prepare it;
  // D1 will judge, and `why_unknown` says what the mirror answered). Refusals (UNSUPPORTED,
  // BAD_REQUEST) come back as errors.
  asio::awaitable<outcome<std::optional<statement_info>>> classify(const std::string& sql, clock::time_point deadline,
                                                                   std::string& why_unknown) {
    if (auto single = check_single_statement(sql); !single) co_return single.error();
    bool reloaded = false;
    if (!schema_current) reloaded = co_await load_schema(deadline);
    for (;;) {
      if (!shadow) co_return std::optional<statement_info>{};
      auto k = shadow->inspect(sql);
      if (k) co_return std::optional<statement_info>{std::move(*k)};
      if (k.error().code == errc::unsupported || k.error().code == errc::bad_request) {
        auto e = k.error();
        e.store = "d1";
        co_return e;
      }
      // Perhaps another client changed the schema: look once more, then let D1 decide.
      why_unknown = k.error().message;
      if (reloaded || !co_await load_schema(deadline)) co_return std::optional<statement_info>{};
      reloaded = true;
    }
  }

  // How a statement goes to D1 (backends/d1_exact.hpp): tandem's own SQL as it is; a client's by
  // the mirror's plan for it, or, unknown to the mirror, as it is and followed by its
  // last_insert_rowid(). Without room for companions in the batch, none follows.
  std::shared_ptr<const exact_plan> exact_plan_for(const std::string& sql, const std::optional<statement_info>& info, bool internal,
                                                   bool companions) {
    static const auto as_is = std::make_shared<const exact_plan>();
    static const auto unknown = std::make_shared<const exact_plan>(exact_plan{false, {}, {}, false, true});
    if (internal) return as_is;
    auto p = info && shadow ? planner.plan(sql, *info, *shadow) : unknown;
    if (!p->last_row_id || companions) return p;
    auto without = std::make_shared<exact_plan>(*p);
    without->last_row_id = false;
    return without;
  }

  // `after_reload`: the second attempt of reads whose typed form D1 refused (stale mirror).
  asio::awaitable<void> run(std::vector<protocol::statement> sts, bool is_batch, exec_options opts,
                            query_done on_query, batch_done on_batch, bool after_reload = false) {
    auto finish = [&](outcome<std::vector<query_result>> r) {
      if (is_batch) {
        on_batch(std::move(r));
      } else if (r) {
        on_query(std::move(r->at(0)));
      } else {
        on_query(r.error());
      }
    };
    if (clock::now() > opts.deadline) {
      finish(d1_error(errc::timeout, "the query timeout passed before the statement could be sent to D1"));
      co_return;
    }
    if (sts.size() > options.limits.max_batch_statements) {
      finish(d1_error(errc::unsupported, "D1 batches hold at most " + std::to_string(options.limits.max_batch_statements) +
                                             " statements; this one has " + std::to_string(sts.size())));
      co_return;
    }
    bool all_reads = true;
    bool changes_schema = false;
    std::vector<std::string> parts;
    std::vector<std::size_t> ends;  // parts.size() after each statement of `sts`
    std::vector<bool> counted;      // each statement: a DML statement whose changes() a journal records
    std::vector<std::shared_ptr<const exact_plan>> plans;  // one per statement of `sts`
    const bool companions = 2 * sts.size() + 1 <= options.limits.max_batch_statements;
    for (std::size_t i = 0; i < sts.size(); ++i) {
      outcome<std::optional<statement_info>> kind = std::optional<statement_info>{};
      if (opts.internal) {
        const auto k = first_keyword(sts[i].sql);
        statement_info info;
        info.kind = k == "SELECT" ? statement_kind::read : statement_kind::write;
        kind = std::optional<statement_info>{info};
      } else {
        std::string why_unknown;
        kind = co_await classify(sts[i].sql, opts.deadline, why_unknown);
        if (kind && !*kind && opts.journal && sqlite_cannot_replay(why_unknown)) {
          const std::string version = sqlite3_libversion();
          kind = d1_error(errc::unsupported, "SQLite " + version + " (the follower while D1 leads) cannot run this statement (" +
                                                 why_unknown + "), so it could not replay it: write it in SQL that SQLite " +
                                                 version + " runs too");
        }
      }
      if (kind && opts.journal && *kind && (*kind)->kind == statement_kind::write && !(*kind)->nondeterministic.empty()) {
        kind = d1_error(errc::unsupported,
                        "this write uses " + (*kind)->nondeterministic +
                            ", so SQLite (the follower while D1 leads) could not reproduce it from its SQL. Compute the "
                            "value in the application and bind it as a parameter");
      }
      auto converted = kind ? to_exact_d1_statement(sts[i], exact_plan_for(sts[i].sql, *kind, opts.internal, companions), options.limits)
                            : outcome<exact_statement>(kind.error());
      if (!converted) {
        auto e = converted.error();
        if (is_batch) {
          e.index = i;
          e.message = "statement " + std::to_string(i) + ": " + e.message + " (nothing was sent to D1)";
        }
        finish(std::move(e));
        co_return;
      }
      // Unknown to the mirror: D1 judges, and it counts as a write (never retried blindly).
      all_reads = all_reads && *kind && (*kind)->kind == statement_kind::read;
      changes_schema = changes_schema || is_schema_change(sts[i].sql);
      std::string part = "{\"sql\":";
      protocol::append_json_string(part, converted->statement.sql);
      part += ",\"params\":" + converted->statement.params_json + "}";
      parts.push_back(std::move(part));
      if (converted->plan->last_row_id) parts.push_back("{\"sql\":\"" + std::string(k_last_row_id_sql) + "\"}");
      ends.push_back(parts.size());
      counted.push_back(*kind && (*kind)->kind == statement_kind::write && !is_schema_change(sts[i].sql));
      plans.push_back(std::move(converted->plan));
    }
    // D1 leads: the journal entry commits in the same batch (D1 runs a batch as one transaction).
    const bool journaled = opts.journal && !all_reads;
    // A batch's entry records each statement's changes() (the last INSERT/UPDATE/DELETE's count,
    // read by a bookkeeping UPDATE right after it; -1 for a read or a schema change, which leave it
    // as it was) when D1's batch has room for one more statement each. Otherwise, and for a lone
    // schema change, '[]': not recorded, so the follower's counts are not compared.
    const bool per_statement = journaled && is_batch && parts.size() + sts.size() + 1 <= options.limits.max_batch_statements;
    auto journal_part = [&](std::string_view changes_sql) {
      std::string part = "{\"sql\":";
      protocol::append_json_string(part, journal_append_sql(changes_sql) + " RETURNING seq");
      part += ",\"params\":[0,";
      protocol::append_json_string(part, encode_statements(sts));
      part += "," + std::to_string(wall_ms()) + "]}";
      return part;
    };
    if (per_statement) {
      std::vector<std::string> with;
      with.reserve(parts.size() + sts.size() + 1);
      with.push_back(journal_part("'[]'"));
      std::size_t from = 0;
      for (std::size_t i = 0; i < sts.size(); ++i) {
        for (; from < ends[i]; ++from) with.push_back(std::move(parts[from]));
        std::string part = "{\"sql\":";
        protocol::append_json_string(part, journal_count_changes_sql(counted[i]));
        with.push_back(part + "}");
      }
      parts = std::move(with);
    } else if (journaled) {
      parts.push_back(journal_part(is_batch || changes_schema ? "'[]'" : "json_array(changes())"));
    }
    std::string body;
    if (parts.size() == 1) {
      body = std::move(parts[0]);  // a single query is the statement object alone
    } else {
      body = "{\"batch\":[";
      for (std::size_t i = 0; i < parts.size(); ++i) body += (i ? "," : "") + parts[i];
      body += "]}";
    }

    auto reply = co_await http.post(path, body, headers(session_for(all_reads, opts)), all_reads, opts.deadline);
    if (!reply) {
      finish(reply.error());
      co_return;
    }
    auto results = parse_reply(*reply, parts.size(), all_reads);
    if (!results && journaled && results.error().message.find("no such table: _tandem_journal") != std::string::npos) {
      // D1 leads and tandem's tables are not there yet (the replicator creates them when it
      // first reaches D1). The batch failed as a whole, so nothing committed: create them (the
      // journal's identity too, before this write counts as D1's own data), send again.
      std::string schema = "{\"batch\":[";
      bool first = true;
      for (const auto& st : journal_identity_statements()) {
        schema += first ? "{\"sql\":" : ",{\"sql\":";
        protocol::append_json_string(schema, st.sql);
        schema += "}";
        first = false;
      }
      schema += "]}";
      if (auto made = co_await http.post(path, std::move(schema), headers(), true, opts.deadline); made) {
        reply = co_await http.post(path, std::move(body), headers(session_for(all_reads, opts)), all_reads, opts.deadline);
        if (!reply) {
          finish(reply.error());
          co_return;
        }
        results = parse_reply(*reply, parts.size(), all_reads);
      }
    }
    if (!results && is_stale_typed_form(results.error())) {
      // D1's schema changed behind the mirror (another tandem, a migration): load it again, and
      // send reads once more (D1 ran nothing: the statement did not compile).
      schema_current = false;
      if (all_reads && !after_reload) {
        co_await run(std::move(sts), is_batch, opts, std::move(on_query), std::move(on_batch), true);
        co_return;
      }
    }
    if (results && per_statement) {
      // The entry's INSERT came first and each statement's bookkeeping UPDATE after it: the
      // statements' own answers as if neither were there, and the entry's last (as below).
      if (results->size() != parts.size()) {
        finish(d1_error(errc::internal, "D1 answered " + std::to_string(results->size()) + " results for " + std::to_string(parts.size()) +
                                            " statements"));
        co_return;
      }
      std::vector<protocol::query_result> own;
      own.reserve(parts.size() - sts.size());
      std::size_t at = 1, from = 0;
      for (std::size_t i = 0; i < sts.size(); ++i) {
        for (; from < ends[i]; ++from) own.push_back(std::move((*results)[at++]));
        ++at;
      }
      own.push_back(std::move(results->front()));
      *results = std::move(own);
    }
    if (results) results = restore_exact(std::move(*results), plans, is_batch);
    if (results) {
      // Where it ran, and the session's bookmark after it: only with read replication.
      const std::string bookmark = options.read_replication ? reply->header(k_bookmark_header) : std::string();
      if (!all_reads) note_bookmark(bookmark);
      for (auto& r : *results) {
        r.meta.bookmark = bookmark;
        if (!options.read_replication) {
          r.meta.served_by_region.clear();
          r.meta.served_by_primary.reset();
        }
      }
    }
    if (results && changes_schema) schema_current = false;
    if (results && journaled) {
      const auto& entry = results->back();
      const std::int64_t* found = entry.rows.empty() || entry.rows[0].empty() ? nullptr : std::get_if<std::int64_t>(&entry.rows[0][0]);
      if (found == nullptr) {
        finish(d1_error(errc::internal, "D1 did not return the journal sequence number of a committed write"));
        co_return;
      }
      const std::int64_t seq = *found;
      results->pop_back();
      for (auto& r : *results) r.meta.seq = seq;
    }
    finish(std::move(results));
  }

  asio::awaitable<void> check_health(std::function<void(d1_health)> done) {
    const auto start = clock::now();
    auto reply = co_await http.post(path, R"({"sql":"SELECT 1"})", headers(), true, start + options.request_timeout);
    d1_health h;
    h.latency_ms = std::chrono::duration<double, std::milli>(clock::now() - start).count();
    if (!reply) {
      h.error = reply.error().message;
    } else if (auto r = parse_reply(*reply, 1, true); !r) {
      h.error = r.error().message;
    } else {
      h.ok = true;
    }
    done(std::move(h));
  }

  d1_options options;
  asio::io_context ioc{1};
  asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};
  http_client http;
  std::string path;
  std::unique_ptr<sqlite_connection> shadow;
  exact_planner planner;  // how each client statement is sent so that D1's answer is exact
  bool schema_current = false;
  std::atomic<bool> stopping{false};
  std::thread thread;
  mutable std::mutex bookmark_mu;
  std::string latest_bookmark;  // the newest bookmark a write through this store brought back
};

outcome<std::unique_ptr<d1_store>> d1_store::open(const d1_options& options) {
  auto url = parse_http_url(options.endpoint);
  if (!url) return url.error();
  auto bad = [](std::string m) { return d1_error(errc::bad_request, std::move(m)); };
  for (char c : options.account_id + options.database_id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return bad("d1.account_id and d1.database_id may hold only letters, digits and '-'");
  }
  d1_options o = options;
  if (o.transport == d1_transport::rest) {
    if (o.account_id.empty()) return bad("d1.account_id is empty");
    if (o.database_id.empty()) return bad("d1.database_id is empty");
    if (o.api_token.empty()) return bad("the D1 API token is empty");
    if (o.read_replication) {
      return bad("d1.read_replication needs d1.transport \"bridge\": D1's REST API has no sessions, so every read goes to the primary");
    }
  } else {
    if (o.api_token.empty()) return bad("the D1 bridge's secret is empty");
    if (const auto at = o.endpoint.find("{database_id}"); at != std::string::npos) {
      if (o.database_id.empty()) return bad("d1.endpoint names {database_id} but d1.database_id is empty");
      o.endpoint.replace(at, 13, o.database_id);
      url = parse_http_url(o.endpoint);
      if (!url) return url.error();
    }
  }
  auto i = std::make_unique<impl>(o, std::move(*url));
  auto* raw = i.get();
  i->thread = std::thread([raw] { raw->ioc.run(); });
  return std::unique_ptr<d1_store>(new d1_store(std::move(i)));
}

d1_store::d1_store(std::unique_ptr<impl> i) : impl_(std::move(i)) {}

d1_store::~d1_store() { shutdown(); }

void d1_store::shutdown() {
  if (impl_->stopping.exchange(true)) return;
  // In-flight requests finish; the thread ends when nothing is left to run.
  asio::post(impl_->ioc, [i = impl_.get()] {
    i->http.close_idle();
    i->work.reset();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
}

void d1_store::execute(protocol::statement st, exec_options options, query_done done) {
  if (impl_->stopping) {
    done(d1_error(errc::unavailable, "the D1 store is shutting down"));
    return;
  }
  std::vector<protocol::statement> sts;
  sts.push_back(std::move(st));
  asio::co_spawn(impl_->ioc, impl_->run(std::move(sts), false, options, std::move(done), {}), asio::detached);
}

void d1_store::execute_batch(std::vector<protocol::statement> statements, exec_options options, batch_done done) {
  if (impl_->stopping) {
    done(d1_error(errc::unavailable, "the D1 store is shutting down"));
    return;
  }
  asio::co_spawn(impl_->ioc, impl_->run(std::move(statements), true, options, {}, std::move(done)), asio::detached);
}

void d1_store::health(std::function<void(d1_health)> done) {
  asio::co_spawn(impl_->ioc, impl_->check_health(std::move(done)), asio::detached);
}

http_stats d1_store::http() const { return impl_->http.stats(); }

void d1_store::count_requests_into(std::atomic<std::uint64_t>* counter) noexcept { impl_->http.count_requests_into(counter); }

d1_transport d1_store::transport() const noexcept { return impl_->options.transport; }

bool d1_store::read_replication() const noexcept { return impl_->options.read_replication; }

std::string d1_store::latest_bookmark() const {
  std::lock_guard lock(impl_->bookmark_mu);
  return impl_->latest_bookmark;
}

}  // namespace tandem::backends
