#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include "backends/journal.hpp"

#include <sqlite3.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <limits>
#include <algorithm>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>

#include "protocol/codec.hpp"
#include "protocol/text.hpp"

namespace tandem::backends {
namespace {

using protocol::errc;
using protocol::error;

struct stmt_finalizer {
  void operator()(sqlite3_stmt* st) const noexcept { sqlite3_finalize(st); }
};

protocol::value to_value(sqlite3_value* v) {
  if (v == nullptr) return std::monostate{};
  switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER: return sqlite3_value_int64(v);
    case SQLITE_FLOAT: return sqlite3_value_double(v);
    case SQLITE_TEXT:
      return std::string(reinterpret_cast<const char*>(sqlite3_value_text(v)),
                         static_cast<std::size_t>(sqlite3_value_bytes(v)));
    case SQLITE_BLOB: {
      const auto* p = static_cast<const char*>(sqlite3_value_blob(v));
      return protocol::blob{p ? std::string(p, static_cast<std::size_t>(sqlite3_value_bytes(v))) : std::string()};
    }
    default: return std::monostate{};
  }
}

}  // namespace

std::string quote_identifier(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    out += c;
    if (c == '"') out += '"';
  }
  out += '"';
  return out;
}

namespace {
// AUTOINCREMENT keeps the highest sequence ever given in sqlite_sequence, past every prune.
constexpr const char* k_high_water =
    "coalesce((SELECT seq FROM sqlite_sequence WHERE name = '_tandem_journal'), (SELECT max(seq) FROM _tandem_journal), 0)";
}  // namespace

std::vector<protocol::statement> journal_schema_statements() {
  std::vector<protocol::statement> out;
  for (const char* sql : k_journal_schema) out.push_back({sql, {}});
  return out;
}

std::vector<protocol::statement> journal_identity_statements() {
  auto out = journal_schema_statements();
  // journal_base first: whether the store holds tables of its own (tandem's, SQLite's and D1's
  // own excepted) or an older journal. A follower with no position may start at the beginning
  // only of a journal that began with the store's own beginning.
  out.push_back({"INSERT OR IGNORE INTO _tandem_meta (key, value) VALUES ('journal_base', CASE WHEN EXISTS ("
                 "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                 "AND name NOT LIKE '\\_tandem\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\') "
                 "OR coalesce((SELECT seq FROM sqlite_sequence WHERE name = '_tandem_journal'), 0) > 0 "
                 "THEN 'data' ELSE 'empty' END)",
                 {}});
  out.push_back({"INSERT OR IGNORE INTO _tandem_meta (key, value) VALUES ('journal_id', lower(hex(randomblob(16))))", {}});
  out.push_back({"SELECT (SELECT value FROM _tandem_meta WHERE key = 'journal_id'), "
                 "(SELECT value FROM _tandem_meta WHERE key = 'journal_base'), "
                 "coalesce((SELECT value FROM _tandem_meta WHERE key = 'follower_stale'), ''), "
                 + std::string(k_high_water) + ", coalesce((SELECT min(seq) FROM _tandem_journal), 0)",
                 {}});
  return out;
}

outcome<journal_identity> read_journal_identity(const std::vector<protocol::query_result>& results) {
  const auto bad = error{errc::internal, "tandem's journal identity has unexpected types", {}, {}};
  if (results.empty() || results.back().rows.size() != 1 || results.back().rows[0].size() != 5) return bad;
  const auto& row = results.back().rows[0];
  const auto* id = std::get_if<std::string>(&row[0]);
  const auto* base = std::get_if<std::string>(&row[1]);
  const auto* stale = std::get_if<std::string>(&row[2]);
  const auto* high = std::get_if<std::int64_t>(&row[3]);
  const auto* first = std::get_if<std::int64_t>(&row[4]);
  if (!id || !base || !stale || !high || !first) return bad;
  return journal_identity{*id, *base == "empty", *high, *first, *stale};
}

protocol::statement applied_position_statement(std::string_view source) {
  protocol::statement st;
  st.sql = "SELECT seq, coalesce(journal, '') FROM _tandem_applied WHERE source = ?";
  st.params.positional = {std::string(source)};
  return st;
}

applied_position read_applied_position(const protocol::query_result& result) {
  applied_position p;
  if (result.rows.empty() || result.rows[0].size() != 2) return p;
  const auto* seq = std::get_if<std::int64_t>(&result.rows[0][0]);
  const auto* journal = std::get_if<std::string>(&result.rows[0][1]);
  if (!seq) return p;
  p.present = true;
  p.seq = *seq;
  if (journal) p.journal = *journal;
  return p;
}

std::string judge_position(const applied_position& at, const journal_identity& leader, std::string_view follower) {
  const std::string f(follower);
  const std::string short_id = leader.id.substr(0, 8);
  if (!at.present) {
    // Nothing applied yet: fine only from the very start of a journal that began with the store.
    const bool whole = leader.first == 1 || (leader.first == 0 && leader.high_water == 0);
    if (leader.born_empty && whole) return {};
    return f + " holds no position in this journal (" + short_id + "): it was never copied from the leader, or was emptied";
  }
  if (!at.journal.empty() && at.journal != leader.id) {
    return f + " follows another journal (" + at.journal.substr(0, 8) + ", at " + std::to_string(at.seq) + "), not the leader's (" +
           short_id + "): the leader's file was replaced or restored, or " + f + " was copied from another database";
  }
  if (at.seq > leader.high_water) {
    return f + " has applied entry " + std::to_string(at.seq) + " of journal " + short_id + ", but the leader's journal ends at " +
           std::to_string(leader.high_water) + ": the leader lost acknowledged commits (a power loss with synchronous below FULL, "
           "or a file restored from a backup), and " + f + " holds writes the leader does not";
  }
  if (at.seq < leader.high_water && (leader.first == 0 || leader.first > at.seq + 1)) {
    return f + " stands at entry " + std::to_string(at.seq) + " of journal " + short_id + ", but the leader holds entries only from " +
           (leader.first == 0 ? std::to_string(leader.high_water + 1) : std::to_string(leader.first)) +
           ": the entries in between were pruned (was " + f + " restored to an earlier point?)";
  }
  return {};
}

protocol::statement follower_stale_statement(std::string_view reason) {
  protocol::statement st;
  if (reason.empty()) {
    st.sql = "DELETE FROM _tandem_meta WHERE key = 'follower_stale'";
  } else {
    st.sql = "INSERT OR IGNORE INTO _tandem_meta (key, value) VALUES ('follower_stale', ?)";
    st.params.positional = {std::string(reason)};
  }
  return st;
}

std::string encode_statements(const std::vector<protocol::statement>& statements) {
  protocol::request r;
  r.id_json = "0";
  r.kind = protocol::op::batch;
  r.statements = statements;
  std::string out;
  protocol::encode_request(r, out);
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

outcome<std::vector<protocol::statement>> decode_statements(std::string_view body) {
  protocol::decode_limits limits;
  limits.max_batch_statements = std::numeric_limits<std::size_t>::max();
  auto decoded = protocol::decode_request(body, limits);
  if (auto* r = std::get_if<protocol::request>(&decoded); r && r->kind == protocol::op::batch) {
    return std::move(r->statements);
  }
  std::string why = "not a batch";
  if (const auto* resp = std::get_if<protocol::response>(&decoded)) {
    if (const auto* e = std::get_if<protocol::error>(&resp->body)) why = e->message;
  }
  return error{errc::internal, "a journal entry could not be read (corrupt body: " + why + ")", {}, {}};
}

std::string encode_changes(const std::vector<protocol::query_result>& results) {
  std::string out = "[";
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(results[i].meta.changes);
  }
  out += ']';
  return out;
}

std::vector<std::int64_t> decode_changes(std::string_view text) {
  std::vector<std::int64_t> out;
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    if (*p == '-' || (*p >= '0' && *p <= '9')) {
      std::int64_t v = 0;
      auto r = std::from_chars(p, end, v);
      out.push_back(v);
      p = r.ptr;
    } else {
      ++p;
    }
  }
  return out;
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string utc_text(std::int64_t ms) {
  const auto t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

protocol::statement applied_statement(std::string_view source, std::string_view journal, std::int64_t seq) {
  protocol::statement st;
  st.sql =
      "INSERT INTO _tandem_applied (source, seq, updated_ms, journal) VALUES (?, ?, ?, ?) "
      "ON CONFLICT (source) DO UPDATE SET seq = excluded.seq, updated_ms = excluded.updated_ms, journal = excluded.journal";
  st.params.positional = {std::string(source), seq, wall_ms(), std::string(journal)};
  return st;
}

protocol::statement applied_guard(std::string_view source, std::int64_t expected) {
  protocol::statement st;
  st.sql =
      "SELECT json(CASE WHEN coalesce((SELECT seq FROM _tandem_applied WHERE source = ?), 0) = ? THEN '0' "
      "ELSE 'tandem: the applied position moved since this batch was built' END)";
  st.params.positional = {std::string(source), expected};
  return st;
}

std::string journal_count_changes_sql(bool known) {
  return std::string("UPDATE _tandem_journal SET changes = json_insert(changes, '$[#]', ") + (known ? "changes()" : "-1") +
         ") WHERE seq = (SELECT max(seq) FROM _tandem_journal)";
}

std::string journal_append_sql(std::string_view changes_sql) {
  return "INSERT INTO _tandem_journal (kind, body, changes, created_ms) VALUES (?, ?, " + std::string(changes_sql) + ", ?)";
}

protocol::statement journal_read_statement(std::int64_t after, std::int64_t limit) {
  protocol::statement st;
  st.sql = "SELECT seq, kind, body, changes, created_ms FROM _tandem_journal WHERE seq > ? ORDER BY seq LIMIT ?";
  st.params.positional = {after, limit};
  return st;
}

outcome<std::vector<journal_entry>> read_journal_entries(const protocol::query_result& result,
                                                         const journal_batch_limits& limits, std::string_view store) {
  std::vector<journal_entry> out;
  std::size_t bytes = 0, statements = limits.overhead;
  for (const auto& row : result.rows) {
    const auto* seq = row.size() == 5 ? std::get_if<std::int64_t>(&row[0]) : nullptr;
    const auto* kind = seq ? std::get_if<std::int64_t>(&row[1]) : nullptr;
    const auto* body = seq ? std::get_if<std::string>(&row[2]) : nullptr;
    const auto* changes = seq ? std::get_if<std::string>(&row[3]) : nullptr;
    const auto* created = seq ? std::get_if<std::int64_t>(&row[4]) : nullptr;
    if (!seq || !kind || !body || !changes || !created) {
      return error{errc::internal, "a journal row has unexpected types", std::string(store), {}};
    }
    auto sts = decode_statements(*body);
    if (!sts) {
      auto err = sts.error();
      err.message += " at seq " + std::to_string(*seq);
      return err;
    }
    if (!out.empty() && (bytes + body->size() > limits.max_bytes || statements + sts->size() > limits.max_statements)) break;
    bytes += body->size();
    statements += sts->size();
    journal_entry e;
    e.seq = *seq;
    e.kind = static_cast<entry_kind>(*kind);
    e.statements = std::move(*sts);
    if (e.kind == entry_kind::row_images) e.checks = decode_checks(*changes);
    else e.changes = decode_changes(*changes);
    e.created_ms = *created;
    out.push_back(std::move(e));
  }
  return out;
}

namespace {
constexpr const char* k_entry_size = "length(CAST(body AS BLOB)) + length(CAST(changes AS BLOB))";
protocol::statement plain(std::string sql) { return protocol::statement{std::move(sql), {}}; }
}  // namespace

protocol::statement journal_prune_statement(std::int64_t upto, std::int64_t before_ms, bool counted) {
  protocol::statement st;
  st.sql = "DELETE FROM _tandem_journal WHERE seq <= ? AND created_ms < ?";
  if (counted) st.sql += std::string(" RETURNING ") + k_entry_size;
  st.params.positional = {upto, before_ms};
  return st;
}

protocol::statement journal_bytes_statement() {
  return plain(std::string("SELECT coalesce(sum(") + k_entry_size + "), 0) FROM _tandem_journal");
}

protocol::statement journal_max_seq_statement() { return plain("SELECT coalesce(max(seq), 0) FROM _tandem_journal"); }

protocol::statement journal_high_water_statement() { return plain(std::string("SELECT ") + k_high_water); }

protocol::statement journal_clear_statement() { return plain("DELETE FROM _tandem_journal"); }

std::int64_t read_figure(const protocol::query_result& result) {
  const auto* v = result.rows.empty() || result.rows[0].empty() ? nullptr : std::get_if<std::int64_t>(&result.rows[0][0]);
  return v ? *v : 0;
}

protocol::statement applied_journal_probe_statement() { return plain("SELECT journal FROM _tandem_applied LIMIT 0"); }

protocol::statement applied_journal_upgrade_statement() { return plain("ALTER TABLE _tandem_applied ADD COLUMN journal TEXT"); }

// --- row_recorder ----------------------------------------------------------------------------

namespace {

struct row_change {
  int op = 0;  // SQLITE_INSERT, SQLITE_UPDATE or SQLITE_DELETE
  std::string table;
  std::int64_t old_rowid = 0, new_rowid = 0;
  std::vector<protocol::value> old_values, new_values;  // every column; empty when not applicable
};


// What replaying needs to know of one table, read once per finish().
struct table_shape {
  std::vector<std::string> names;  // every column, in table order
  std::vector<bool> generated;     // computed by the follower: never assigned
  std::vector<int> stored;         // the columns a row record holds (not VIRTUAL generated ones)
  std::vector<bool> real;          // REAL affinity: a whole value is stored as an integer, read as REAL
  std::vector<int> key;            // primary key columns, in key order (WITHOUT ROWID)
  bool without_rowid = false;
  int rowid_alias = -1;            // the INTEGER PRIMARY KEY column of a rowid table
  std::string rowid_name;          // rowid, _rowid_ or oid: the first no column shadows
  std::vector<std::pair<std::string, std::string>> triggers;  // name, CREATE TRIGGER text
};

// SQLite's affinity rules (datatype3.html, 3.1), down to the one that matters here: REAL.
bool real_affinity(std::string type) {
  for (auto& ch : type) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  auto has = [&](const char* w) { return type.find(w) != std::string::npos; };
  if (has("INT") || has("CHAR") || has("CLOB") || has("TEXT") || has("BLOB") || type.empty()) return false;
  return has("REAL") || has("FLOA") || has("DOUB");
}

outcome<table_shape> shape_of(sqlite3* db, const std::string& table) {
  auto fail = [&](const char* what) {
    return error{errc::internal, "cannot read the shape of table " + table + " (" + what + "): " + sqlite3_errmsg(db), "sqlite", {}};
  };
  auto query = [&](const char* sql, auto&& row) -> bool {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) return false;
    std::unique_ptr<sqlite3_stmt, stmt_finalizer> q(raw);
    if (sqlite3_bind_text(raw, 1, table.c_str(), -1, SQLITE_TRANSIENT) != SQLITE_OK) return false;
    int rc;
    while ((rc = sqlite3_step(raw)) == SQLITE_ROW) row(raw);
    return rc == SQLITE_DONE;
  };
  auto text = [](sqlite3_stmt* st, int i) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, i));
    return std::string(p ? p : "");
  };
  table_shape t;
  std::vector<std::pair<int, int>> pk;  // position in key, column
  std::vector<std::string> types;
  if (!query("SELECT name, type, pk, hidden FROM pragma_table_xinfo(?)", [&](sqlite3_stmt* st) {
        const int col = static_cast<int>(t.names.size());
        t.names.push_back(text(st, 0));
        types.push_back(text(st, 1));
        if (sqlite3_column_int(st, 2) > 0) pk.emplace_back(sqlite3_column_int(st, 2), col);
        t.generated.push_back(sqlite3_column_int(st, 3) >= 2);
        t.real.push_back(real_affinity(types.back()));
        if (sqlite3_column_int(st, 3) != 2) t.stored.push_back(col);
      }))
    return fail("columns");
  if (!query("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?",
             [&](sqlite3_stmt* st) { t.without_rowid = sqlite3_column_int(st, 0) != 0; }))
    return fail("kind");
  if (!query("SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ? COLLATE NOCASE AND sql IS NOT NULL",
             [&](sqlite3_stmt* st) { t.triggers.emplace_back(text(st, 0), text(st, 1)); }))
    return fail("triggers");
  std::sort(pk.begin(), pk.end());
  for (const auto& [pos, col] : pk) t.key.push_back(col);
  if (!t.without_rowid) {
    if (t.key.size() == 1 && sqlite3_stricmp(types[t.key[0]].c_str(), "INTEGER") == 0) t.rowid_alias = t.key[0];
    for (const char* candidate : {"rowid", "_rowid_", "oid"}) {
      if (std::none_of(t.names.begin(), t.names.end(), [&](const std::string& n) { return sqlite3_stricmp(n.c_str(), candidate) == 0; })) {
        t.rowid_name = candidate;
        break;
      }
    }
    if (t.rowid_name.empty() && t.rowid_alias < 0) {
      return error{errc::unsupported, "table " + table + " has columns named rowid, _rowid_ and oid, so its rows have no name to be addressed by", "sqlite", {}};
    }
  }
  if (t.without_rowid && t.key.empty()) return fail("no primary key");
  return t;
}

// Text that a JSON request cannot carry as it is (not UTF-8, or with NUL: SQLite stores what it
// is given, `blob || 'x'` included).
bool is_raw_text(const protocol::value& v) {
  const auto* text = std::get_if<std::string>(&v);
  return text && (text->find('\0') != std::string::npos || !protocol::is_valid_utf8(*text));
}

// How a row is named by its address: `"id" = ?` (rowid tables) or `"k1" = ? AND "k2" = ?` (by
// key, WITHOUT ROWID), its parameters the rowid or the key values.
std::string address_sql(const table_shape& t) {
  if (!t.without_rowid) return quote_identifier(t.rowid_alias >= 0 ? t.names[static_cast<std::size_t>(t.rowid_alias)] : t.rowid_name) + " = ?";
  std::string where;
  for (int k : t.key) where += (where.empty() ? "" : " AND ") + quote_identifier(t.names[static_cast<std::size_t>(k)]) + " = ?";
  return where;
}

// A value a check reads as its fingerprint rather than as itself (see row_check).
bool fingerprinted(const protocol::value& v) { return protocol::byte_size(v) > k_check_inline_bytes || is_raw_text(v); }

std::string fingerprint_sql(const std::string& column) {
  const std::string bytes = "CAST(" + column + " AS BLOB)";
  return "typeof(" + column + ") || ':' || length(" + bytes + ") || ':' || hex(substr(" + bytes + ", 1, 32)) || ':' || hex(substr(" +
         bytes + ", -32))";
}

std::string fingerprint_of(const protocol::value& v) {
  const auto* b = std::get_if<protocol::blob>(&v);
  const std::string_view bytes = b ? std::string_view(b->bytes) : std::string_view(std::get<std::string>(v));
  const std::size_t edge = std::min<std::size_t>(bytes.size(), 32);
  std::string out = std::string(b ? "blob" : "text") + ":" + std::to_string(bytes.size()) + ":";
  protocol::append_hex(out, bytes.substr(0, edge));
  out += ':';
  protocol::append_hex(out, bytes.substr(bytes.size() - edge));
  return out;
}

// The state of every row `changes` touched once they all applied: a row_check per row address
// (rowid, or primary key for WITHOUT ROWID), in the order first touched. A row whose rowid or
// key changed leaves its old address empty.
std::vector<row_check> checks_of(const std::vector<row_change>& changes, const std::map<std::string, table_shape>& shapes) {
  struct final_state {
    const table_shape* shape = nullptr;
    std::string table;
    std::vector<protocol::value> address;
    const std::vector<protocol::value>* row = nullptr;  // null: no row there
  };
  std::vector<final_state> states;
  std::map<std::string, std::size_t> index;  // table and address, encoded, to states
  auto at = [&](const row_change& c, const table_shape& t, bool old_row) {
    std::vector<protocol::value> address;
    if (!t.without_rowid) {
      address.emplace_back(old_row ? c.old_rowid : c.new_rowid);
    } else {
      for (int k : t.key) address.push_back((old_row ? c.old_values : c.new_values).at(static_cast<std::size_t>(k)));
    }
    std::string key = c.table + '\0';
    for (const auto& v : address) protocol::append_value(key, v);
    auto [it, fresh] = index.emplace(std::move(key), states.size());
    if (fresh) states.push_back({&t, c.table, std::move(address), nullptr});
    return &states[it->second];
  };
  for (const auto& c : changes) {
    const table_shape& t = shapes.at(c.table);
    if (c.op == SQLITE_DELETE || c.op == SQLITE_UPDATE) at(c, t, true)->row = nullptr;
    if (c.op == SQLITE_INSERT || c.op == SQLITE_UPDATE) at(c, t, false)->row = &c.new_values;
  }
  std::vector<row_check> out;
  out.reserve(states.size());
  for (const auto& s : states) {
    const table_shape& t = *s.shape;
    row_check check;
    std::string columns;
    if (s.row != nullptr) {
      check.row.emplace();
      for (std::size_t i = 0; i < t.names.size(); ++i) {
        if (t.generated[i]) continue;
        const std::string name = quote_identifier(t.names[i]);
        const auto& v = s.row->at(i);
        columns += (columns.empty() ? "" : ", ") + (fingerprinted(v) ? fingerprint_sql(name) + " AS " + name : name);
        // The pre-update hook gives an inserted row's REAL column as the record stores it: a
        // whole number as an INTEGER. Read back, it is REAL (on the leader and the follower).
        const auto* whole = std::get_if<std::int64_t>(&v);
        if (whole && t.real[i]) check.row->push_back(static_cast<double>(*whole));
        else check.row->push_back(fingerprinted(v) ? protocol::value(fingerprint_of(v)) : v);
      }
    }
    check.address = "FROM " + quote_identifier(s.table) + " WHERE " + address_sql(t);
    check.query.sql = "SELECT " + (columns.empty() ? std::string("1") : columns) + " " + check.address;
    check.query.params.positional = s.address;
    out.push_back(std::move(check));
  }
  return out;
}

}  // namespace

std::string encode_checks(const std::vector<row_check>& checks) {
  std::vector<protocol::statement> line;
  line.reserve(checks.size() * 2);
  for (const auto& c : checks) {
    line.push_back(c.query);
    protocol::statement expected;
    expected.sql = (c.row ? "row " : "absent ") + c.address;
    if (c.row) expected.params.positional = *c.row;
    line.push_back(std::move(expected));
  }
  return encode_statements(line);
}

std::vector<row_check> decode_checks(std::string_view text) {
  if (text.empty() || text.front() != '{') return {};
  auto line = decode_statements(text);
  if (!line || line->size() % 2 != 0) return {};
  std::vector<row_check> out;
  out.reserve(line->size() / 2);
  for (std::size_t i = 0; i < line->size(); i += 2) {
    row_check c;
    c.query = std::move((*line)[i]);
    auto& expected = (*line)[i + 1];
    const auto space = expected.sql.find(' ');
    if (space == std::string::npos) return {};
    c.address = expected.sql.substr(space + 1);
    if (expected.sql.compare(0, space, "row") == 0) c.row = std::move(expected.params.positional);
    out.push_back(std::move(c));
  }
  return out;
}

std::string judge_check(const row_check& check, const protocol::query_result& result) {
  if (!check.row) return result.rows.empty() ? std::string() : "the leader deleted the row and the follower still has it";
  if (result.rows.empty()) return "the follower lacks the row";
  const auto& got = result.rows.front();
  if (got.size() != check.row->size()) return "the follower's row has " + std::to_string(got.size()) + " columns, the leader's " +
                                               std::to_string(check.row->size());
  static constexpr const char* types[] = {"NULL", "INTEGER", "REAL", "TEXT", "BLOB"};
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (protocol::identical(got[i], (*check.row)[i])) continue;
    const std::string column = i < result.columns.size() ? result.columns[i] : "#" + std::to_string(i);
    const auto want = (*check.row)[i].index(), have = got[i].index();
    return "column " + column + " differs: " + (want == have ? std::string("same type (") + types[want] + "), other value"
                                                              : std::string("the leader holds ") + types[want] + ", the follower " + types[have]);
  }
  return {};
}

struct row_recorder::impl {
  sqlite3* db = nullptr;
  std::vector<row_change> changes;
  std::size_t cap = 0;  // changes kept; beyond it only the count goes on (finish() refuses them)
  std::size_t count = 0;
  std::size_t largest_value = 0;

  static void hook(void* self, sqlite3* db, int op, const char* schema, const char* table, sqlite3_int64 key1,
                   sqlite3_int64 key2) {
    auto* me = static_cast<impl*>(self);
    if (schema == nullptr || std::strcmp(schema, "main") != 0 || table == nullptr) return;
    if (sqlite3_strnicmp(table, "_tandem_", 8) == 0 || sqlite3_strnicmp(table, "sqlite_", 7) == 0) return;
    if (++me->count > me->cap) return;
    row_change c;
    c.op = op;
    c.table = table;
    c.old_rowid = key1;
    c.new_rowid = key2;
    const int n = sqlite3_preupdate_count(db);
    auto read = [&](bool old_row) {
      std::vector<protocol::value> out;
      out.reserve(static_cast<std::size_t>(n));
      // SQLite 3.40 gives the values in record order (VIRTUAL generated columns have none) and
      // SQLITE_RANGE past them; later versions give every column in table order. finish() tells
      // the two apart by how many values there are.
      for (int i = 0; i < n; ++i) {
        sqlite3_value* v = nullptr;
        const int rc = old_row ? sqlite3_preupdate_old(db, i, &v) : sqlite3_preupdate_new(db, i, &v);
        if (rc != SQLITE_OK) break;
        out.push_back(to_value(v));
        me->largest_value = std::max(me->largest_value, protocol::byte_size(out.back()));
      }
      return out;
    };
    if (op != SQLITE_INSERT) c.old_values = read(true);
    if (op != SQLITE_DELETE) c.new_values = read(false);
    me->changes.push_back(std::move(c));
  }
};

outcome<row_recorder> row_recorder::start(sqlite3* db, std::size_t max_changes) {
  auto i = std::make_unique<impl>();
  i->db = db;
  i->cap = max_changes;
  sqlite3_preupdate_hook(db, &impl::hook, i.get());
  return row_recorder(std::move(i));
}

row_recorder::row_recorder(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
row_recorder::row_recorder(row_recorder&& o) noexcept : impl_(std::move(o.impl_)) {}

row_recorder::~row_recorder() {
  if (impl_) sqlite3_preupdate_hook(impl_->db, nullptr, nullptr);
}

outcome<row_images> row_recorder::finish(const d1_limits& limits, std::size_t max_statements) {
  sqlite3_preupdate_hook(impl_->db, nullptr, nullptr);
  auto unsupported = [](std::string m) { return error{errc::unsupported, std::move(m), "sqlite", {}}; };
  if (impl_->largest_value > limits.max_value_bytes) {
    return unsupported("the write stores a value of " + std::to_string(impl_->largest_value) + " bytes; D1 holds at most " +
                       std::to_string(limits.max_value_bytes) + " bytes per value");
  }
  if (impl_->count > max_statements) {
    return unsupported("the write changes " + std::to_string(impl_->count) + " rows, and its row images (one statement each) are more than the " +
                       std::to_string(max_statements) + " statements D1 runs in one atomic batch: split it into smaller writes");
  }
  std::map<std::string, table_shape> shapes;
  std::vector<std::string> order;  // tables in the order first changed
  for (const auto& c : impl_->changes) {
    if (shapes.count(c.table)) continue;
    auto shape = shape_of(impl_->db, c.table);
    if (!shape) return shape.error();
    shapes.emplace(c.table, std::move(*shape));
    order.push_back(c.table);
  }
  std::vector<protocol::statement> out;
  for (const auto& table : order) {
    for (const auto& [name, sql] : shapes[table].triggers) out.push_back({"DROP TRIGGER " + quote_identifier(name), {}});
  }
  // A blob whose literal (two hex digits a byte) would not leave room for the rest of the
  // statement travels as bound hex text instead, unhex()ed by D1 (bound text does not count
  // towards D1's statement size), in pieces that each stay under its value limit. The row is
  // written whole in one statement: an empty or partial value first would pass through states
  // the leader never had (a UNIQUE blob column collides with another row's empty one).
  const std::size_t inline_blob_max = limits.max_statement_bytes / 4;
  const std::size_t piece = std::max<std::size_t>(limits.max_value_bytes / 2 - 16, 1);
  for (auto& c : impl_->changes) {
    const table_shape& t = shapes[c.table];
    const std::string qt = quote_identifier(c.table);
    // The hook gives the columns a record stores; VIRTUAL generated columns are not among them.
    for (auto* values : {&c.old_values, &c.new_values}) {
      if (values->empty() || values->size() == t.names.size()) continue;
      if (values->size() != t.stored.size()) {
        return error{errc::internal, "the recorded row of table " + c.table + " does not match its columns", "sqlite", {}};
      }
      std::vector<protocol::value> full(t.names.size());
      for (std::size_t i = 0; i < t.stored.size(); ++i) full[t.stored[i]] = std::move((*values)[i]);
      *values = std::move(full);
    }
    // Raw text (is_raw_text) travels as its bytes, CAST back to TEXT.
    auto assign = [&](protocol::statement& st, const protocol::value& v) -> std::string {
      const auto* b = std::get_if<protocol::blob>(&v);
      const auto* text = std::get_if<std::string>(&v);
      if (!b && !is_raw_text(v)) {
        st.params.positional.push_back(v);
        return "?";
      }
      const std::string_view bytes = b ? std::string_view(b->bytes) : std::string_view(*text);
      if (bytes.size() <= inline_blob_max) {
        st.params.positional.push_back(protocol::blob{std::string(bytes)});
        return b ? "?" : "CAST(? AS TEXT)";
      }
      std::string expr;
      for (std::size_t at = 0; at < bytes.size(); at += piece) {
        std::string h;
        protocol::append_hex(h, bytes.substr(at, piece));
        st.params.positional.push_back(std::move(h));
        expr += expr.empty() ? "unhex(?)" : " || unhex(?)";
      }
      return "CAST(" + expr + (b ? " AS BLOB)" : " AS TEXT)");
    };
    // Where the row was before the change: by rowid, or by key for WITHOUT ROWID.
    auto where = [&](protocol::statement& st) {
      if (!t.without_rowid) {
        st.params.positional.push_back(c.old_rowid);
      } else {
        for (int k : t.key) st.params.positional.push_back(c.old_values.at(static_cast<std::size_t>(k)));
      }
      return " WHERE " + address_sql(t);
    };
    protocol::statement st;
    if (c.op == SQLITE_INSERT) {
      std::string cols, marks;
      if (!t.without_rowid && t.rowid_alias < 0) {
        cols = quote_identifier(t.rowid_name);
        marks = "?";
        st.params.positional.push_back(c.new_rowid);
      }
      for (std::size_t i = 0; i < c.new_values.size(); ++i) {
        if (t.generated[i]) continue;
        cols += (cols.empty() ? "" : ", ") + quote_identifier(t.names[i]);
        marks += (marks.empty() ? "" : ", ") + assign(st, c.new_values[i]);
      }
      st.sql = "INSERT INTO " + qt + " (" + cols + ") VALUES (" + marks + ")";
    } else if (c.op == SQLITE_UPDATE) {
      std::string set;
      if (!t.without_rowid && t.rowid_alias < 0 && c.old_rowid != c.new_rowid) {
        set = quote_identifier(t.rowid_name) + " = ?";
        st.params.positional.push_back(c.new_rowid);
      }
      for (std::size_t i = 0; i < c.new_values.size(); ++i) {
        if (t.generated[i] || protocol::identical(c.old_values.at(i), c.new_values[i])) continue;
        set += (set.empty() ? "" : ", ") + quote_identifier(t.names[i]) + " = ";
        set += assign(st, c.new_values[i]);
      }
      if (set.empty()) continue;
      st.sql = "UPDATE " + qt + " SET " + set;
      st.sql += where(st);
    } else if (c.op == SQLITE_DELETE) {
      st.sql = "DELETE FROM " + qt;
      st.sql += where(st);
    } else {
      continue;
    }
    out.push_back(std::move(st));
  }
  for (const auto& table : order) {
    for (const auto& [name, sql] : shapes[table].triggers) out.push_back({sql, {}});
  }
  if (out.size() > max_statements) {
    return unsupported("the write's row images take " + std::to_string(out.size()) + " statements, more than the " +
                       std::to_string(max_statements) + " D1 runs in one atomic batch: split it into smaller writes");
  }
  return row_images{std::move(out), checks_of(impl_->changes, shapes)};
}

}  // namespace tandem::backends
