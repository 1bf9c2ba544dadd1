// The databases the move tools work on (migrate, validate, backup, restore): where they are
// ("sqlite:PATH", "d1"), how to reach D1, and exact reads from either.
//
// Exact reads matter because D1 answers in JSON written by JavaScript: integers beyond 2^53 come
// back rounded, whole-number floats come back as integers, and ±Inf as null. The D1 reader
// therefore asks D1 for each cell's type and, where JSON would lose information, for a text form
// of the value (see d1_reader), so that every value read from either store is the one stored.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/d1_store.hpp"
#include "backends/sqlite_connection.hpp"
#include "backends/store.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace tandem::tools {

// The names the move engine and its front-ends use everywhere.
using backends::outcome;
using protocol::errc;
using protocol::error;
using protocol::statement;
using protocol::value;
using row = std::vector<protocol::value>;

// How to reach D1. Empty fields are taken from the environment (see resolve()).
struct d1_settings {
  std::string transport;                           // "rest" or "bridge"; TANDEM_D1_TRANSPORT, else rest
  std::string endpoint;                            // TANDEM_D1_ENDPOINT, else https://api.cloudflare.com (rest)
  std::string account_id;                          // CLOUDFLARE_ACCOUNT_ID
  std::string database_id;                         // TANDEM_D1_DATABASE_ID
  std::string token_env = "CLOUDFLARE_API_TOKEN";  // the variable holding the API token (bridge: its secret)
  std::string ca_file;
  bool verify_tls = true;
  // From --config: the config's d1 section as tandem serve maps it (timeouts, attempts, backoff,
  // response and batch limits, read replication); the fields above still say where D1 is.
  std::optional<backends::d1_options> tuning;
};

// The D1 store's options for `s`, with environment defaults applied and the token read from
// s.token_env. The error names what is missing and how to give it.
backends::outcome<backends::d1_options> resolve(const d1_settings& s);

// "sqlite:PATH", "d1" or "d1:DATABASE_ID".
struct endpoint {
  enum class kind { sqlite, d1 } type = kind::sqlite;
  std::string path;         // sqlite
  std::string database_id;  // d1: overrides d1_settings::database_id when set
  std::string describe() const;
};
backends::outcome<endpoint> parse_endpoint(std::string_view text);

// A select the readers run: `columns` of `table` (identifiers, or "rowid"), filtered by `where`
// (SQL with `?` placeholders bound from `params`), ordered by `order_by`, at most `limit` rows
// (0: all). The readers quote the identifiers.
struct select_spec {
  std::string table;
  std::vector<std::string> columns;
  std::string where;
  std::vector<protocol::value> params;
  std::string order_by;
  std::size_t limit = 0;
};

// Exact reads from one database. Thread-safe.
class reader {
 public:
  virtual ~reader() = default;
  virtual std::string_view kind() const noexcept = 0;  // "sqlite" or "d1"
  virtual std::string describe() const = 0;            // "sqlite:/path/app.db", "d1:<id>"

  // Runs the selects (on D1 in one request) and returns their rows, every value exact.
  virtual backends::outcome<std::vector<std::vector<row>>> select(const std::vector<select_spec>& specs) = 0;

  // Runs read-only SQL about the database itself (schema, counts). On D1 integers beyond 2^53
  // would be rounded: not for user data.
  virtual backends::outcome<std::vector<protocol::query_result>> query(std::vector<protocol::statement> statements) = 0;

  backends::outcome<std::vector<row>> select_one(const select_spec& spec);
  backends::outcome<protocol::query_result> query_one(std::string sql, std::vector<protocol::value> params = {});
};

// Reads a SQLite database through one connection. With snapshot(), every read sees the same
// consistent state of the file (one read transaction) while others keep writing (WAL).
class sqlite_reader final : public reader {
 public:
  // Opens `path` read-only; UNAVAILABLE naming the path if it does not exist or is not a database.
  static backends::outcome<std::unique_ptr<sqlite_reader>> open(const std::string& path);
  // Reads through a connection the caller owns (and keeps open while this reader lives), e.g.
  // one already inside the read transaction of a live backfill.
  static std::unique_ptr<sqlite_reader> borrow(sqlite3* db, std::string description);
  ~sqlite_reader() override;

  // Starts the read transaction that every later read shares; ends when the reader does.
  backends::outcome<void> snapshot();
  sqlite3* handle() const noexcept { return db_; }

  std::string_view kind() const noexcept override { return "sqlite"; }
  std::string describe() const override { return description_; }
  backends::outcome<std::vector<std::vector<row>>> select(const std::vector<select_spec>& specs) override;
  backends::outcome<std::vector<protocol::query_result>> query(std::vector<protocol::statement> statements) override;

 private:
  sqlite_reader(backends::sqlite_db_ptr owned, sqlite3* db, std::string description);
  backends::outcome<sqlite3_stmt*> prepare(const std::string& sql);
  backends::outcome<protocol::query_result> run(sqlite3_stmt* st, const std::vector<protocol::value>& params);

  std::mutex mu_;
  backends::sqlite_db_ptr owned_;  // empty when borrowed; closed after the statements below
  sqlite3* db_;
  bool in_snapshot_ = false;
  std::string description_;
  std::unordered_map<std::string, backends::sqlite_stmt_ptr> cache_;
};

// Reads D1 through a d1_store (any store with D1's SQL works), exactly: each select asks for a
// type code per cell and a text form of the integers beyond 2^53 and of ±Inf.
class d1_reader final : public reader {
 public:
  d1_reader(backends::store& store, std::string description, std::chrono::milliseconds timeout);

  std::string_view kind() const noexcept override { return "d1"; }
  std::string describe() const override { return description_; }
  backends::outcome<std::vector<std::vector<row>>> select(const std::vector<select_spec>& specs) override;
  backends::outcome<std::vector<protocol::query_result>> query(std::vector<protocol::statement> statements) override;

 private:
  backends::store& store_;
  std::string description_;
  std::chrono::milliseconds timeout_;
};

// The SQL text of a select (identifiers quoted), as the SQLite reader runs it.
std::string select_sql(const select_spec& spec);

// Runs statements on a store as one batch (tandem's own SQL, not client rules) and waits.
backends::outcome<std::vector<protocol::query_result>> run_sync(
    backends::store& s, std::vector<protocol::statement> statements,
    backends::clock::time_point deadline = backends::clock::time_point::max());

// Runs `statements` as one batch until it is known to have committed, for the steps around the
// copy (schema, triggers, counters, the checkpoint table). A batch D1 did not answer (UNAVAILABLE,
// TIMEOUT, OVERLOADED) is sent again, with backoff, only after `committed` says it did not commit
// (leave it empty for statements that may simply run twice); other errors are returned at once,
// and a batch still unknown after `timeout` returns the last error.
backends::outcome<void> run_until_known(backends::store& s, const std::vector<protocol::statement>& statements, std::chrono::milliseconds timeout,
                                        const std::function<std::optional<bool>()>& committed = {});


// An open database the tools write to or read from: a store, and a reader over the same data.
struct opened {
  endpoint where;
  std::unique_ptr<backends::store> store;  // for writes (sqlite_store or d1_store)
  std::unique_ptr<reader> read;            // exact reads
  std::string describe() const { return read ? read->describe() : where.describe(); }
};

// Opens `e`: for reading only (`for_write` false: a SQLite file must exist and is opened
// read-only, no store) or for writing too (a SQLite file is created if missing). D1 is checked
// with one round trip, so an unreachable D1 or a bad token fails here with one clear message.
backends::outcome<opened> open_database(const endpoint& e, const d1_settings& d1, bool for_write,
                                        std::chrono::milliseconds timeout = std::chrono::milliseconds(60000));

// SQL quoting for identifiers ("a""b") and values (exact literals: 'text', X'..', integers,
// floats in shortest round-trip form with a '.', 9e999 for infinity).
std::string quote_name(std::string_view name);
std::string sql_literal(const protocol::value& v);

// A value for people: 42, 'text', X'00FF', NULL, 1.5.
std::string show_value(const protocol::value& v, std::size_t max_text = 60);

// "id=42" or "(a, b)=('x', 2)".
std::string show_key(const std::vector<std::string>& names, const row& key);

}  // namespace tandem::tools
