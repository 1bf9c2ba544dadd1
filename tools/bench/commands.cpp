#include "tools/bench/commands.hpp"

#include <CLI/CLI.hpp>

#include "tools/bench/bench_migrate.hpp"

namespace tandem::tools {

struct bench_commands::state {
  CLI::App* migrate = nullptr;
  bench_migrate_options bm;
};

bench_commands::bench_commands() : s_(std::make_unique<state>()) {}
bench_commands::~bench_commands() = default;

void bench_commands::add(CLI::App& bench) {
  auto& s = *s_;
  s.migrate = bench.add_subcommand(
      "migrate", "time tandem migrate and validate --full on a guide-scale database against the local D1, beside sqlite3 .dump | wrangler");
  auto* b = s.migrate;
  b->add_option("--tables", s.bm.tables, "tables in the generated database")->capture_default_str();
  b->add_option("--rows", s.bm.rows, "rows in the generated database")->capture_default_str();
  b->add_option("--batch-size", s.bm.batch_size, "tandem migrate's batch size")->capture_default_str();
  b->add_option("--parallel-tables", s.bm.parallel_tables, "tandem migrate's tables at once")->capture_default_str();
  b->add_flag("!--no-wrangler", s.bm.wrangler, "skip the sqlite3 .dump | wrangler d1 execute route (it takes minutes)");
  b->add_flag("--large-blobs", s.bm.large_blobs, "include blobs larger than one D1 statement (the wrangler route cannot carry them)");
  b->add_flag("--sql-text-traps", s.bm.sql_text_traps, "include text values wrangler refuses ('BEGIN TRANSACTION', 'COMMIT;')");
  b->add_option("--dir", s.bm.dir, "working folder, kept afterwards (default: a temporary one)");
  b->add_option("--d1-local", s.bm.d1_local, "the tools/d1-local folder (default: found from the binary)");
  b->add_option("--generate", s.bm.generate, "only write the generated database to this path");
}

std::optional<int> bench_commands::run() {
  if (!s_->migrate->parsed()) return std::nullopt;
  return run_bench_migrate(s_->bm);
}

}  // namespace tandem::tools
