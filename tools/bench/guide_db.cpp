#include "tools/bench/guide_db.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <vector>

#include "backends/sqlite_connection.hpp"

namespace tandem::tools {
namespace {

using stmt_ptr = backends::sqlite_stmt_ptr;

void exec(sqlite3* db, const std::string& sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string m = msg ? msg : "?";
    sqlite3_free(msg);
    throw std::runtime_error("guide db: " + m + " in: " + sql.substr(0, 120));
  }
}

// One cell to bind.
struct cell {
  enum { null, integer, real, text, blob } kind = null;
  std::int64_t i = 0;
  double d = 0;
  std::string s;
};
cell N() { return {}; }
cell I(std::int64_t v) { return {cell::integer, v, 0, {}}; }
cell R(double v) { return {cell::real, 0, v, {}}; }
cell T(std::string v) { return {cell::text, 0, 0, std::move(v)}; }
cell B(std::string v) { return {cell::blob, 0, 0, std::move(v)}; }

class inserter {
 public:
  inserter(sqlite3* db, const std::string& sql) : db_(db) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) throw std::runtime_error(std::string("guide db: ") + sqlite3_errmsg(db));
    st_.reset(st);
  }
  void operator()(const std::vector<cell>& cells) {
    sqlite3_reset(st_.get());
    for (std::size_t k = 0; k < cells.size(); ++k) {
      const int at = static_cast<int>(k + 1);
      const auto& c = cells[k];
      switch (c.kind) {
        case cell::null: sqlite3_bind_null(st_.get(), at); break;
        case cell::integer: sqlite3_bind_int64(st_.get(), at, c.i); break;
        case cell::real: sqlite3_bind_double(st_.get(), at, c.d); break;
        case cell::text: sqlite3_bind_text64(st_.get(), at, c.s.data(), c.s.size(), SQLITE_TRANSIENT, SQLITE_UTF8); break;
        case cell::blob: sqlite3_bind_blob64(st_.get(), at, c.s.data(), c.s.size(), SQLITE_TRANSIENT); break;
      }
    }
    if (sqlite3_step(st_.get()) != SQLITE_DONE) throw std::runtime_error(std::string("guide db: ") + sqlite3_errmsg(db_));
    ++rows_;
  }
  std::int64_t rows() const { return rows_; }

 private:
  sqlite3* db_;
  stmt_ptr st_;
  std::int64_t rows_ = 0;
};

const std::vector<std::string> k_words = {
    "alpha", "Ünïcödé", "日本語のテキスト", "emoji 🚀🎉👩‍💻", "שלום עולם", "مرحبا", "e\u0301te\u0301 (combining)", "naïve café",
    "quote ' and \"double\"", "semi; colon", "COMMIT;", "BEGIN TRANSACTION; not really", "line\nbreak", "crlf\r\nline",
    "tab\there", "back\\slash", "percent %d %s", "100%", "<b>html</b>", "null", "NULL", "", " leading space", "trailing space ",
    "Ελληνικά", "Русский текст", "中文字符", "한국어", "🇫🇷 flag", "math ∑∫√∞"};

// Text that SQL-text routes mangle: wrangler d1 execute refuses a file holding BEGIN TRANSACTION
// anywhere, even inside a string, and deletes a COMMIT; it finds.
bool is_sql_trap(const std::string& w) { return w.find("COMMIT") != std::string::npos || w.find("BEGIN TRANSACTION") != std::string::npos; }

class gen {
 public:
  gen(std::uint64_t seed, bool traps) : rng_(seed) {
    for (const auto& w : k_words)
      if (traps || !is_sql_trap(w)) words_.push_back(w);
  }
  const std::vector<std::string>& words() const { return words_; }
  std::int64_t range(std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng_); }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  const std::string& word() { return words_[static_cast<std::size_t>(range(0, static_cast<std::int64_t>(words_.size()) - 1))]; }
  std::string sentence(int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += (i ? " " : "") + word();
    return s;
  }
  std::string json(std::int64_t id) {
    std::string s = "{\"id\":" + std::to_string(id) + ",\"tags\":[\"" + escape(word()) + "\",\"x\"],\"nested\":{\"score\":" +
                    std::to_string(range(-1000, 1000)) + ".25,\"ok\":" + (chance(0.5) ? "true" : "false") + ",\"note\":\"" + escape(word()) +
                    "\"},\"none\":null}";
    return s;
  }
  std::string bytes(std::size_t n) {
    std::string b(n, '\0');
    for (auto& c : b) c = static_cast<char>(range(0, 255));
    if (n > 2) b[1] = '\0';
    return b;
  }
  // A finite double of any magnitude, with all 17 digits significant.
  double any_double() {
    for (;;) {
      const double d = std::bit_cast<double>(static_cast<std::uint64_t>(range(std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max())));
      if (std::isfinite(d)) return d;
    }
  }
  double money() { return static_cast<double>(range(0, 10000000)) / 100.0; }
  double fraction() { return std::uniform_real_distribution<double>(-1e6, 1e6)(rng_); }

 private:
  static std::string escape(const std::string& s) {
    std::string o;
    for (char c : s) {
      if (c == '"' || c == '\\') o += '\\';
      if (c == '\n') {
        o += "\\n";
        continue;
      }
      if (c == '\r') {
        o += "\\r";
        continue;
      }
      if (c == '\t') {
        o += "\\t";
        continue;
      }
      o += c;
    }
    return o;
  }
  std::mt19937_64 rng_;
  std::vector<std::string> words_;
};

std::string date(gen& g) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "2026-%02d-%02dT%02d:%02d:%02dZ", static_cast<int>(g.range(1, 12)), static_cast<int>(g.range(1, 28)),
                static_cast<int>(g.range(0, 23)), static_cast<int>(g.range(0, 59)), static_cast<int>(g.range(0, 59)));
  return buf;
}

}  // namespace

// Long (~200 lines): the guide-shaped schema and its rows, table after table, read best in order
// (each table's few lines sit next to its CREATE).
guide_db_stats generate_guide_database(const std::string& path, const guide_db_options& o) {
  if (o.tables < 12) throw std::runtime_error("guide db: at least 12 tables");
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) throw std::runtime_error("guide db: " + path + " already exists");
  auto db = backends::open_sqlite(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (!db) throw std::runtime_error("guide db: cannot create " + path);
  sqlite3* raw = db->get();
  exec(raw, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA synchronous=OFF");
  gen g(o.seed, o.sql_text_traps);
  const std::int64_t total = std::max<std::int64_t>(o.rows, 1000);

  exec(raw, R"(
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT, settings JSON, avatar BLOB, created_at TEXT, karma REAL);
CREATE TABLE projects (id INTEGER PRIMARY KEY, owner_id INTEGER NOT NULL REFERENCES users(id), name TEXT NOT NULL, description TEXT,
                       metadata TEXT, budget REAL, external_id INTEGER);
CREATE TABLE tasks (id INTEGER PRIMARY KEY AUTOINCREMENT, project_id INTEGER NOT NULL REFERENCES projects(id),
                    assignee_id INTEGER REFERENCES users(id), title TEXT NOT NULL, body TEXT, current_state TEXT, priority INTEGER,
                    estimate REAL, payload JSON, updated_at TEXT);
CREATE INDEX idx_tasks_state ON tasks(current_state);
CREATE INDEX idx_tasks_project ON tasks(project_id);
CREATE TABLE comments (id INTEGER PRIMARY KEY, task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
                       parent_id INTEGER REFERENCES comments(id), author_id INTEGER REFERENCES users(id), body TEXT, reactions JSON);
CREATE INDEX idx_comments_task ON comments(task_id);
CREATE TABLE labels (name TEXT PRIMARY KEY, color TEXT, weight REAL);
CREATE TABLE task_labels (task_id INTEGER NOT NULL REFERENCES tasks(id), label TEXT NOT NULL REFERENCES labels(name), added_at INTEGER,
                          PRIMARY KEY (task_id, label)) WITHOUT ROWID;
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, snowflake INTEGER NOT NULL, kind TEXT, data JSON, at REAL);
CREATE UNIQUE INDEX idx_events_snowflake ON events(snowflake);
CREATE TABLE attachments (id INTEGER PRIMARY KEY, task_id INTEGER REFERENCES tasks(id), name TEXT, mime TEXT, content BLOB,
                          size INTEGER GENERATED ALWAYS AS (length(content)) VIRTUAL);
CREATE TABLE audit_log (task_id INTEGER, action TEXT, at TEXT);
CREATE TABLE numbers (id INTEGER PRIMARY KEY, i INTEGER, r REAL, anything, note TEXT);
CREATE TABLE texts (id INTEGER PRIMARY KEY, s TEXT);
CREATE TABLE settings_kv (key TEXT NOT NULL, scope TEXT NOT NULL, value JSON, PRIMARY KEY (scope, key));
CREATE VIEW open_tasks AS SELECT id, project_id, title FROM tasks WHERE current_state != 'done';
CREATE TRIGGER tasks_audit AFTER INSERT ON tasks BEGIN INSERT INTO audit_log (task_id, action, at) VALUES (new.id, 'created', new.updated_at); END;
)");
  exec(raw, "BEGIN");
  guide_db_stats st;
  st.tables = o.tables;

  const std::int64_t n_users = std::max<std::int64_t>(5, total / 100);
  const std::int64_t n_projects = std::max<std::int64_t>(3, total / 200);
  const std::int64_t n_tasks = total * 12 / 100;
  const std::int64_t n_comments = total * 10 / 100;
  const std::int64_t n_task_labels = total * 5 / 100;
  const std::int64_t n_events = total * 8 / 100;
  const std::int64_t n_attachments = std::max<std::int64_t>(10, total / 100);
  const std::int64_t n_settings = std::max<std::int64_t>(10, total / 200);
  const std::int64_t n_labels = 20;

  {
    inserter ins(raw, "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?)");
    for (std::int64_t i = 1; i <= n_users; ++i) {
      ins({I(i), T("user" + std::to_string(i) + "@example.com"), T(g.word()), g.chance(0.1) ? N() : T(g.json(i)),
           g.chance(0.2) ? N() : B(g.bytes(static_cast<std::size_t>(g.range(0, 64)))), T(date(g)), R(g.fraction())});
    }
    st.rows += ins.rows();
  }
  {
    inserter ins(raw, "INSERT INTO projects VALUES (?, ?, ?, ?, ?, ?, ?)");
    for (std::int64_t i = 1; i <= n_projects; ++i) {
      ins({I(i), I(g.range(1, n_users)), T("project " + g.word()), T(g.sentence(6)), T(g.json(i)), R(g.money()),
           I((std::int64_t{1} << 60) + g.range(0, 1000000000))});
    }
    st.rows += ins.rows();
  }
  {
    inserter ins(raw, "INSERT INTO tasks (id, project_id, assignee_id, title, body, current_state, priority, estimate, payload, updated_at) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    const char* states[] = {"todo", "doing", "review", "done"};
    for (std::int64_t i = 1; i <= n_tasks; ++i) {
      ins({I(i), I(g.range(1, n_projects)), g.chance(0.2) ? N() : I(g.range(1, n_users)), T(g.sentence(3)), T(g.sentence(12)),
           T(states[g.range(0, 3)]), I(g.range(-5, 5)), g.chance(0.3) ? R(static_cast<double>(g.range(1, 40))) : R(g.fraction()),
           T(g.json(i)), T(date(g))});
    }
    st.rows += ins.rows() * 2;  // and audit_log, by the trigger
    exec(raw, "UPDATE sqlite_sequence SET seq = seq + 1000 WHERE name = 'tasks'");
  }
  {
    inserter ins(raw, "INSERT INTO comments VALUES (?, ?, ?, ?, ?, ?)");
    for (std::int64_t i = 1; i <= n_comments; ++i) {
      ins({I(i), I(g.range(1, n_tasks)), i > 1 && g.chance(0.3) ? I(g.range(1, i - 1)) : N(), I(g.range(1, n_users)), T(g.sentence(8)),
           g.chance(0.5) ? T("[\"👍\",\"🎉\"]") : N()});
    }
    st.rows += ins.rows();
  }
  {
    inserter ins(raw, "INSERT INTO labels VALUES (?, ?, ?)");
    for (std::int64_t i = 0; i < n_labels; ++i) ins({T("label-" + std::to_string(i) + (i % 3 ? "" : " ✨")), T("#" + std::to_string(100000 + i)), R(i * 0.1)});
    st.rows += ins.rows();
  }
  {
    inserter ins(raw, "INSERT INTO task_labels VALUES (?, ?, ?)");
    for (std::int64_t k = 0; k < n_task_labels; ++k) {
      const std::int64_t task = 1 + k / 3 % n_tasks;
      const std::int64_t label = (k % 3 + task * 7) % n_labels;
      ins({I(task), T("label-" + std::to_string(label) + (label % 3 ? "" : " ✨")), I(g.range(0, std::numeric_limits<std::int64_t>::max()))});
    }
    st.rows += ins.rows();
  }
  {
    inserter ins(raw, "INSERT INTO events VALUES (?, ?, ?, ?, ?)");
    for (std::int64_t i = 1; i <= n_events; ++i) {
      ins({I(i), I((std::int64_t{1} << 62) + i * 4099 + g.range(0, 4000)), T(g.word()), T(g.json(i)), R(g.any_double())});
    }
    st.rows += ins.rows();
    exec(raw, "UPDATE sqlite_sequence SET seq = seq + 77 WHERE name = 'events'");
  }
  {
    inserter ins(raw, "INSERT INTO attachments (id, task_id, name, mime, content) VALUES (?, ?, ?, ?, ?)");
    for (std::int64_t i = 1; i <= n_attachments; ++i) {
      std::size_t size = static_cast<std::size_t>(g.range(0, 2048));
      if (o.large_blobs && i <= 2) size = i == 1 ? 120000 : 70000;
      ins({I(i), I(g.range(1, n_tasks)), T("file-" + std::to_string(i) + ".bin"), T("application/octet-stream"),
           i % 17 == 0 ? N() : B(g.bytes(size))});
    }
    st.rows += ins.rows();
  }
  {
    inserter ins(raw, "INSERT INTO numbers VALUES (?, ?, ?, ?, ?)");
    const std::int64_t imin = std::numeric_limits<std::int64_t>::min(), imax = std::numeric_limits<std::int64_t>::max();
    const std::int64_t p53 = std::int64_t{1} << 53;
    std::vector<std::vector<cell>> fixed = {
        {I(imin), R(-0.0), I(imin), T("int64 min")},
        {I(imax), R(0.1), I(imax), T("int64 max")},
        {I(imax - 1), R(1.0 / 3.0), R(3.0), T("whole float in an untyped column")},
        {I(p53 + 1), R(1e308), T("007"), T("2^53 + 1")},
        {I(-p53 - 1), R(5e-324), R(-2.5), T("-(2^53 + 1)")},
        {I(p53), R(std::numeric_limits<double>::infinity()), R(-std::numeric_limits<double>::infinity()), T("infinities")},
        {I(0), R(1e21), R(1e300), T("big whole floats")},
        {I(-1), R(123456789012345680000.0), R(0.30000000000000004), T("17 digits")},
        {N(), N(), N(), N()},
        {I(42), R(4.447782551545296e+135), B(""), T("empty blob in an untyped column")},
    };
    std::int64_t id = 1;
    for (auto& f : fixed) {
      f.insert(f.begin(), I(id++));
      ins(f);
    }
    for (std::int64_t k = 0; k < total / 500; ++k) {
      ins({I(id++), I(g.range(std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max())), R(g.any_double()),
           g.chance(0.5) ? R(g.any_double()) : I(g.range(-p53 * 4, p53 * 4)), T(g.word())});
    }
    st.rows += ins.rows();
  }
  {
    inserter ins(raw, "INSERT INTO texts VALUES (?, ?)");
    std::int64_t id = 1;
    for (const auto& w : g.words()) ins({I(id++), T(w)});
    ins({I(id++), T(std::string(20000, 'x') + " long text " + g.sentence(50))});
    for (std::int64_t k = 0; k < total / 500; ++k) ins({I(id++), T(g.sentence(static_cast<int>(g.range(1, 30))))});
    st.rows += ins.rows();
  }
  {
    inserter ins(raw, "INSERT INTO settings_kv VALUES (?, ?, ?)");
    for (std::int64_t i = 0; i < n_settings; ++i) ins({T("key." + std::to_string(i)), T(i % 2 ? "global" : "user:" + std::to_string(i % 7)), T(g.json(i))});
    st.rows += ins.rows();
  }

  // The remaining tables share what is left of the total, some large, most small.
  std::int64_t left = std::max<std::int64_t>(0, total - st.rows);
  const std::int64_t pool = left;
  const int generic = o.tables - 12;
  std::vector<double> weight(static_cast<std::size_t>(generic));
  double sum = 0;
  for (auto& w : weight) sum += (w = std::pow(static_cast<double>(g.range(1, 100)), 2.0));
  for (int k = 0; k < generic; ++k) {
    const std::string name = "module_" + std::string(k < 9 ? "0" : "") + std::to_string(k + 1);
    const bool with_blob = k % 3 == 0;
    const bool with_big = k % 4 == 1;
    exec(raw, "CREATE TABLE " + name + " (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), project_id INTEGER REFERENCES projects(id), " +
                  "code TEXT NOT NULL, amount REAL, count INTEGER, " + (with_big ? "ref INTEGER, " : "") + "config JSON, note TEXT" +
                  (with_blob ? ", data BLOB" : "") + ", created_at TEXT)");
    if (k % 5 == 0) exec(raw, "CREATE INDEX idx_" + name + "_user ON " + name + "(user_id)");
    const std::int64_t n = k == generic - 1 ? left
                                            : std::min<std::int64_t>(left, static_cast<std::int64_t>(weight[static_cast<std::size_t>(k)] / sum *
                                                                                                    static_cast<double>(pool)));
    std::string sql = "INSERT INTO " + name + " VALUES (?, ?, ?, ?, ?, ?, ?, ?" + (with_big ? ", ?" : "") + (with_blob ? ", ?" : "") + ", ?)";
    inserter ins(raw, sql);
    for (std::int64_t i = 1; i <= n; ++i) {
      std::vector<cell> c = {I(i), g.chance(0.1) ? N() : I(g.range(1, n_users)), I(g.range(1, n_projects)), T("C-" + std::to_string(g.range(0, 99999))),
                             g.chance(0.5) ? R(g.money()) : R(g.fraction()), I(g.range(-1000000, 1000000))};
      if (with_big) c.push_back(I(g.range(std::int64_t{1} << 54, std::numeric_limits<std::int64_t>::max())));
      c.push_back(g.chance(0.2) ? N() : T(g.json(i)));
      c.push_back(T(g.sentence(static_cast<int>(g.range(0, 6)))));
      if (with_blob) c.push_back(g.chance(0.3) ? N() : B(g.bytes(static_cast<std::size_t>(g.range(0, 200)))));
      c.push_back(T(date(g)));
      ins(c);
    }
    st.rows += ins.rows();
    left -= ins.rows();
  }
  exec(raw, "COMMIT");
  return st;
}

}  // namespace tandem::tools
