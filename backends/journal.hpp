// The journal: how a leader's writes are recorded for the follower (ARCHITECTURE.md, principles 1-2).
//
// In a dual mode every write commits on the leader together with one row of `_tandem_journal`
// (a transactional outbox). The row holds what the follower must run to reach the same state,
// as a protocol v1 batch line (exact integers, round-trip floats, base64 blobs):
//   - the client's statements as they were, when the SQL alone determines their effect;
//   - otherwise (random(), the current time, a DEFAULT CURRENT_TIMESTAMP, a trigger using one, a
//     statement D1 could not run as written) and only when SQLite leads: every row change the
//     write made, in order, read from SQLite's pre-update hook and turned into INSERT / UPDATE /
//     DELETE by rowid or primary key ("row images").
// The follower records the last entry it applied in `_tandem_applied`, in the same atomic step
// as the entries themselves, so replay after any crash starts exactly after it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backends/d1_statement.hpp"
#include "backends/store.hpp"

struct sqlite3;

namespace tandem::backends {

// Creates tandem's tables if missing. Both stores get all of them: leader and follower swap.
//   _tandem_journal  the entries this store wrote while leading
//   _tandem_applied  per leader (`source`): the last entry of its journal (`journal`, its id)
//                    this store applied while following
//   _tandem_meta     this store's journal identity (journal_id, journal_base) and, while set,
//                    follower_stale: why the other store lacks writes made here outside the
//                    journal (a single mode, a forced fallback, the journal's bound) and must be
//                    rebuilt from this one before it follows again
inline constexpr const char* k_journal_schema[] = {
    "CREATE TABLE IF NOT EXISTS _tandem_journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "kind INTEGER NOT NULL, body TEXT NOT NULL, changes TEXT NOT NULL, created_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _tandem_applied (source TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
    "updated_ms INTEGER NOT NULL, journal TEXT)",
    "CREATE TABLE IF NOT EXISTS _tandem_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
};

// k_journal_schema as statements, ready for a store's execute_batch (internal).
std::vector<protocol::statement> journal_schema_statements();

// A store's own journal, as a follower's position is judged against it.
struct journal_identity {
  std::string id;                  // random, made together with the journal
  bool born_empty = false;         // the store held no table of its own when the journal was made
  std::int64_t high_water = 0;     // the highest sequence ever appended (pruning keeps it)
  std::int64_t first = 0;          // the lowest sequence still held; 0 when the journal is empty
  std::string follower_stale;      // set: the other store must be rebuilt from this one (why)
};

// The schema, then the identity made if missing (the table check runs before anything of
// tandem's is counted), then one SELECT that read_journal_identity() reads: an internal batch.
std::vector<protocol::statement> journal_identity_statements();
outcome<journal_identity> read_journal_identity(const std::vector<protocol::query_result>& results);

// A follower's position in some leader's journal, as `_tandem_applied` holds it.
struct applied_position {
  bool present = false;  // no row: the follower never applied anything of that leader
  std::int64_t seq = 0;
  std::string journal;   // the journal's id; empty in rows written before journals had one
};
protocol::statement applied_position_statement(std::string_view source);
applied_position read_applied_position(const protocol::query_result& result);

// Whether a follower at `at` can go on with `leader`'s journal: "" if so, else why not (a
// sentence naming both positions). Going on needs the same journal, a position no further than
// the journal ever reached, and every entry after it still held.
std::string judge_position(const applied_position& at, const journal_identity& leader, std::string_view follower);

// Sets (or, with an empty reason, clears) the leader's follower_stale mark; a mark already set
// keeps its first reason.
protocol::statement follower_stale_statement(std::string_view reason);

// What an entry's body holds.
enum class entry_kind : int {
  statements = 0,  // the client's statements, replayed as they are
  row_images = 1,  // the rows the leader wrote, by primary key
};

// What a follower must hold once a row-image entry applied, for one row the write changed:
// the row `query` reads, equal cell by cell (type and bits) to `row`, or no row at all (`row`
// empty: the write deleted it). Text and blobs over k_check_inline_bytes (or text that is not
// UTF-8) are read as a fingerprint, "<typeof>:<bytes>:<hex of the first 32>:<hex of the last
// 32>", and `row` holds the leader's: a check does not carry a 2 MB value twice.
struct row_check {
  protocol::statement query;
  std::optional<std::vector<protocol::value>> row;
  std::string address;  // the query's `FROM "t" WHERE …`: with its parameters, names the row
};
inline constexpr std::size_t k_check_inline_bytes = 1024;

// A write replicated as its rows: the statements that replay it, and what the follower holds after.
struct row_images {
  std::vector<protocol::statement> statements;
  std::vector<row_check> checks;  // one per row the write changed, in the order first changed
};

// Checks travel in the `changes` column of a row-image entry, as a protocol v1 batch line: each
// check is its query, then a statement "row <address>" (its parameters are the row) or
// "absent <address>".
// decode_checks() returns none for text that is not such a line ("[]": entries before checks).
std::string encode_checks(const std::vector<row_check>& checks);
std::vector<row_check> decode_checks(std::string_view text);
// Whether `result` (the answer to `check.query` on the follower) meets the check: "" if so, else
// what differs, naming columns and types, never values.
std::string judge_check(const row_check& check, const protocol::query_result& result);

struct journal_entry {
  std::int64_t seq = 0;
  entry_kind kind = entry_kind::statements;
  std::vector<protocol::statement> statements;
  std::vector<std::int64_t> changes;  // the leader's meta.changes per statement; empty if unknown
  std::vector<row_check> checks;      // row images: what the follower must hold after them
  std::int64_t created_ms = 0;        // wall clock (ms since the epoch) when the leader committed
};

// Every other statement tandem runs on `_tandem_journal` and `_tandem_applied` is made here, so
// the tables' SQL lives in one file.

// The leader's write: one entry. Parameters kind, body, then `changes_sql`'s own (none, or one
// for "?"), then created_ms. `changes_sql` is "?" when the caller binds the changes, or an SQL
// expression the store evaluates in the same transaction (D1: json_array(changes())).
std::string journal_append_sql(std::string_view changes_sql);
// While D1 leads a batch: the statement right after each of the batch's statements, appending its
// changes() (`known`: a DML statement) or -1 (a read or a schema change) to the newest entry's
// changes, which the batch's first statement inserted.
std::string journal_count_changes_sql(bool known);
// The entries after `after`, in order, at most `limit`: the replicator's read.
protocol::statement journal_read_statement(std::int64_t after, std::int64_t limit);
// How much of journal_read_statement's answer one follower batch takes.
struct journal_batch_limits {
  std::size_t max_bytes = 1000000;     // of entry bodies
  std::size_t max_statements = 998;    // the follower's batch limit
  std::size_t overhead = 2;            // statements the batch adds around the entries
};
// The entries of `result` in order, while the batch has room; the first always goes, whatever
// its size. An error names the sequence that did not decode.
outcome<std::vector<journal_entry>> read_journal_entries(const protocol::query_result& result,
                                                         const journal_batch_limits& limits, std::string_view store);
// Deletes entries applied up to `upto` and created before `before_ms`; with `counted`, returns
// each one's size (as journal_bytes_statement() counts it).
protocol::statement journal_prune_statement(std::int64_t upto, std::int64_t before_ms, bool counted);
// The size of every entry held: the bytes of their bodies and changes.
protocol::statement journal_bytes_statement();
// The highest sequence held (0: none).
protocol::statement journal_max_seq_statement();
// The highest sequence ever appended, pruned or not (0: none).
protocol::statement journal_high_water_statement();
// Empties the journal (a live backfill rebuilds the follower).
protocol::statement journal_clear_statement();
// The first value of `result`'s first row as an integer, 0 when there is none (the answer to
// the statements above that return one figure).
std::int64_t read_figure(const protocol::query_result& result);
// Rows of `_tandem_applied` made before journals had an id lack its column: the probe fails with
// "no such column" there, and the upgrade adds it.
protocol::statement applied_journal_probe_statement();
protocol::statement applied_journal_upgrade_statement();

// A body: the statements as one protocol v1 batch line (without the newline).
std::string encode_statements(const std::vector<protocol::statement>& statements);
outcome<std::vector<protocol::statement>> decode_statements(std::string_view body);

// "[1,0,3]".
std::string encode_changes(const std::vector<protocol::query_result>& results);
std::vector<std::int64_t> decode_changes(std::string_view text);

// Milliseconds since the Unix epoch, now.
std::int64_t wall_ms();
// A wall-clock time as operators read it, 2026-12-02T10:04:05Z; utc_now() is now.
std::string utc_text(std::int64_t wall_ms);
inline std::string utc_now() { return utc_text(wall_ms()); }

// Records every row a write changes, in the order SQLite changes them (the pre-update hook:
// the statement's own rows, its triggers' and its foreign-key actions'), from start() until
// finish(). Replaying the changes in that order passes every constraint the leader passed at
// each step (a UNIQUE value moved between rows, a key deleted and inserted again, a parent
// inserted after its child's update), whatever order the tables come in. Rows are addressed by
// rowid (rowid tables, with or without a declared key) or by primary key (WITHOUT ROWID).
// Not thread-safe; lives on the writer's thread, one per connection at a time.
class row_recorder {
 public:
  // Keeps at most `max_changes` changes (finish() refuses a write with more): an UPDATE of
  // millions of rows does not copy them all first.
  static outcome<row_recorder> start(sqlite3* db, std::size_t max_changes);
  row_recorder(row_recorder&&) noexcept;
  row_recorder& operator=(row_recorder&&) = delete;
  ~row_recorder();

  // Stops recording and returns the statements that replay the changes on a follower with the
  // same schema: the triggers of every changed table dropped first and created again last (the
  // rows already hold their effects: fired again they would apply twice, with the follower's
  // clock), then one INSERT, UPDATE (of the changed columns) or DELETE per row change. Generated
  // columns are left to the follower to compute. Within `limits` (D1's): a blob too large for one
  // statement is bound as hex text for D1 to unhex(), the row written whole; UNSUPPORTED when
  // a value is over max_value_bytes or the statements would be more than `max_statements`.
  // With them, one row_check per changed row: its state once the whole write applied.
  outcome<row_images> finish(const d1_limits& limits, std::size_t max_statements);

 private:
  struct impl;
  explicit row_recorder(std::unique_ptr<impl> i);
  std::unique_ptr<impl> impl_;
};

// The SQL that records, on a follower, that it applied `source`'s journal `journal` up to `seq`.
protocol::statement applied_statement(std::string_view source, std::string_view journal, std::int64_t seq);

// The first statement of every batch the replicator applies: it fails (json() of text that is not
// JSON, so the whole atomic batch is rolled back) unless the follower's position for `source` is
// still `expected`, the position the batch was built on. A batch that commits after tandem stopped
// waiting for it (an answer lost, a late D1) therefore never applies twice: the copy that arrives
// second changes nothing. `k_position_moved` is in the error message the follower gives.
protocol::statement applied_guard(std::string_view source, std::int64_t expected);
inline constexpr std::string_view k_position_moved = "malformed JSON";

// Statements every replicated batch adds to its entries: the guard and the applied marker.
inline constexpr std::size_t k_batch_overhead = 2;

// Quotes an identifier for SQL: "name" with inner quotes doubled.
std::string quote_identifier(std::string_view name);

}  // namespace tandem::backends
