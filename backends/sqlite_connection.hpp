// One SQLite connection with tandem's rules: a prepared-statement cache, the authorizer that
// refuses what D1 refuses, one statement per call, parameter binding, and deadlines.
// Not thread-safe: each connection belongs to one thread at a time.
#pragma once

#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "backends/store.hpp"

struct sqlite3;
struct sqlite3_stmt;
struct sqlite3_backup;

namespace tandem::backends {

// The owners of SQLite's handles, one definition each, for backends/ and tools/ alike: a
// connection is closed (sqlite3_close_v2: after its statements), a statement finalized, an
// online backup finished.
struct sqlite_db_closer {
  void operator()(sqlite3* db) const noexcept;
};
struct sqlite_stmt_finalizer {
  void operator()(sqlite3_stmt* st) const noexcept;
};
struct sqlite_backup_finisher {
  void operator()(sqlite3_backup* b) const noexcept;
};
using sqlite_db_ptr = std::unique_ptr<sqlite3, sqlite_db_closer>;
using sqlite_stmt_ptr = std::unique_ptr<sqlite3_stmt, sqlite_stmt_finalizer>;
using sqlite_backup_ptr = std::unique_ptr<sqlite3_backup, sqlite_backup_finisher>;

// Opens `path` with SQLITE_OPEN_* `flags`, as it is (no configuration). UNAVAILABLE "cannot open
// SQLite database '<path>': <SQLite's reason>" when it cannot.
outcome<sqlite_db_ptr> open_sqlite(const std::string& path, int flags);

// Binds `v` to parameter `i` (1-based) of `st` without copying it: `v` must outlive the
// statement's steps. SQLite's return code (check it with sqlite_check).
int sqlite_bind(sqlite3_stmt* st, int i, const protocol::value& v);

// Nothing when `rc` is SQLITE_OK, else a `code` error "<context>: <sqlite3_errmsg(db)>" (SQLite's
// text for `rc` when there is no connection): for the calls whose failure would otherwise pass
// unnoticed (bind, reset, exec, step of tandem's own statements).
outcome<void> sqlite_check(sqlite3* db, int rc, std::string_view context, protocol::errc code = protocol::errc::sql_error);

enum class statement_kind { read, write };

// What SQLite's compiler saw in one statement (through the authorizer), for routing and for
// replicating it exactly.
struct statement_info {
  statement_kind kind = statement_kind::write;
  // Why replaying the SQL elsewhere could give a different result: the first function that
  // SQLite reported (random(), a date or time function, changes(), ...) in the statement, in a
  // trigger it may fire, or in a column DEFAULT it may evaluate; empty when the SQL alone
  // determines the result.
  std::string nondeterministic;
  bool schema_change = false;   // CREATE, DROP or ALTER
  bool fires_triggers = false;  // a trigger runs as part of it
  std::vector<std::string> written_tables;
  // Why a written table's rows cannot be journaled as row images, one line per such table.
  std::vector<std::string> tables_without_row_images;
  // The names of the result columns (sqlite3_column_name), in order; empty when it returns none.
  std::vector<std::string> columns;
  // SELECTs SQLite compiled on their own: 1 for a plain query, more with subqueries (including
  // those of views) and compounds; 0 for other statements.
  int selects = 0;
};

struct sqlite_options {
  std::string path;
  std::string synchronous = "NORMAL";  // OFF, NORMAL, FULL or EXTRA
  int busy_timeout_ms = 5000;
  std::size_t statement_cache_size = 256;
  bool read_only = false;
  // The largest string, blob or row the connection may make (SQLITE_LIMIT_LENGTH), 0 for
  // SQLite's own. Where D1 follows, the writer takes D1's (2,000,000 bytes), so a write D1 could
  // not store fails on SQLite first, as UNSUPPORTED, before anything commits.
  std::size_t max_length = 0;
};

class sqlite_connection {
 public:
  // Opens (creating the file if needed, unless read_only) and configures the connection:
  // WAL journal, synchronous, busy timeout, foreign keys on.
  static outcome<std::unique_ptr<sqlite_connection>> open(const sqlite_options& options);
  ~sqlite_connection();
  sqlite_connection(const sqlite_connection&) = delete;
  sqlite_connection& operator=(const sqlite_connection&) = delete;

  // Prepares (or takes from the cache) the single statement in `sql` and reports whether it
  // only reads, as SQLite decides it (sqlite3_stmt_readonly). Errors are those execute() would
  // give for the same text: BAD_REQUEST (empty, two statements), UNSUPPORTED, SQL_ERROR.
  outcome<statement_kind> classify(const std::string& sql);

  // classify() for tandem's own SQL (no client rules).
  outcome<statement_kind> classify_internal(const std::string& sql);

  // classify(), and everything else the authorizer saw. Cached with the statement.
  outcome<statement_info> inspect(const std::string& sql);

  // Runs one statement to completion. Must not be called while a result is pending elsewhere.
  // `internal` statements (tandem's own, or a journal being replayed) skip the client rules.
  outcome<protocol::query_result> execute(const protocol::statement& st, clock::time_point deadline,
                                          bool internal = false);

  // Runs tandem's own control SQL (BEGIN, SAVEPOINT, ...), bypassing the authorizer. Returns the
  // SQLite error message on failure.
  outcome<void> exec_internal(const char* sql);

  // True while an explicit transaction is open (false after SQLite rolled one back by itself).
  bool in_transaction() const noexcept;

  sqlite3* handle() const noexcept { return db_.get(); }

  // Interrupts each statement run from now on once it has run about `instructions` virtual
  // machine instructions (0: no budget); budget_spent() then tells it was the budget that
  // interrupted the last one (its error is TIMEOUT, like the deadline's).
  void set_budget(std::uint64_t instructions) noexcept { budget_ticks_ = (instructions + k_progress_period - 1) / k_progress_period; }
  bool budget_spent() const noexcept { return budget_spent_; }

 private:
  using stmt_ptr = sqlite_stmt_ptr;
  struct cache_entry {
    stmt_ptr stmt;
    std::list<std::string>::iterator lru;
    statement_info info;
  };

  explicit sqlite_connection(const sqlite_options& options);
  outcome<cache_entry*> prepare(const std::string& sql, bool internal = false);
  void finish_info(statement_info& info, sqlite3_stmt* st);
  std::string row_images_refused(const std::string& table);
  protocol::error error_from(int rc, std::string_view context) const;
  // A value or row over max_length: UNSUPPORTED, naming D1's limit.
  protocol::error too_big() const;
  static int authorize(void* self, int action, const char* a, const char* b, const char* c,
                       const char* d);
  static int progress(void* self);

  sqlite_options options_;
  sqlite_db_ptr db_;
  std::unordered_map<std::string, cache_entry> cache_;
  std::list<std::string> lru_;  // most recently used first
  bool checking_user_sql_ = false;
  std::size_t max_length_ = 0;
  std::string_view preparing_;  // the SQL being prepared, for what the authorizer is not told
  bool cache_stale_ = false;  // a schema change ran: prepare afresh
  std::string denied_;  // why the authorizer refused the statement being prepared
  statement_info seen_;  // what the authorizer saw of the statement being prepared
  std::vector<std::string> inserted_tables_;  // likewise: tables an INSERT writes (defaults apply)
  std::string volatile_seen_;                 // likewise: the first volatile function reported
  clock::time_point deadline_ = clock::time_point::max();
  static constexpr std::uint64_t k_progress_period = 1000;  // instructions between progress() calls
  std::uint64_t budget_ticks_ = 0;  // progress() calls a statement may take (0: unbounded)
  std::uint64_t ticks_ = 0;
  bool budget_spent_ = false;
};

}  // namespace tandem::backends
