// `tandem migrate`: copies a database's schema and rows from SQLite to D1 (or back, the guide's
// rollback-d1-to-sqlite), checkpointed per batch, with progress, a summary in the migration
// guide's form, and a full validation at the end.
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "tools/move/database.hpp"
#include "tools/move/migrate.hpp"

namespace tandem::tools {

// What the command line gave; unset options come from the migration guide's environment
// variables, then the defaults.
struct migrate_command {
  std::string from, to;  // sqlite:PATH, d1, d1:ID
  d1_settings d1;
  std::optional<long> batch_size;        // MIGRATION_BATCH_SIZE (1000)
  std::optional<bool> validate;          // MIGRATION_VALIDATE (true)
  std::optional<bool> continue_on_error; // MIGRATION_CONTINUE_ON_ERROR (false)
  std::optional<bool> dry_run;           // MIGRATION_DRY_RUN (false)
  std::optional<long> parallel_tables;   // MIGRATION_PARALLEL_TABLES (1)
  std::optional<long> timeout_ms;        // MIGRATION_TIMEOUT (60000)
  bool schema_only = false;
  bool data_only = false;
  bool resume = false;
  std::vector<std::string> tables;  // only these; empty: all
  std::string progress = "auto";    // auto, bars, lines, none
  // A live backfill: the control socket of a tandem running dual-sqlite on `from`. Replication
  // pauses, a snapshot taken at journal sequence S is copied, and the replicator goes on at S+1.
  std::string via_control;
};

// Flags over environment over defaults. BAD_REQUEST naming the variable or flag that is malformed.
backends::outcome<migrate_settings> resolve_settings(const migrate_command& c);

// Migrates `source` into `target` (both open; a SQLite source inside its snapshot): plans it
// (tools/move/migrate.hpp), runs its steps and prints what each did to `out`. 0 on success; 1 on any failure (refusals included, with the reason printed).
int migrate_between(opened& source, opened& target, const migrate_settings& s, std::ostream& out);

// The command: 0 success, 1 the migration or its validation failed, 2 bad arguments or a
// database that cannot be opened.
int run_migrate(const migrate_command& c);

}  // namespace tandem::tools
