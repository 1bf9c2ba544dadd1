// A database shaped like the migration guide's (95 tables, 150,000 rows at full scale), for
// `tandem bench migrate` and the tests of the move tools. It holds every kind of value the
// migration must carry exactly: JSON text, Unicode (emoji, CJK, right-to-left, combining marks),
// text that trips SQL-text routes ('COMMIT;', quotes, CR LF), blobs (empty, with zero bytes),
// NULLs, 64-bit ids beyond 2^53, the int64 extremes, negative numbers, floats that need 17 digits,
// whole-number floats, ±Inf; and foreign keys (a self-reference included), a composite-key
// WITHOUT ROWID table, a TEXT primary key, a rowid-only table, a generated column,
// AUTOINCREMENT with a counter above the largest id, indexes, a view and a trigger.
#pragma once

#include <cstdint>
#include <string>

namespace tandem::tools {

struct guide_db_options {
  int tables = 95;           // at least 12
  std::int64_t rows = 150000;
  std::uint64_t seed = 42;
  // A few blobs larger than one D1 statement (exercises the append path; the sqlite3 .dump
  // route cannot carry them).
  bool large_blobs = false;
  // Text values that SQL-text routes cannot carry ("BEGIN TRANSACTION", "COMMIT;"): wrangler d1
  // execute refuses such a file. Off for the benchmark's side-by-side run.
  bool sql_text_traps = true;
};

struct guide_db_stats {
  int tables = 0;
  std::int64_t rows = 0;
};

// Creates the database at `path` (which must not exist). Throws std::runtime_error on failure.
guide_db_stats generate_guide_database(const std::string& path, const guide_db_options& options = {});

}  // namespace tandem::tools
