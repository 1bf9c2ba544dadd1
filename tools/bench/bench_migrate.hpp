// `tandem bench migrate`: times `tandem migrate` of a guide-scale database (tools/bench/guide_db.hpp)
// into the local D1 and `tandem validate --full` of the result, beside the route users take
// today (`sqlite3 .dump` into `wrangler d1 execute --local --file`), in the same run.
#pragma once

#include <cstdint>
#include <string>

namespace tandem::tools {

struct bench_migrate_options {
  int tables = 95;
  std::int64_t rows = 150000;
  std::size_t batch_size = 1000;
  int parallel_tables = 1;
  bool wrangler = true;      // also time the sqlite3 .dump | wrangler d1 execute route
  bool large_blobs = false;  // include blobs larger than one D1 statement
  bool sql_text_traps = false;  // include text wrangler refuses ("BEGIN TRANSACTION", "COMMIT;")
  std::string dir;           // working folder (default: a temporary one, removed afterwards)
  std::string d1_local;      // tools/d1-local (default: found from the binary)
  std::string generate;      // only write the database to this path and exit
};

// Prints the figures. 0, or 1 when something could not run or a route did not copy exactly.
int run_bench_migrate(const bench_migrate_options& options);

}  // namespace tandem::tools
