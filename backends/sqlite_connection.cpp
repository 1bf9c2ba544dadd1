#include "backends/sqlite_connection.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <functional>

namespace tandem::backends {
namespace {

using protocol::errc;
using protocol::error;

// Skips whitespace, `--` and `/* */` comments and stray semicolons: what SQLite would treat as
// "no statement".
std::string_view skip_blank(std::string_view s) {
  for (;;) {
    while (!s.empty() && (std::isspace(static_cast<unsigned char>(s.front())) || s.front() == ';'))
      s.remove_prefix(1);
    if (s.substr(0, 2) == "--") {
      const auto nl = s.find('\n');
      s = nl == std::string_view::npos ? std::string_view{} : s.substr(nl + 1);
    } else if (s.substr(0, 2) == "/*") {
      const auto end = s.find("*/", 2);
      s = end == std::string_view::npos ? std::string_view{} : s.substr(end + 2);
    } else {
      return s;
    }
  }
}

bool starts_with_keyword(std::string_view s, std::string_view keyword) {
  if (s.size() < keyword.size()) return false;
  for (std::size_t i = 0; i < keyword.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(s[i])) != keyword[i]) return false;
  }
  return s.size() == keyword.size() || !(std::isalnum(static_cast<unsigned char>(s[keyword.size()])) ||
                                         s[keyword.size()] == '_');
}

bool equals_nocase(const char* a, std::string_view b) {
  return a != nullptr && std::strlen(a) == b.size() && sqlite3_strnicmp(a, b.data(), static_cast<int>(b.size())) == 0;
}

template <class List>
bool in_list(const char* name, const List& list) {
  return std::any_of(std::begin(list), std::end(list), [&](std::string_view n) { return equals_nocase(name, n); });
}
bool in_list(const char* name, std::initializer_list<std::string_view> list) { return in_list<decltype(list)>(name, list); }

bool is_tandem_table(const char* name) {
  return name != nullptr && sqlite3_strnicmp(name, "_tandem_", 8) == 0;
}

// D1 refuses tables, indexes, triggers and views whose name starts with _cf_ (its own), and
// renames into such a name.
bool is_d1_reserved(std::string_view name) { return name.size() >= 4 && sqlite3_strnicmp(name.data(), "_cf_", 4) == 0; }
constexpr const char* k_d1_reserved = " starts with _cf_, which D1 reserves for its own tables: choose another name";

// The new name of `ALTER TABLE t RENAME TO name` ("" for any other statement; RENAME [COLUMN] a
// TO b renames a column). The authorizer is not told it.
std::string_view renamed_table(std::string_view sql) {
  auto word = [&](std::size_t& i) {
    while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i]))) ++i;
    const std::size_t from = i;
    while (i < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_')) ++i;
    return sql.substr(from, i - from);
  };
  for (std::size_t i = 0; i < sql.size();) {
    const auto w = word(i);
    if (w.empty()) {
      ++i;
      continue;
    }
    if (w.size() == 6 && sqlite3_strnicmp(w.data(), "RENAME", 6) == 0) {
      const auto next = word(i);
      if (next.size() != 2 || sqlite3_strnicmp(next.data(), "TO", 2) != 0) return {};
      while (i < sql.size() && (std::isspace(static_cast<unsigned char>(sql[i])) || std::strchr("\"'`[", sql[i]))) ++i;
      return sql.substr(i);
    }
  }
  return {};
}

void add_unique(std::vector<std::string>& list, const char* name) {
  if (name == nullptr || sqlite3_strnicmp(name, "sqlite_", 7) == 0) return;
  if (std::find(list.begin(), list.end(), name) == list.end()) list.emplace_back(name);
}

// Functions whose result is not determined by their arguments and the database alone. Every date
// and time function counts, whatever its arguments: with 'now' (or none) it reads the clock, and
// which arguments a call gets is known only when it runs (a bound value, a column, a trigger's
// NEW row). Such a write is journaled as the rows it produced, which replay exactly either way.
constexpr std::string_view k_volatile_functions[] = {
    "random", "randomblob", "changes", "total_changes", "last_insert_rowid", "sqlite_version",
    "sqlite_source_id", "current_date", "current_time", "current_timestamp",
    "date", "time", "datetime", "julianday", "strftime", "unixepoch", "timediff"};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

constexpr std::string_view k_use_batch =
    "; each query commits on its own, and a batch runs several statements atomically";

}  // namespace

void sqlite_db_closer::operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
void sqlite_stmt_finalizer::operator()(sqlite3_stmt* st) const noexcept { sqlite3_finalize(st); }
void sqlite_backup_finisher::operator()(sqlite3_backup* b) const noexcept { sqlite3_backup_finish(b); }

outcome<sqlite_db_ptr> open_sqlite(const std::string& path, int flags) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  sqlite_db_ptr db(raw);  // closed on failure too: SQLite may give a handle with the error
  if (rc != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    return error{errc::unavailable, "cannot open SQLite database '" + path + "': " + msg, "sqlite", {}};
  }
  return db;
}

outcome<void> sqlite_check(sqlite3* db, int rc, std::string_view context, protocol::errc code) {
  if (rc == SQLITE_OK) return {};
  return error{code, std::string(context) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)), "sqlite", {}};
}

sqlite_connection::sqlite_connection(const sqlite_options& options) : options_(options) {}

sqlite_connection::~sqlite_connection() {
  cache_.clear();  // statements are finalized before the connection closes
}

outcome<std::unique_ptr<sqlite_connection>> sqlite_connection::open(const sqlite_options& options) {
  std::unique_ptr<sqlite_connection> c(new sqlite_connection(options));
  const int flags = (options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                    SQLITE_OPEN_NOMUTEX;
  auto db = open_sqlite(options.path, flags);
  if (!db) return db.error();
  c->db_ = std::move(*db);
  sqlite3* raw = c->db_.get();
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  if (options.max_length > 0) {
    c->max_length_ = options.max_length;
    sqlite3_limit(raw, SQLITE_LIMIT_LENGTH, static_cast<int>(std::min<std::size_t>(options.max_length, 0x7fffffff)));
  }
  sqlite3_db_config(raw, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(raw, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
  sqlite3_set_authorizer(raw, &sqlite_connection::authorize, c.get());
  sqlite3_progress_handler(raw, static_cast<int>(k_progress_period), &sqlite_connection::progress, c.get());

  static constexpr std::array<std::string_view, 4> k_sync{"OFF", "NORMAL", "FULL", "EXTRA"};
  std::string sync = options.synchronous;
  std::transform(sync.begin(), sync.end(), sync.begin(), [](unsigned char ch) { return std::toupper(ch); });
  if (std::find(k_sync.begin(), k_sync.end(), sync) == k_sync.end()) {
    return error{errc::bad_request, "synchronous must be OFF, NORMAL, FULL or EXTRA, not '" + options.synchronous + "'", "sqlite", {}};
  }
  if (!options.read_only) {
    // A file tandem creates gives the pages it frees back to the disk on request (the journal's
    // pruned entries: see sqlite_store::journal_pruned); auto_vacuum can only be chosen before
    // the first table. Older files reuse their free pages instead.
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(raw, "PRAGMA page_count", -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_int64(st, 0) == 0) {
      sqlite3_finalize(st);
      st = nullptr;
      if (auto r = c->exec_internal("PRAGMA auto_vacuum = INCREMENTAL"); !r) return r.error();
    }
    sqlite3_finalize(st);
    if (auto r = c->exec_internal("PRAGMA journal_mode=WAL"); !r) return r.error();
  }
  const std::string pragmas = "PRAGMA synchronous=" + sync + "; PRAGMA foreign_keys=ON";
  if (auto r = c->exec_internal(pragmas.c_str()); !r) return r.error();
  return c;
}

outcome<void> sqlite_connection::exec_internal(const char* sql) {
  char* msg = nullptr;
  const int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, &msg);
  if (rc != SQLITE_OK) {
    auto e = error_from(rc, "");
    if (msg) {
      e.message = msg;
      sqlite3_free(msg);
    }
    return e;
  }
  return {};
}

bool sqlite_connection::in_transaction() const noexcept { return sqlite3_get_autocommit(db_.get()) == 0; }

int sqlite_connection::progress(void* self) {
  auto* c = static_cast<sqlite_connection*>(self);
  if (c->budget_ticks_ > 0 && ++c->ticks_ > c->budget_ticks_) {
    c->budget_spent_ = true;
    return 1;
  }
  return clock::now() > c->deadline_ ? 1 : 0;
}

int sqlite_connection::authorize(void* self, int action, const char* a, const char* b, const char*, const char* d) {
  auto* c = static_cast<sqlite_connection*>(self);
  // What a statement does is recorded for every statement; the rules apply to client SQL only.
  auto deny = [&](std::string why) {
    if (!c->checking_user_sql_) return SQLITE_OK;
    if (c->denied_.empty()) c->denied_ = std::move(why);
    return SQLITE_DENY;
  };
  auto guard_tandem = [&](const char* table) {
    return is_tandem_table(table) ? deny(std::string("the table ") + table +
                                         " belongs to tandem (its journal and replication state); clients may only read it")
                                  : SQLITE_OK;
  };
  switch (action) {
    case SQLITE_INSERT:
      add_unique(c->seen_.written_tables, a);
      add_unique(c->inserted_tables_, a);
      if (d != nullptr) c->seen_.fires_triggers = true;
      return guard_tandem(a);
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
      add_unique(c->seen_.written_tables, a);
      if (d != nullptr) c->seen_.fires_triggers = true;
      return guard_tandem(a);
    case SQLITE_CREATE_TABLE:
    case SQLITE_CREATE_VIEW:
    case SQLITE_CREATE_INDEX:
    case SQLITE_CREATE_TRIGGER:
      c->seen_.schema_change = true;
      if (a != nullptr && is_d1_reserved(a)) return deny(std::string("the name ") + a + k_d1_reserved);
      return guard_tandem(action == SQLITE_CREATE_TABLE || action == SQLITE_CREATE_VIEW ? a : b);
    case SQLITE_DROP_TABLE:
    case SQLITE_DROP_VIEW:
      c->seen_.schema_change = true;
      return guard_tandem(a);
    case SQLITE_ALTER_TABLE:
      if (const auto to = renamed_table(c->preparing_); is_d1_reserved(to)) {
        return deny("the new name " + std::string(to.substr(0, to.find_first_of(" \t\n;\"'`]"))) + k_d1_reserved);
      }
      [[fallthrough]];
    case SQLITE_DROP_INDEX:
    case SQLITE_DROP_TRIGGER:
      c->seen_.schema_change = true;
      return guard_tandem(b);
    case SQLITE_TRANSACTION:
      return deny("transaction control (BEGIN, COMMIT, ROLLBACK) is not supported" + std::string(k_use_batch));
    case SQLITE_SAVEPOINT:
      return deny("SAVEPOINT, RELEASE and ROLLBACK TO are not supported" + std::string(k_use_batch));
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
      return deny("ATTACH and DETACH are not supported: they change connection state, and D1 forbids them");
    case SQLITE_CREATE_TEMP_INDEX:
    case SQLITE_CREATE_TEMP_TABLE:
    case SQLITE_CREATE_TEMP_TRIGGER:
    case SQLITE_CREATE_TEMP_VIEW:
    case SQLITE_DROP_TEMP_INDEX:
    case SQLITE_DROP_TEMP_TABLE:
    case SQLITE_DROP_TEMP_TRIGGER:
    case SQLITE_DROP_TEMP_VIEW:
      return deny("TEMP objects are not supported: they live in one connection, and D1 forbids them");
    case SQLITE_FUNCTION:
      if (equals_nocase(b, "load_extension")) return deny("load_extension() is not supported");
      // Reported for the statement and for the body of every trigger it may fire (`d` names
      // the trigger), so a trigger's datetime('now') is seen like the statement's own.
      if (c->volatile_seen_.empty() && b != nullptr && in_list(b, k_volatile_functions)) {
        c->volatile_seen_ = lower(b) + "()";
        if (d != nullptr) c->volatile_seen_ += std::string(" (in trigger ") + d + ")";
      }
      return SQLITE_OK;
    case SQLITE_SELECT:
      ++c->seen_.selects;
      return SQLITE_OK;
    case SQLITE_PRAGMA: {
      // Reading pragmas are fine; anything that sets connection or database state is not: it
      // would leak into other clients' statements on a shared connection, and D1 refuses most.
      if (b != nullptr) {
        if (in_list(a, {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo",
                        "foreign_key_list", "foreign_key_check", "quick_check", "integrity_check",
                        "table_list"}))
          return SQLITE_OK;
        return deny(std::string("PRAGMA ") + (a ? a : "") + " with a value is not supported: it changes state shared by all clients");
      }
      if (in_list(a, {"optimize", "incremental_vacuum", "wal_checkpoint", "shrink_memory"}))
        return deny(std::string("PRAGMA ") + (a ? a : "") + " is not supported: it is maintenance the operator runs, not the application");
      return SQLITE_OK;
    }
    default:
      return SQLITE_OK;
  }
}

error sqlite_connection::too_big() const {
  return error{errc::unsupported,
               "refused, nothing was written: the write makes a string, blob or row of more than " + std::to_string(max_length_) +
                   " bytes, and D1 stores at most that much per value and per row",
               "sqlite", {}};
}

error sqlite_connection::error_from(int rc, std::string_view context) const {
  const int primary = rc & 0xFF;
  std::string msg = db_ ? sqlite3_errmsg(db_.get()) : sqlite3_errstr(rc);
  if (!context.empty()) msg = std::string(context) + msg;
  errc code = errc::sql_error;
  if (primary == SQLITE_TOOBIG && max_length_ > 0) return too_big();
  switch (primary) {
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH: code = errc::constraint; break;
    case SQLITE_INTERRUPT: code = errc::timeout; msg = "the statement ran past the query timeout and was interrupted"; break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY: code = errc::unavailable; break;
    case SQLITE_NOMEM:
    case SQLITE_CORRUPT:
    case SQLITE_INTERNAL:
    case SQLITE_MISUSE: code = errc::internal; break;
    case SQLITE_AUTH: code = errc::unsupported; break;
    default: break;
  }
  return error{code, std::move(msg), "sqlite", {}};
}

outcome<sqlite_connection::cache_entry*> sqlite_connection::prepare(const std::string& sql, bool internal) {
  // Internal statements are cached apart: a client sending the same text must still meet the
  // authorizer.
  if (cache_stale_) {
    cache_.clear();
    lru_.clear();
    cache_stale_ = false;
  }
  const std::string key = internal ? "\x01" + sql : sql;
  if (auto it = cache_.find(key); it != cache_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return &it->second;
  }
  const std::string_view body = skip_blank(sql);
  if (body.empty()) return error{errc::bad_request, "empty SQL: no statement to run", "sqlite", {}};
  if (!internal && starts_with_keyword(body, "VACUUM")) {
    return error{errc::unsupported, "VACUUM is not supported: it is maintenance the operator runs, and D1 forbids it", "sqlite", {}};
  }
  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  denied_.clear();
  seen_ = {};
  inserted_tables_.clear();
  volatile_seen_.clear();
  checking_user_sql_ = !internal;
  preparing_ = sql;
  const int rc = sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &raw, &tail);
  checking_user_sql_ = false;
  stmt_ptr stmt(raw);
  if (rc != SQLITE_OK) {
    if (!denied_.empty()) return error{errc::unsupported, denied_, "sqlite", {}};
    return error_from(rc, "");
  }
  if (!stmt) return error{errc::bad_request, "empty SQL: no statement to run", "sqlite", {}};
  const std::string_view rest(tail, sql.data() + sql.size() - tail);
  if (!skip_blank(rest).empty()) {
    return error{errc::bad_request,
                 "only one statement per query; found more after '" + std::string(sql.data(), tail - sql.data()) +
                     "' (send several statements as a batch)",
                 "sqlite", {}};
  }
  statement_info info = std::move(seen_);
  finish_info(info, stmt.get());
  if (cache_.size() >= std::max<std::size_t>(options_.statement_cache_size, 1)) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(key);
  auto& entry = cache_[key];
  entry.stmt = std::move(stmt);
  entry.lru = lru_.begin();
  entry.info = std::move(info);
  return &entry;
}

// Completes what the authorizer saw with what needs the schema: the functions of the column
// DEFAULTs an INSERT may evaluate (the authorizer does not see those while the INSERT is
// prepared, so each DEFAULT is prepared on its own and the authorizer reports its functions), and
// the written tables whose rows cannot be journaled as row images.
void sqlite_connection::finish_info(statement_info& info, sqlite3_stmt* st) {
  info.kind = sqlite3_stmt_readonly(st) ? statement_kind::read : statement_kind::write;
  const int ncol = sqlite3_column_count(st);
  info.columns.reserve(static_cast<std::size_t>(ncol));
  for (int i = 0; i < ncol; ++i) {
    const char* name = sqlite3_column_name(st, i);
    info.columns.emplace_back(name != nullptr ? name : "");
  }
  info.nondeterministic = volatile_seen_;
  if (info.kind == statement_kind::read) return;
  for (const auto& table : info.written_tables) {
    if (auto why = row_images_refused(table); !why.empty()) info.tables_without_row_images.push_back(why);
  }
  if (!info.nondeterministic.empty()) return;
  for (const auto& table : inserted_tables_) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_.get(), "SELECT name, dflt_value FROM pragma_table_xinfo(?) WHERE dflt_value IS NOT NULL", -1, &raw,
                           nullptr) != SQLITE_OK)
      continue;
    stmt_ptr q(raw);
    sqlite3_bind_text(raw, 1, table.c_str(), -1, SQLITE_TRANSIENT);
    while (info.nondeterministic.empty() && sqlite3_step(raw) == SQLITE_ROW) {
      const std::string column = reinterpret_cast<const char*>(sqlite3_column_text(raw, 0));
      const std::string probe = std::string("SELECT (") + reinterpret_cast<const char*>(sqlite3_column_text(raw, 1)) + ")";
      volatile_seen_.clear();
      sqlite3_stmt* dflt = nullptr;
      sqlite3_prepare_v2(db_.get(), probe.c_str(), -1, &dflt, nullptr);
      sqlite3_finalize(dflt);
      if (!volatile_seen_.empty()) info.nondeterministic = volatile_seen_ + " (the DEFAULT of " + table + "." + column + ")";
    }
  }
  volatile_seen_.clear();
}

// Why rows of `table` cannot be journaled as row images ("" when they can): the pre-update hook
// does not see virtual tables, and a rowid table whose columns shadow rowid, _rowid_ and oid has
// no name left to address its rows by.
std::string sqlite_connection::row_images_refused(const std::string& table) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_.get(), "SELECT type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?", -1, &raw, nullptr) !=
      SQLITE_OK)
    return "";
  stmt_ptr q(raw);
  sqlite3_bind_text(raw, 1, table.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(raw) != SQLITE_ROW) return "";
  const std::string type = reinterpret_cast<const char*>(sqlite3_column_text(raw, 0));
  if (type == "virtual") return "table " + table + " is a virtual table, whose rows SQLite does not report";
  if (sqlite3_column_int(raw, 1) != 0) return "";
  sqlite3_stmt* cols = nullptr;
  if (sqlite3_prepare_v2(db_.get(), "SELECT count(*) FROM pragma_table_xinfo(?) WHERE lower(name) IN ('rowid', '_rowid_', 'oid')", -1,
                         &cols, nullptr) != SQLITE_OK)
    return "";
  stmt_ptr c(cols);
  sqlite3_bind_text(cols, 1, table.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(cols) == SQLITE_ROW && sqlite3_column_int(cols, 0) == 3)
    return "table " + table + " has columns named rowid, _rowid_ and oid, so its rows have no name to be addressed by";
  return "";
}

outcome<statement_kind> sqlite_connection::classify(const std::string& sql) {
  auto e = prepare(sql);
  if (!e) return e.error();
  return (*e)->info.kind;
}

outcome<statement_kind> sqlite_connection::classify_internal(const std::string& sql) {
  auto e = prepare(sql, true);
  if (!e) return e.error();
  return (*e)->info.kind;
}

outcome<statement_info> sqlite_connection::inspect(const std::string& sql) {
  auto e = prepare(sql);
  if (!e) return e.error();
  return (*e)->info;
}

int sqlite_bind(sqlite3_stmt* st, int i, const protocol::value& v) {
  switch (v.index()) {
    case 0: return sqlite3_bind_null(st, i);
    case 1: return sqlite3_bind_int64(st, i, std::get<std::int64_t>(v));
    case 2: return sqlite3_bind_double(st, i, std::get<double>(v));
    case 3: {
      const auto& s = std::get<std::string>(v);
      return sqlite3_bind_text64(st, i, s.data(), s.size(), SQLITE_STATIC, SQLITE_UTF8);
    }
    case 4: {
      const auto& b = std::get<protocol::blob>(v).bytes;
      if (b.empty()) return sqlite3_bind_zeroblob(st, i, 0);
      return sqlite3_bind_blob64(st, i, b.data(), b.size(), SQLITE_STATIC);
    }
  }
  return SQLITE_MISUSE;
}

namespace {

// Binds the client's parameters; every statement parameter must get exactly one value and every
// value must be used.
outcome<void> bind_all(sqlite3_stmt* st, const protocol::params& p, const std::function<error()>& too_big) {
  const int count = sqlite3_bind_parameter_count(st);
  auto bad = [](std::string m) { return error{errc::bad_request, std::move(m), "sqlite", {}}; };
  if (!p.is_named) {
    if (static_cast<std::size_t>(count) != p.positional.size()) {
      return bad("the statement has " + std::to_string(count) + " parameter(s) but " +
                 std::to_string(p.positional.size()) + " value(s) were given");
    }
    for (int i = 1; i <= count; ++i) {
      if (int rc = sqlite_bind(st, i, p.positional[i - 1]); rc != SQLITE_OK) {
        if (rc == SQLITE_TOOBIG) return too_big();
        return bad("cannot bind parameter " + std::to_string(i) + ": " + sqlite3_errstr(rc));
      }
    }
    return {};
  }
  std::vector<bool> used(p.named.size(), false);
  for (int i = 1; i <= count; ++i) {
    const char* name = sqlite3_bind_parameter_name(st, i);
    if (name == nullptr || name[0] == '?') {
      return bad("parameter " + std::to_string(i) + " is positional; pass params as an array, or name it (:name)");
    }
    const std::string_view full(name);
    std::size_t found = p.named.size();
    for (std::size_t k = 0; k < p.named.size(); ++k) {
      if (p.named[k].first == full || p.named[k].first == full.substr(1)) {
        found = k;
        break;
      }
    }
    if (found == p.named.size()) return bad("no value given for parameter " + std::string(full));
    used[found] = true;
    if (int rc = sqlite_bind(st, i, p.named[found].second); rc != SQLITE_OK) {
      if (rc == SQLITE_TOOBIG) return too_big();
      return bad("cannot bind parameter " + std::string(full) + ": " + sqlite3_errstr(rc));
    }
  }
  for (std::size_t k = 0; k < used.size(); ++k) {
    if (!used[k]) return bad("the statement has no parameter named '" + p.named[k].first + "'");
  }
  return {};
}

protocol::value column_value(sqlite3_stmt* st, int i) {
  switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: return sqlite3_column_int64(st, i);
    case SQLITE_FLOAT: return sqlite3_column_double(st, i);
    case SQLITE_TEXT: {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, i));
      return std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(st, i)));
    }
    case SQLITE_BLOB: {
      const auto* p = static_cast<const char*>(sqlite3_column_blob(st, i));
      const auto n = static_cast<std::size_t>(sqlite3_column_bytes(st, i));
      return protocol::blob{p ? std::string(p, n) : std::string()};
    }
    default: return std::monostate{};
  }
}

// Resets the statement and drops its bindings on every exit path (the bound buffers belong to
// the caller).
struct statement_reset {
  sqlite3_stmt* st;
  ~statement_reset() {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
  }
};

}  // namespace

outcome<protocol::query_result> sqlite_connection::execute(const protocol::statement& statement,
                                                           clock::time_point deadline, bool internal) {
  const auto start = clock::now();
  if (start > deadline) return error{errc::timeout, "the query timeout passed before the statement could start", "sqlite", {}};
  auto prepared = prepare(statement.sql, internal);
  if (!prepared) return prepared.error();
  sqlite3_stmt* st = (*prepared)->stmt.get();
  statement_reset reset{st};
  // The follower's limit is for what clients write; tandem's own rows (a journal entry holding a
  // 1.5 MB blob as base64, a follower applying what D1 already holds) may be larger.
  struct lift_limit {
    sqlite3* db;
    int kept;
    lift_limit(sqlite3* d, bool on) : db(on ? d : nullptr), kept(on ? sqlite3_limit(d, SQLITE_LIMIT_LENGTH, 0x7fffffff) : 0) {}
    ~lift_limit() {
      if (db != nullptr) sqlite3_limit(db, SQLITE_LIMIT_LENGTH, kept);
    }
  } lifted(db_.get(), internal && max_length_ > 0);
  if (auto b = bind_all(st, statement.params, [&] { return error_from(SQLITE_TOOBIG, ""); }); !b) {
    return b.error();
  }

  protocol::query_result result;
  const int ncol = sqlite3_column_count(st);
  result.columns.reserve(ncol);
  for (int i = 0; i < ncol; ++i) result.columns.emplace_back(sqlite3_column_name(st, i));

  const auto changes_before = sqlite3_total_changes64(db_.get());
  deadline_ = deadline;
  ticks_ = 0;
  budget_spent_ = false;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    auto& row = result.rows.emplace_back();
    row.reserve(ncol);
    for (int i = 0; i < ncol; ++i) row.push_back(column_value(st, i));
  }
  deadline_ = clock::time_point::max();
  // What was learnt about statements (defaults, keys) may no longer hold.
  if ((*prepared)->info.schema_change) cache_stale_ = true;
  if (rc != SQLITE_DONE) return error_from(rc, "");

  // Like D1: the total_changes() delta, so DDL reports 0 rather than an earlier statement's count.
  result.meta.changes = sqlite3_total_changes64(db_.get()) - changes_before;
  result.meta.direct_changes = result.meta.changes > 0 ? sqlite3_changes64(db_.get()) : 0;
  result.meta.last_row_id = sqlite3_last_insert_rowid(db_.get());
  result.meta.rows_read = static_cast<std::int64_t>(result.rows.size());
  result.meta.rows_written = result.meta.changes;
  result.meta.duration_ms = std::chrono::duration<double, std::milli>(clock::now() - start).count();
  result.meta.served_by = "sqlite";
  return result;
}

}  // namespace tandem::backends
