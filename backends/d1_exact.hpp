// Exact answers from D1: the cells SQLite would return, type and value (no HTTP here).
//
// D1's REST API answers in JSON written by JavaScript. Integers beyond 2^53 arrive rounded,
// whole-number REALs arrive as integers, -0.0 as 0, and ±infinity as null. So the D1 store
// sends each statement that returns rows in a typed form, and turns the answer back into the
// cells of the client's own statement:
//
//   a query (SELECT, VALUES, WITH, and PRAGMA as its table-valued pragma_NAME(...) form):
//     WITH _tandem_exact(c0, …, cN) AS (<the client's SQL>)
//     SELECT <type letters> AS _t, <c0 exact> AS _0, … FROM _tandem_exact
//   a write with RETURNING e0, …, eN: the same expressions over (e0), …, (eN) in its RETURNING
//
// <type letters> is one string per row, a letter per cell: the first letter of typeof()
// (i, r, t, b, n). An exact cell is: an integer within ±2^53 as itself and beyond it as text; a
// REAL as itself (JavaScript prints the shortest decimal that reads back as the same double), and
// -0.0 and ±infinity as the text "-0.0", "Inf", "-Inf"; text, blobs and NULL as themselves.
// The CTE is MATERIALIZED when flattening it could evaluate the client's expressions more than
// once per row with different results or at a multiple of the cost (random(), subqueries).
//
// A write also gets `SELECT CAST(last_insert_rowid() AS TEXT)` right after it in the same D1
// request (D1's meta.last_row_id is a JavaScript number).
//
// Statements that cannot take the typed form (EXPLAIN, a RETURNING list with parameters or
// random(), tandem's own internal SQL, anything the schema mirror cannot prepare) are sent as
// they are; their answers carry meta.exact = false when a cell could differ from SQLite's.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "backends/d1_statement.hpp"
#include "backends/sqlite_connection.hpp"
#include "backends/store.hpp"

namespace tandem::backends {

// How one client statement travels to D1, and how its answer becomes SQLite's.
struct exact_plan {
  bool typed = false;                // sent as `sql` (the client's parameters unchanged)
  std::string sql;                   // typed: the SQL D1 runs instead of the client's
  std::vector<std::string> columns;  // typed: the client statement's own column names
  bool read = false;                 // SQLite classified it as a read
  bool last_row_id = false;          // a write: the companion SELECT follows it
};

// The typed form of a query that returns `columns` columns, or nullopt when `sql` is not one
// statement that can go inside a CTE. `materialize` adds AS MATERIALIZED.
std::optional<std::string> typed_query_sql(std::string_view sql, std::size_t columns, bool materialize);

// The typed form of a write with a RETURNING clause whose result columns are named `columns`,
// or nullopt when the clause cannot be rewritten: an item with a parameter (it would be bound
// once per copy) or random() (it would differ per copy), an item with an alias but no AS, more
// than one `*`.
std::optional<std::string> typed_returning_sql(std::string_view sql, const std::vector<std::string>& columns);

// `PRAGMA [schema.]name[(argument)]` as `SELECT * FROM [schema.]pragma_name('argument')`; nullopt
// for anything else (the caller checks on SQLite that both have the same columns).
std::optional<std::string> pragma_as_select(std::string_view sql);

// The select list that carries each of `exprs` exactly (type letters as _t, then _0, _1, …):
// what typed_query_sql() selects, for callers that write their own SELECT (the move tools).
// decode_typed() reads its rows.
std::string typed_select_list(const std::vector<std::string>& exprs);

// The client's cells from a typed answer: rows of [type letters, cell, …]. INTERNAL when a row
// does not have that shape or a cell does not match its letter.
outcome<protocol::query_result> decode_typed(protocol::query_result typed, const std::vector<std::string>& columns);

// Whether a cell decoded from D1's JSON as it comes could differ from SQLite's: any number
// (its type may be REAL, and beyond 2^53 it may be rounded) or NULL (it may be ±infinity).
bool may_differ(const protocol::value& v);

// The companion statement that reads a write's last_insert_rowid() exactly.
inline constexpr std::string_view k_last_row_id_sql = "SELECT CAST(last_insert_rowid() AS TEXT)";

// Plans learned once per SQL text on the schema mirror, kept until the mirror changes.
// Not thread-safe (the D1 store's thread owns it).
class exact_planner {
 public:
  explicit exact_planner(std::size_t capacity = 1024) : capacity_(capacity) {}

  // The plan for a client statement that the mirror `shadow` classified as `info`. Candidates
  // are prepared on `shadow`: a typed form is used only when SQLite compiles it with the
  // expected columns; otherwise the statement goes as it is.
  std::shared_ptr<const exact_plan> plan(const std::string& sql, const statement_info& info, sqlite_connection& shadow);

  // Forgets every plan (the schema changed: `SELECT *` may mean other columns now).
  void clear() { cache_.clear(); }

 private:
  std::size_t capacity_;
  std::unordered_map<std::string, std::shared_ptr<const exact_plan>> cache_;
};

// A statement ready for D1: its SQL and parameters, and how to read its answer.
struct exact_statement {
  d1_statement statement;
  std::shared_ptr<const exact_plan> plan;
};

// to_d1_statement() of the plan's SQL, or of the client's own SQL when the plan is not typed or
// its typed form is over a D1 limit that the client's SQL is not.
outcome<exact_statement> to_exact_d1_statement(const protocol::statement& st, std::shared_ptr<const exact_plan> plan,
                                               const d1_limits& limits);

// Whether D1 refused a typed query because its columns are not the mirror's (D1's schema changed
// behind the mirror): reload the mirror; a read may then be sent again.
bool is_stale_typed_form(const protocol::error& e);

// D1's answers to one request turned into SQLite's: `results` holds, in order, each planned
// statement's answer followed by its companion's when it has one; answers after the planned
// ones (the journal's, in dual-d1) are kept as they are. `is_batch`: a lone read reports
// last_row_id 0, as SQLite's read-only connections do.
outcome<std::vector<protocol::query_result>> restore_exact(std::vector<protocol::query_result> results,
                                                           const std::vector<std::shared_ptr<const exact_plan>>& plans,
                                                           bool is_batch);

}  // namespace tandem::backends
