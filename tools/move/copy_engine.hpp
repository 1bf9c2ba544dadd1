// The copy engine: rows of tables from a reader (a consistent SQLite snapshot, or D1) into a
// store (D1, or a SQLite file), in primary-key order, in batches sized to the target's limits,
// each batch committed together with the checkpoint that records it.
//
// Guarantees:
//  - Each batch is one atomic unit on the target (a D1 request, a SQLite transaction) holding
//    the rows and the new checkpoint rows of `_tandem_migrate` for every table it touches. A
//    run that stops at any point (kill -9, D1 down, an error) leaves the target holding exactly
//    the rows its checkpoint names, so a resumed run neither duplicates nor skips a row.
//  - A table's batches commit in key order; a table starts only once the tables its foreign keys
//    reference are complete (or sit earlier in the same batch). Foreign-key checks are deferred to
//    each batch's commit.
//  - Each batch opens with a guard per table: it aborts the batch unless the table's checkpoint is
//    still the one the batch continues from. A batch whose outcome is unknown (D1 did not answer
//    in time) can therefore be sent again: whichever copy arrives second, even one D1 was still
//    running when tandem gave up on it, changes nothing. The checkpoint read back tells which.
//    The guard also stops two copies into the same target from interleaving.
//
// This is the entry point for a live backfill too: open a SQLite connection, BEGIN, note the
// journal position S, wrap the connection with sqlite_reader::borrow(), and copy_tables() into
// the D1 store; the replicator then continues from S+1.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "backends/d1_statement.hpp"
#include "tools/move/schema.hpp"

namespace tandem::tools {

inline constexpr const char* k_checkpoint_table = "_tandem_migrate";

// How INSERT statements are cut.
struct insert_limits {
  // D1: integers and NULLs are written into the SQL (D1 binds every JSON number as a float),
  // text and floats are bound, blobs are written as X'..' (to_d1_statement). The SQLite store
  // binds everything.
  bool d1 = true;
  std::size_t max_params = 100;       // bound parameters per statement
  std::size_t max_sql_bytes = 100000; // SQL text per statement, literals included
  std::size_t max_value_bytes = 2000000;

  static insert_limits for_d1(const backends::d1_limits& l = {});
  static insert_limits for_sqlite();
};

// The statements that insert `rows` (values of t.copy_columns, in order) into `t`: multi-row
// INSERTs as large as the limits allow. A blob too large for one statement is written as X''
// and appended to in pieces by UPDATEs that follow. UNSUPPORTED naming the row's key and column
// when a value is over max_value_bytes. Sans-io.
backends::outcome<std::vector<protocol::statement>> build_inserts(const table_info& t, const std::vector<row>& rows,
                                                                  const insert_limits& limits);

struct copy_options {
  std::size_t batch_rows = 1000;  // rows per committed batch (MIGRATION_BATCH_SIZE)
  int parallel_tables = 1;        // tables copied at once (MIGRATION_PARALLEL_TABLES)
  // How long one batch may take, retries included, before the copy stops (MIGRATION_TIMEOUT).
  std::chrono::milliseconds timeout{60000};
  bool continue_on_error = false;  // a failing table does not stop the others
  bool dry_run = false;            // read and build everything, send nothing
  bool resume = false;             // continue from the target's checkpoint
  std::string source_id;           // recorded in the checkpoint: a resume from another source is refused
  insert_limits limits;
  // Test hook: after this many committed batches, send the next one and then hang (until killed).
  long stall_after_batches = -1;
};

struct table_copy {
  std::string table;
  std::int64_t total = 0;    // rows in the source
  std::int64_t copied = 0;   // rows in the target, a previous run's included
  std::int64_t resumed = 0;  // of which a previous run copied
  std::int64_t failed = 0;   // rows not copied because the table failed
  bool done = false;
  std::string error;
};

struct copy_result {
  std::vector<table_copy> tables;  // in the order given
  std::size_t batches = 0;
  std::size_t statements = 0;
  std::size_t resent = 0;  // batches sent again because the target did not answer in time
  std::string error;  // why the copy stopped early; empty when it ran to the end
  bool ok() const;
  std::int64_t total_rows() const;
  std::int64_t copied_rows() const;
  std::int64_t failed_rows() const;
};

// Told about progress, from the copying threads (one call at a time).
class copy_observer {
 public:
  virtual ~copy_observer() = default;
  virtual void started(const table_copy&) {}
  virtual void progressed(const table_copy&) {}
  virtual void finished(const table_copy&) {}
};

// Copies `tables` (parents before children, as read_schema orders them) from `source` into
// `target`, whose tables must exist and, unless the checkpoint says tandem copied into them,
// be empty. Blocks until done. Errors that stop the copy before it starts (a non-empty target, a
// checkpoint without `resume`) are in result.error with no rows copied.
copy_result copy_tables(reader& source, const std::vector<table_info>& tables, backends::store& target,
                        const copy_options& options, copy_observer* observer = nullptr);

// The checkpoint rows in `target` (empty when there are none, or no checkpoint table).
struct checkpoint_row {
  std::string table;
  std::string source;
  std::optional<row> after;
  std::int64_t copied = 0;
  bool done = false;
  std::string batch;  // the id of the batch that wrote it
};
backends::outcome<std::vector<checkpoint_row>> read_checkpoint(backends::store& target);
backends::outcome<void> drop_checkpoint(backends::store& target, std::chrono::milliseconds timeout = std::chrono::milliseconds(60000));

// A key as JSON text and back (exact: integers, round-trip floats, base64 blobs).
std::string encode_key(const row& key);
std::optional<row> decode_key(std::string_view text);

}  // namespace tandem::tools
