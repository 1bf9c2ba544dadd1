// The migration under `tandem migrate` (and `restore` into D1, and `bench migrate`): a pure plan
// from the source's schema, the target's and the settings, then the steps that carry it out on
// the target. tools/migrate.hpp runs the steps in order and says what each did.
//
// The order on the target: the schema (tables, indexes, views) in one atomic batch; the target's
// own triggers on the copied tables set aside (kept in _tandem_migrate_triggers by the batch that
// drops them, so a run that dies keeps them for the next); the rows (copy_engine.hpp); the
// triggers set aside put back; the source's triggers and AUTOINCREMENT counters; the checkpoint
// dropped.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tools/move/copy_engine.hpp"
#include "tools/move/schema.hpp"

namespace tandem::tools {

struct migrate_settings {
  std::size_t batch_size = 1000;
  bool validate = true;
  bool continue_on_error = false;
  bool dry_run = false;
  int parallel_tables = 1;
  long timeout_ms = 60000;
  bool schema_only = false;
  bool data_only = false;
  bool resume = false;
  std::vector<std::string> tables;
  std::string progress = "auto";
  long stall_after_batches = -1;  // TANDEM_MIGRATE_STALL_AFTER (tests)

  std::chrono::milliseconds timeout() const { return std::chrono::milliseconds(timeout_ms); }
};

// An object the target already has, by name.
struct target_object {
  std::string type, table, sql;
};
using target_schema = std::map<std::string, target_object>;
backends::outcome<target_schema> read_target_schema(reader& r);

// What a migration will do. Sans-io.
struct migrate_plan {
  // Why nothing may be written; the first non-empty list wins.
  std::vector<std::string> problems;   // the target cannot take the schema (D1's rules, reserved names)
  std::vector<std::string> conflicts;  // objects the target has with another definition
  std::vector<std::string> missing;    // --data-only: tables the target lacks
  bool refused() const { return !problems.empty() || !conflicts.empty() || !missing.empty(); }

  std::vector<protocol::statement> creates;  // tables, then indexes and views: before the rows
  std::size_t new_tables = 0, new_others = 0;
  std::size_t kept = 0;  // objects the target already has, identical
  std::vector<protocol::statement> triggers;  // the source's triggers: after the rows
  std::vector<std::string> trigger_names;     // in the order of `triggers`

  // The target's triggers on tables rows go into, which would fire for every copied row: the
  // batch that sets them aside, and their names (none: nothing to set aside).
  std::vector<protocol::statement> set_aside;
  std::vector<std::string> set_aside_names;

  std::vector<protocol::statement> sequences;  // the AUTOINCREMENT counters, after the rows
  copy_options copy;                           // how the rows are cut into batches
};

// What the target cannot take of `source`, each as a sentence naming the object: D1's rules
// (d1_problems) into D1, tandem's reserved names into SQLite.
std::vector<std::string> schema_problems(const database_schema& source, bool to_d1);

// The plan for copying `source` (read from the source, filtered) into a target that holds
// `target`. `to_d1`: D1's rules and limits apply; `source_id` is recorded in the checkpoint.
migrate_plan plan_migration(const database_schema& source, const target_schema& target, const migrate_settings& s, bool to_d1,
                            const std::string& source_id);

// The steps, in order. Each batch runs until it is known to have committed (run_until_known).
// The schema, in one atomic batch.
backends::outcome<void> create_schema(backends::store& target, reader& target_reader, const migrate_plan& p, std::chrono::milliseconds timeout);
// The target's triggers set aside (p.set_aside, when there are any).
backends::outcome<void> set_aside_triggers(backends::store& target, const migrate_plan& p, std::chrono::milliseconds timeout);
// Rows per table in the source, for the progress bars (tables whose count fails count 0).
std::int64_t count_rows(reader& source, const database_schema& schema);
// Puts back the triggers set aside (by this run or an interrupted one) and drops the table that
// kept them, in one atomic batch. Returns their names. A source trigger among them is then in
// place already: it leaves p.triggers.
backends::outcome<std::vector<std::string>> restore_triggers(backends::store& target, migrate_plan& p, std::chrono::milliseconds timeout);
// The source's triggers (unless --data-only) and the AUTOINCREMENT counters (unless
// --schema-only), in one atomic batch; nothing to do is success.
backends::outcome<void> finish_schema(backends::store& target, reader& target_reader, const migrate_plan& p, const migrate_settings& s);

}  // namespace tandem::tools
