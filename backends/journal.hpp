// The journal: how a leader's writes are recorded for the follower (DESIGN.md, principles 1-2).
//
// In a dual mode every write commits on the leader together with one row of `_tandem_journal`
// (a transactional outbox). The row holds what the follower must run to reach the same state,
// as a protocol v1 batch line (exact integers, round-trip floats, base64 blobs):
//   - the client's statements as they were, when the SQL alone determines their effect;
//   - otherwise (random(), the current time, a DEFAULT CURRENT_TIMESTAMP, ...) and only when
//     SQLite leads: the rows the write produced, read from SQLite's session extension and turned
//     into INSERT / UPDATE / DELETE by primary key ("row images").
// The follower records the last entry it applied in `_tandem_applied`, in the same atomic step
// as the entries themselves, so replay after any crash starts exactly after it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "backends/store.hpp"

struct sqlite3;

namespace tandem::backends {

// Creates tandem's tables if missing. Both stores get both tables: leader and follower swap.
inline constexpr const char* k_journal_schema[] = {
    "CREATE TABLE IF NOT EXISTS _tandem_journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "kind INTEGER NOT NULL, body TEXT NOT NULL, changes TEXT NOT NULL, created_ms INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _tandem_applied (source TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
    "updated_ms INTEGER NOT NULL)",
};

// k_journal_schema as statements, ready for a store's execute_batch (internal).
std::vector<protocol::statement> journal_schema_statements();

// What an entry's body holds.
enum class entry_kind : int {
  statements = 0,  // the client's statements, replayed as they are
  row_images = 1,  // the rows the leader wrote, by primary key
};

struct journal_entry {
  std::int64_t seq = 0;
  entry_kind kind = entry_kind::statements;
  std::vector<protocol::statement> statements;
  std::vector<std::int64_t> changes;  // the leader's meta.changes per statement; empty if unknown
  std::int64_t created_ms = 0;        // wall clock (ms since the epoch) when the leader committed
};

// A body: the statements as one protocol v1 batch line (without the newline).
std::string encode_statements(const std::vector<protocol::statement>& statements);
outcome<std::vector<protocol::statement>> decode_statements(std::string_view body);

// "[1,0,3]".
std::string encode_changes(const std::vector<protocol::query_result>& results);
std::vector<std::int64_t> decode_changes(std::string_view text);

// Milliseconds since the Unix epoch, now.
std::int64_t wall_ms();

// The statements that replay a changeset (sqlite3session_changeset) on another database with
// the same schema: INSERT, UPDATE of the changed columns, DELETE, each by primary key. `db`
// supplies column names. INTERNAL error if the changeset cannot be read.
outcome<std::vector<protocol::statement>> changeset_to_statements(sqlite3* db, const void* changeset, int size);

// Records the rows a write changes (SQLite's session extension, every table of "main"), from
// start() until statements(). Not thread-safe; lives on the writer's thread.
class change_recorder {
 public:
  static outcome<change_recorder> start(sqlite3* db);
  change_recorder(change_recorder&&) noexcept;
  change_recorder& operator=(change_recorder&&) = delete;
  ~change_recorder();
  // The statements that replay what was recorded (see changeset_to_statements).
  outcome<std::vector<protocol::statement>> statements();

 private:
  change_recorder(sqlite3* db, void* session) : db_(db), session_(session) {}
  sqlite3* db_;
  void* session_;  // sqlite3_session*, kept opaque so that callers need not enable the extension
};

// The SQL that records, on a follower, that it applied `source`'s journal up to `seq`.
protocol::statement applied_statement(std::string_view source, std::int64_t seq);

// Quotes an identifier for SQL: "name" with inner quotes doubled.
std::string quote_identifier(std::string_view name);

}  // namespace tandem::backends
