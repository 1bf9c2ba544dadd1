#include "tools/move/backup.hpp"

#include <sqlite3.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "backends/sqlite_connection.hpp"
#include "protocol/codec.hpp"
#include "protocol/json_reader.hpp"
#include "protocol/text.hpp"
#include "tools/move/copy_engine.hpp"
#include "tools/move/schema.hpp"

namespace tandem::tools {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

using steady = std::chrono::steady_clock;

error fail(std::string m) { return error{errc::unavailable, std::move(m), {}, {}}; }

// The time now in strftime's `format`, in UTC or local time.
std::string now_text(const char* format, bool utc) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  if (utc) gmtime_r(&now, &tm);
  else localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

std::string utc_now() { return now_text("%Y-%m-%dT%H:%M:%SZ", true); }

// `from` read-only and `to` (created if missing) for an online copy; UNAVAILABLE naming both.
outcome<std::pair<backends::sqlite_db_ptr, backends::sqlite_db_ptr>> open_pair(const std::string& from, const std::string& to) {
  auto src = backends::open_sqlite(from, SQLITE_OPEN_READONLY);
  auto dst = src ? backends::open_sqlite(to, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) : src.error();
  if (!src || !dst) return fail("cannot open " + from + " or " + to);
  return std::pair{std::move(*src), std::move(*dst)};
}

outcome<void> exec(sqlite3* db, const std::string& sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string m = msg ? msg : sqlite3_errmsg(db);
    sqlite3_free(msg);
    return fail(m + " (in: " + sql.substr(0, 120) + ")");
  }
  return {};
}

// Copies every page of `from` into `to` with SQLite's backup API, in one step (one read
// transaction on `from`: a consistent copy, while other connections keep writing in WAL mode).
outcome<void> copy_pages(sqlite3* from, sqlite3* to) {
  backends::sqlite_backup_ptr b(sqlite3_backup_init(to, "main", from, "main"));
  if (b == nullptr) return fail(std::string("cannot start the backup: ") + sqlite3_errmsg(to));
  int rc;
  do {
    rc = sqlite3_backup_step(b.get(), -1);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) sqlite3_sleep(50);
  } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
  b.reset();  // finished before the error is read: it is the step's
  if (rc != SQLITE_DONE) return fail(std::string("the backup failed: ") + sqlite3_errstr(rc) + ": " + sqlite3_errmsg(to));
  return {};
}

void append_json_value(std::string& out, const value& v) {
  if (const auto* b = std::get_if<protocol::blob>(&v)) {
    out += '[';
    for (std::size_t i = 0; i < b->bytes.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(static_cast<unsigned char>(b->bytes[i]));
    }
    out += ']';
    return;
  }
  protocol::append_value(out, v);
}

std::string file_name_for(const std::string& table, std::size_t index) {
  std::string s;
  for (unsigned char c : table) s += std::isalnum(c) || c == '_' || c == '-' ? static_cast<char>(c) : '_';
  return std::to_string(index + 1000).substr(1) + "-" + s + ".json";
}

}  // namespace

std::string local_date() { return now_text("%Y-%m-%d", false); }

fs::path unused_path(const fs::path& dir, const std::string& base, const std::string& ext) {
  std::error_code ec;
  for (int n = 1;; ++n) {
    fs::path p = dir / (base + (n == 1 ? "" : "-" + std::to_string(n)) + ext);
    if (!fs::exists(p, ec)) return p;
  }
}

outcome<std::int64_t> user_objects(reader& r) {
  auto q = r.query_one("SELECT name FROM sqlite_schema WHERE sql IS NOT NULL");
  if (!q) return q.error();
  std::int64_t n = 0;
  for (const auto& row : q->rows)
    if (const auto* s = std::get_if<std::string>(&row[0]); s && !is_internal_name(*s)) ++n;
  return n;
}

outcome<void> copy_sqlite_backup(const std::string& from, const std::string& to) {
  auto dbs = open_pair(from, to);
  if (!dbs) return dbs.error();
  sqlite3* src = dbs->first.get();
  sqlite3* dst = dbs->second.get();
  sqlite3_busy_timeout(src, 5000);
  if (auto r = copy_pages(src, dst); !r) return r;
  // A backup is one self-contained file, like `cp` of a closed database.
  if (auto r = exec(dst, "PRAGMA journal_mode=DELETE"); !r) return r;
  std::string check;
  sqlite3_exec(
      dst, "PRAGMA quick_check", [](void* out, int, char** v, char**) { *static_cast<std::string*>(out) += v[0] ? v[0] : ""; return 0; },
      &check, nullptr);
  if (check != "ok") return fail("the copy failed its check (" + check + ")");
  return {};
}

outcome<void> restore_sqlite_backup(const std::string& from, const std::string& to) {
  auto dbs = open_pair(from, to);
  if (!dbs) return dbs.error();
  sqlite3_busy_timeout(dbs->second.get(), 5000);
  return copy_pages(dbs->first.get(), dbs->second.get());
}

outcome<std::vector<protocol::statement>> drop_user_objects(reader& r) {
  // Everything of the user's goes, children before parents, in one atomic batch.
  auto objects = r.query_one("SELECT type, name FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid DESC");
  if (!objects) return objects.error();
  std::vector<protocol::statement> drops{{"PRAGMA defer_foreign_keys = ON", {}}};
  for (const char* kind : {"trigger", "view", "index", "table"}) {
    for (const auto& row : objects->rows) {
      const auto& type = std::get<std::string>(row[0]);
      const auto& name = std::get<std::string>(row[1]);
      if (type != kind || is_internal_name(name)) continue;
      std::string upper = type;
      for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      drops.push_back({"DROP " + upper + " IF EXISTS " + quote_name(name), {}});
    }
  }
  drops.push_back({std::string("DROP TABLE IF EXISTS ") + k_checkpoint_table, {}});
  drops.push_back({"DROP TABLE IF EXISTS _tandem_migrate_triggers", {}});
  return drops;
}

std::string backup_file_name(const std::string& source_path) {
  return fs::path(source_path).stem().string() + "-" + local_date() + ".db";
}

// ---- the D1 backup format --------------------------------------------------------------------

namespace {

// One table of a D1 backup: tables/<file> in the shape of wrangler d1 execute --json, its rows
// as INSERTs in `dump`, and its entry in `manifest`. The rows written.
outcome<std::int64_t> write_table(reader& source, const table_info& t, std::size_t index, const std::string& folder, std::ofstream& dump,
                                  std::string& manifest) {
  const std::string file = file_name_for(t.name, index);
  std::ofstream out(fs::path(folder) / "tables" / file, std::ios::binary);
  out << "[\n  {\n    \"results\": [\n";
  std::vector<std::string> keys;
  for (const auto& c : t.copy_columns) {
    std::string k;
    protocol::append_json_string(k, c);
    keys.push_back(k + ":");
  }
  std::string insert_head = "INSERT INTO " + quote_name(t.name) + " (";
  for (std::size_t c = 0; c < t.copy_columns.size(); ++c) insert_head += (c ? "," : "") + quote_name(t.copy_columns[c]);
  insert_head += ") VALUES";
  std::int64_t n = 0;
  std::optional<row> after;
  const auto start = steady::now();
  for (;;) {
    select_spec spec{t.name, t.copy_columns, after ? t.after_predicate() : "", after ? *after : row{}, t.key_expr(), 5000};
    auto rows = source.select_one(spec);
    if (!rows) return error{rows.error().code, "reading " + t.name + ": " + rows.error().message, {}, {}};
    std::string text, sql;
    for (const auto& r : *rows) {
      text += n ? ",\n      {" : "      {";
      std::string tuple = "(";
      for (std::size_t c = 0; c < r.size(); ++c) {
        text += (c ? "," : "") + keys[c];
        append_json_value(text, r[c]);
        tuple += (c ? "," : "") + sql_literal(r[c]);
      }
      text += '}';
      tuple += ')';
      // Statements below D1's 100,000 bytes where the rows allow it.
      if (!sql.empty() && sql.size() + tuple.size() > 90000) {
        dump << sql << ";\n";
        sql.clear();
      }
      sql += sql.empty() ? insert_head + tuple : "," + tuple;
      ++n;
    }
    if (!sql.empty()) dump << sql << ";\n";
    out << text;
    if (rows->size() < 5000) break;
    after = t.key_of(rows->back());
  }
  char meta[96];
  std::snprintf(meta, sizeof meta, "%.3f", std::chrono::duration<double, std::milli>(steady::now() - start).count());
  out << (n ? "\n" : "") << "    ],\n    \"success\": true,\n    \"meta\": {\"duration\": " << meta << ", \"rows\": " << n << "}\n  }\n]\n";
  if (!out) return fail("cannot write " + (fs::path(folder) / "tables" / file).string());
  manifest += std::string(index ? "," : "") + "{\"name\":";
  protocol::append_json_string(manifest, t.name);
  manifest += ",\"file\":";
  protocol::append_json_string(manifest, "tables/" + file);
  manifest += ",\"rows\":" + std::to_string(n) + ",\"sql\":";
  protocol::append_json_string(manifest, t.sql);
  manifest += ",\"columns\":[";
  for (std::size_t c = 0; c < t.copy_columns.size(); ++c) {
    if (c) manifest += ',';
    protocol::append_json_string(manifest, t.copy_columns[c]);
  }
  manifest += "]}";
  return n;
}

// The objects after the tables (indexes, views, triggers) and the AUTOINCREMENT counters, in
// `manifest` and `dump`.
void write_objects(const database_schema& schema, std::ofstream& dump, std::string& manifest) {
  manifest += "],\"objects\":[";
  const auto objects = schema.objects();
  for (std::size_t i = 0; i < objects.size(); ++i) {
    const auto& o = objects[i];
    manifest += std::string(i ? "," : "") + "{\"type\":";
    protocol::append_json_string(manifest, o.type);
    manifest += ",\"name\":";
    protocol::append_json_string(manifest, o.name);
    manifest += ",\"sql\":";
    protocol::append_json_string(manifest, o.sql);
    manifest += '}';
    dump << o.sql << ";\n";
  }
  manifest += "],\"sequences\":[";
  if (!schema.sequences.empty()) dump << "DELETE FROM sqlite_sequence;\n";
  for (std::size_t i = 0; i < schema.sequences.size(); ++i) {
    const auto& [name, seq] = schema.sequences[i];
    manifest += std::string(i ? "," : "") + "[";
    protocol::append_json_string(manifest, name);
    manifest += "," + std::to_string(seq) + "]";
    dump << "INSERT INTO sqlite_sequence VALUES(" << sql_literal(value{name}) << "," << seq << ");\n";
  }
}

}  // namespace

outcome<void> write_json_backup(reader& source, const std::string& folder, std::int64_t* rows_out) {
  auto schema = read_schema(source);
  if (!schema) return schema.error();
  std::error_code ec;
  if (fs::exists(folder, ec)) return fail(folder + " already exists");
  fs::create_directories(fs::path(folder) / "tables", ec);
  if (ec) return fail("cannot create " + folder + ": " + ec.message());
  std::ofstream dump(fs::path(folder) / "dump.sql", std::ios::binary);
  dump << "-- tandem backup of " << source.describe() << " at " << utc_now() << "\n"
       << "-- Load it with: sqlite3 restored.db < dump.sql   (tandem restore reads tables/*.json instead: exact values)\n"
       << "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n";
  for (const auto& t : schema->tables) dump << t.sql << ";\n";

  std::string manifest = "{\"format\":\"tandem-backup\",\"version\":1,\"source\":";
  protocol::append_json_string(manifest, source.describe());
  manifest += ",\"created\":\"" + utc_now() + "\",\"tables\":[";
  std::int64_t total = 0;
  for (std::size_t i = 0; i < schema->tables.size(); ++i) {
    auto n = write_table(source, schema->tables[i], i, folder, dump, manifest);
    if (!n) return n.error();
    total += *n;
  }
  write_objects(*schema, dump, manifest);
  manifest += "],\"total_rows\":" + std::to_string(total) + "}\n";
  dump << "COMMIT;\n";
  if (!dump) return fail("cannot write " + (fs::path(folder) / "dump.sql").string());
  // Last: a folder with a manifest is a complete backup.
  std::ofstream(fs::path(folder) / "manifest.json", std::ios::binary) << manifest;
  if (rows_out) *rows_out = total;
  return {};
}

namespace {

std::optional<std::string> slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Binds one cell of a backup's JSON row (null, number, bool, text, or a blob as an array of bytes).
outcome<void> bind_json(sqlite3* db, sqlite3_stmt* st, int at, const json::value* v, const std::string& file, const std::string& column) {
  int rc = SQLITE_OK;
  if (v == nullptr || v->is_null()) {
    rc = sqlite3_bind_null(st, at);
  } else if (v->is_int64()) {
    rc = sqlite3_bind_int64(st, at, v->get_int64());
  } else if (v->is_uint64()) {
    rc = sqlite3_bind_double(st, at, static_cast<double>(v->get_uint64()));
  } else if (v->is_double()) {
    rc = sqlite3_bind_double(st, at, v->get_double());
  } else if (v->is_bool()) {
    rc = sqlite3_bind_int(st, at, v->get_bool() ? 1 : 0);
  } else if (v->is_string()) {
    const auto& s = v->get_string();
    rc = sqlite3_bind_text64(st, at, s.data(), s.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  } else if (v->is_array()) {
    std::string bytes;
    for (const auto& b : v->get_array()) {
      if (!b.is_int64() || b.get_int64() < 0 || b.get_int64() > 255) return fail(file + ": a blob holds something that is not a byte");
      bytes.push_back(static_cast<char>(b.get_int64()));
    }
    rc = sqlite3_bind_blob64(st, at, bytes.data(), bytes.size(), SQLITE_TRANSIENT);
  } else {
    return fail(file + ": column " + column + " holds an object");
  }
  return backends::sqlite_check(db, rc, file + ": column " + column, errc::unavailable);
}

// Inserts the rows of one table's file (`t`: its entry in the manifest) into `db`.
outcome<void> load_table(sqlite3* db, const std::string& folder, const json::value& t) {
  const std::string name(t.at("name").as_string());
  const std::string file(t.at("file").as_string());
  std::vector<std::string> columns;
  for (const auto& c : t.at("columns").as_array()) columns.emplace_back(c.as_string());
  const auto body = slurp(fs::path(folder) / file);
  if (!body) return fail("the backup lacks " + file);
  auto rows = protocol::read_json(*body);
  if (!rows.ok()) return fail(file + ": " + rows.error);
  const json::array* results = nullptr;
  if (rows.value.is_array() && !rows.value.get_array().empty() && rows.value.get_array()[0].is_object()) {
    if (const auto* r = rows.value.get_array()[0].get_object().if_contains("results"); r && r->is_array()) results = &r->get_array();
  }
  if (!results) return fail(file + ": not the shape of wrangler d1 execute --json ([{\"results\": [...]}])");
  std::string sql = "INSERT INTO " + quote_name(name) + " (";
  for (std::size_t c = 0; c < columns.size(); ++c) sql += (c ? "," : "") + quote_name(columns[c]);
  sql += ") VALUES (";
  for (std::size_t c = 0; c < columns.size(); ++c) sql += c ? ",?" : "?";
  sql += ")";
  sqlite3_stmt* raw = nullptr;
  const int prepared = sqlite3_prepare_v2(db, sql.c_str(), -1, &raw, nullptr);
  backends::sqlite_stmt_ptr st(raw);
  if (prepared != SQLITE_OK) return fail(std::string(sqlite3_errmsg(db)) + " in " + sql);
  for (const auto& r : *results) {
    if (!r.is_object()) return fail(file + ": a row is not an object");
    sqlite3_reset(raw);
    for (std::size_t c = 0; c < columns.size(); ++c) {
      if (auto ok = bind_json(db, raw, static_cast<int>(c + 1), r.get_object().if_contains(columns[c]), file, columns[c]); !ok) return ok;
    }
    if (sqlite3_step(raw) != SQLITE_DONE) return fail(file + ": " + sqlite3_errmsg(db));
  }
  return {};
}

}  // namespace

outcome<void> load_json_backup(const std::string& folder, const std::string& path) {
  const auto text = slurp(fs::path(folder) / "manifest.json");
  if (!text) return fail(folder + " is not a tandem backup: it has no manifest.json");
  auto doc = protocol::read_json(*text);
  if (!doc.ok() || !doc.value.is_object()) return fail(folder + "/manifest.json: " + (doc.ok() ? "not an object" : doc.error));
  const auto& m = doc.value.get_object();
  const auto* tables = m.if_contains("tables");
  const auto* objects = m.if_contains("objects");
  if (!tables || !tables->is_array() || !objects || !objects->is_array()) return fail(folder + "/manifest.json: no tables or objects");

  auto opened = backends::open_sqlite(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (!opened) return fail("cannot create " + path);
  sqlite3* db = opened->get();
  if (auto r = exec(db, "PRAGMA foreign_keys=OFF; PRAGMA journal_mode=WAL; BEGIN"); !r) return r;
  for (const auto& t : tables->get_array()) {
    if (auto r = exec(db, std::string(t.at("sql").as_string())); !r) return r;
  }
  for (const auto& t : tables->get_array()) {
    if (auto r = load_table(db, folder, t); !r) return r;
  }
  for (const auto& o : objects->get_array()) {
    if (auto r = exec(db, std::string(o.at("sql").as_string())); !r) return r;
  }
  if (const auto* seqs = m.if_contains("sequences"); seqs && seqs->is_array()) {
    for (const auto& s : seqs->get_array()) {
      const auto& pair = s.as_array();
      const std::string name(pair.at(0).as_string());
      if (auto r = exec(db, "DELETE FROM sqlite_sequence WHERE name = " + sql_literal(value{name}) + "; INSERT INTO sqlite_sequence VALUES (" +
                                  sql_literal(value{name}) + ", " + std::to_string(pair.at(1).to_number<std::int64_t>()) + ")");
          !r)
        return r;
    }
  }
  return exec(db, "COMMIT");
}

}  // namespace tandem::tools
