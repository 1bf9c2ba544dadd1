#define SQLITE_ENABLE_SESSION 1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include "backends/journal.hpp"

#include <sqlite3.h>

#include <charconv>
#include <chrono>
#include <limits>
#include <memory>

#include "protocol/codec.hpp"

namespace tandem::backends {
namespace {

using protocol::errc;
using protocol::error;

struct stmt_finalizer {
  void operator()(sqlite3_stmt* st) const noexcept { sqlite3_finalize(st); }
};
struct iter_finalizer {
  void operator()(sqlite3_changeset_iter* it) const noexcept { sqlite3changeset_finalize(it); }
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

// Column names of `table`, in table order (hidden generated columns excluded: they are computed).
std::vector<std::string> columns_of(sqlite3* db, const char* table) {
  std::vector<std::string> out;
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT name, hidden FROM pragma_table_xinfo(?)", -1, &raw, nullptr) != SQLITE_OK) return out;
  std::unique_ptr<sqlite3_stmt, stmt_finalizer> q(raw);
  sqlite3_bind_text(raw, 1, table, -1, SQLITE_TRANSIENT);
  while (sqlite3_step(raw) == SQLITE_ROW) {
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(raw, 0)));
    // Generated columns (hidden 2 or 3) are part of the changeset's column list but cannot be
    // assigned: marked with an empty name.
    if (sqlite3_column_int(raw, 1) >= 2) out.back().clear();
  }
  return out;
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

std::vector<protocol::statement> journal_schema_statements() {
  std::vector<protocol::statement> out;
  for (const char* sql : k_journal_schema) out.push_back({sql, {}});
  return out;
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
  return error{errc::internal, "a journal entry could not be read (corrupt body)", {}, {}};
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

outcome<change_recorder> change_recorder::start(sqlite3* db) {
  sqlite3_session* session = nullptr;
  if (sqlite3session_create(db, "main", &session) != SQLITE_OK) {
    return error{errc::internal, "cannot start recording the write's rows", "sqlite", {}};
  }
  if (sqlite3session_attach(session, nullptr) != SQLITE_OK) {
    sqlite3session_delete(session);
    return error{errc::internal, "cannot start recording the write's rows", "sqlite", {}};
  }
  return change_recorder(db, session);
}

change_recorder::change_recorder(change_recorder&& o) noexcept : db_(o.db_), session_(o.session_) {
  o.session_ = nullptr;
}

change_recorder::~change_recorder() {
  if (session_ != nullptr) sqlite3session_delete(static_cast<sqlite3_session*>(session_));
}

outcome<std::vector<protocol::statement>> change_recorder::statements() {
  int size = 0;
  void* data = nullptr;
  if (sqlite3session_changeset(static_cast<sqlite3_session*>(session_), &size, &data) != SQLITE_OK) {
    return error{errc::internal, "cannot read the rows the write changed", "sqlite", {}};
  }
  auto out = changeset_to_statements(db_, data, size);
  sqlite3_free(data);
  return out;
}

protocol::statement applied_statement(std::string_view source, std::int64_t seq) {
  protocol::statement st;
  st.sql =
      "INSERT INTO _tandem_applied (source, seq, updated_ms) VALUES (?, ?, ?) "
      "ON CONFLICT (source) DO UPDATE SET seq = excluded.seq, updated_ms = excluded.updated_ms";
  st.params.positional = {std::string(source), seq, wall_ms()};
  return st;
}

outcome<std::vector<protocol::statement>> changeset_to_statements(sqlite3* db, const void* changeset, int size) {
  sqlite3_changeset_iter* raw = nullptr;
  if (sqlite3changeset_start(&raw, size, const_cast<void*>(changeset)) != SQLITE_OK) {
    return error{errc::internal, "cannot read the write's changeset", "sqlite", {}};
  }
  std::unique_ptr<sqlite3_changeset_iter, iter_finalizer> it(raw);
  std::vector<protocol::statement> out;
  std::string cached_table;
  std::vector<std::string> names;
  int rc;
  while ((rc = sqlite3changeset_next(raw)) == SQLITE_ROW) {
    const char* table = nullptr;
    int ncol = 0, op = 0, indirect = 0;
    sqlite3changeset_op(raw, &table, &ncol, &op, &indirect);
    unsigned char* pk = nullptr;
    int npk = 0;
    sqlite3changeset_pk(raw, &pk, &npk);
    if (table != cached_table) {
      cached_table = table;
      names = columns_of(db, table);
    }
    if (static_cast<int>(names.size()) != ncol) {
      return error{errc::internal, std::string("the changeset of table ") + table + " does not match its columns", "sqlite", {}};
    }
    protocol::statement st;
    const std::string qt = quote_identifier(table);
    auto where_key = [&](bool use_old) {
      std::string w;
      for (int i = 0; i < ncol; ++i) {
        if (!pk[i]) continue;
        sqlite3_value* v = nullptr;
        if (use_old) sqlite3changeset_old(raw, i, &v);
        else sqlite3changeset_new(raw, i, &v);
        w += (w.empty() ? " WHERE " : " AND ") + quote_identifier(names[i]) + " = ?";
        st.params.positional.push_back(to_value(v));
      }
      return w;
    };
    if (op == SQLITE_INSERT) {
      std::string cols, marks;
      for (int i = 0; i < ncol; ++i) {
        if (names[i].empty()) continue;
        sqlite3_value* v = nullptr;
        sqlite3changeset_new(raw, i, &v);
        cols += (cols.empty() ? "" : ", ") + quote_identifier(names[i]);
        marks += marks.empty() ? "?" : ", ?";
        st.params.positional.push_back(to_value(v));
      }
      st.sql = "INSERT INTO " + qt + " (" + cols + ") VALUES (" + marks + ")";
    } else if (op == SQLITE_UPDATE) {
      std::string set;
      for (int i = 0; i < ncol; ++i) {
        sqlite3_value* v = nullptr;
        sqlite3changeset_new(raw, i, &v);
        if (v == nullptr || names[i].empty()) continue;  // unchanged
        set += (set.empty() ? "" : ", ") + quote_identifier(names[i]) + " = ?";
        st.params.positional.push_back(to_value(v));
      }
      if (set.empty()) continue;
      st.sql = "UPDATE " + qt + " SET " + set;
      st.sql += where_key(true);
    } else if (op == SQLITE_DELETE) {
      st.sql = "DELETE FROM " + qt;
      st.sql += where_key(true);
    } else {
      continue;
    }
    out.push_back(std::move(st));
  }
  if (rc != SQLITE_DONE) return error{errc::internal, "cannot read the write's changeset", "sqlite", {}};
  return out;
}

}  // namespace tandem::backends
