#include "tools/move/schema.hpp"

#include <algorithm>
#include <cctype>
#include <set>

namespace tandem::tools {

namespace {

bool starts_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != std::tolower(static_cast<unsigned char>(prefix[i]))) return false;
  }
  return true;
}

bool equals_nocase(std::string_view a, std::string_view b) { return a.size() == b.size() && starts_nocase(a, b); }

std::string text_of(const value& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return {};
}

std::int64_t int_of(const value& v) {
  if (const auto* i = std::get_if<std::int64_t>(&v)) return *i;
  if (const auto* d = std::get_if<double>(&v)) return static_cast<std::int64_t>(*d);
  return 0;
}

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

// The module of "CREATE VIRTUAL TABLE x USING fts5(...)", lower-cased.
std::string virtual_module(std::string_view sql) {
  const std::string u = upper(std::string(sql));
  const auto at = u.find(" USING ");
  if (at == std::string::npos) return {};
  std::size_t i = at + 7;
  while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i]))) ++i;
  std::string m;
  while (i < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_'))
    m.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(sql[i++]))));
  return m;
}

std::string predicate(const table_info& t, const char* op) {
  const auto names = t.key_names();
  if (names.size() == 1) return quote_name(names[0]) + " " + op + " ?";
  std::string l = "(", r = "(";
  for (std::size_t i = 0; i < names.size(); ++i) {
    l += (i ? ", " : "") + quote_name(names[i]);
    r += i ? ", ?" : "?";
  }
  return l + ") " + op + " " + r + ")";
}

}  // namespace

bool is_internal_name(std::string_view name) {
  return starts_nocase(name, "sqlite_") || starts_nocase(name, "_cf_") || starts_nocase(name, "_tandem_");
}

bool is_d1_reserved_name(std::string_view name) { return starts_nocase(name, "_cf_"); }

std::vector<std::string> table_info::key_names() const {
  std::vector<std::string> out;
  for (auto k : key) out.push_back(copy_columns[k]);
  return out;
}

std::string table_info::key_expr() const {
  std::string s;
  for (auto k : key) s += (s.empty() ? "" : ", ") + quote_name(copy_columns[k]);
  return s;
}

row table_info::key_of(const row& r) const {
  row out;
  for (auto k : key) out.push_back(r.at(k));
  return out;
}

std::string table_info::after_predicate() const { return predicate(*this, ">"); }
std::string table_info::through_predicate() const { return predicate(*this, "<="); }
std::string table_info::equals_predicate() const { return predicate(*this, "="); }

const table_info* database_schema::find(std::string_view table) const {
  for (const auto& t : tables)
    if (equals_nocase(t.name, table)) return &t;
  return nullptr;
}

std::vector<schema_object> database_schema::objects() const {
  std::vector<schema_object> out = indexes;
  out.insert(out.end(), views.begin(), views.end());
  out.insert(out.end(), triggers.begin(), triggers.end());
  return out;
}

namespace {

// A table's columns and the tables its foreign keys reference, from pragma_table_xinfo and
// pragma_foreign_key_list.
void add_columns(table_info& t, const protocol::query_result& columns, const protocol::query_result& foreign_keys) {
  for (const auto& c : columns.rows) {
    column_info col{text_of(c[0]), text_of(c[1]), static_cast<int>(int_of(c[2])), false, false};
    const auto hidden = int_of(c[3]);
    col.generated = hidden == 2 || hidden == 3;
    col.hidden = hidden == 1;
    t.columns.push_back(std::move(col));
  }
  for (const auto& f : foreign_keys.rows) {
    const auto parent = text_of(f[0]);
    if (!equals_nocase(parent, t.name)) t.parents.push_back(parent);
  }
}

// What is copied and the key that orders the rows: the rowid (under a name no column uses), the
// INTEGER PRIMARY KEY that is the rowid, or the PRIMARY KEY of a WITHOUT ROWID table.
outcome<void> choose_key(table_info& t) {
  std::vector<std::size_t> pk;
  std::vector<std::string> stored;
  for (const auto& c : t.columns) {
    if (c.generated || c.hidden) continue;
    stored.push_back(c.name);
    if (c.pk > 0) pk.push_back(stored.size() - 1);
  }
  std::sort(pk.begin(), pk.end(), [&](std::size_t a, std::size_t b) {
    auto pos = [&](std::size_t k) {
      for (const auto& c : t.columns)
        if (c.name == stored[k]) return c.pk;
      return 0;
    };
    return pos(a) < pos(b);
  });
  auto is_integer_pk = [&](const std::string& name) {
    for (const auto& c : t.columns)
      if (c.name == name) return upper(c.type) == "INTEGER";
    return false;
  };
  auto uses = [&](std::string_view name) {
    return std::any_of(t.columns.begin(), t.columns.end(), [&](const column_info& c) { return equals_nocase(c.name, name); });
  };
  if (t.without_rowid) {
    t.copy_columns = stored;
    t.key = pk;
  } else if (!t.is_virtual && pk.size() == 1 && is_integer_pk(stored[pk[0]])) {
    t.copy_columns = stored;  // INTEGER PRIMARY KEY: the column is the rowid
    t.key = pk;
  } else {
    std::string alias;
    for (const char* a : {"rowid", "_rowid_", "oid"}) {
      if (!uses(a)) {
        alias = a;
        break;
      }
    }
    if (!alias.empty()) {
      t.copy_columns.push_back(alias);
      t.copy_columns.insert(t.copy_columns.end(), stored.begin(), stored.end());
      t.key = {0};
    } else if (!pk.empty()) {
      t.copy_columns = stored;
      t.key = pk;
    } else {
      return error{errc::unsupported,
                   "table " + t.name + " has columns named rowid, _rowid_ and oid and no PRIMARY KEY: its rows cannot be told apart", {}, {}};
    }
  }
  return {};
}

// Parents first (Kahn), keeping the original order among equals; a cycle keeps its order.
void order_by_foreign_keys(database_schema& out) {
  std::vector<table_info> ordered;
  std::vector<bool> placed(out.tables.size(), false);
  for (bool progress = true; progress;) {
    progress = false;
    for (std::size_t i = 0; i < out.tables.size(); ++i) {
      if (placed[i]) continue;
      const bool ready = std::all_of(out.tables[i].parents.begin(), out.tables[i].parents.end(), [&](const std::string& p) {
        for (std::size_t j = 0; j < out.tables.size(); ++j)
          if (equals_nocase(out.tables[j].name, p)) return static_cast<bool>(placed[j]);
        return true;  // a table outside the copy
      });
      if (ready) {
        placed[i] = true;
        ordered.push_back(out.tables[i]);
        progress = true;
      }
    }
  }
  for (std::size_t i = 0; i < out.tables.size(); ++i) {
    if (placed[i]) continue;
    out.warnings.push_back("table " + out.tables[i].name + " is in a foreign-key cycle: its rows are copied with the checks deferred to each batch's commit");
    ordered.push_back(out.tables[i]);
  }
  out.tables = std::move(ordered);
}

}  // namespace

outcome<database_schema> read_schema(reader& r, const schema_filter& filter) {
  auto master = r.query_one("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid");
  if (!master) return master.error();
  auto list = r.query_one("SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main'");
  if (!list) return list.error();
  std::map<std::string, std::pair<std::string, bool>> kinds;  // name -> (type, without rowid)
  for (const auto& row : list->rows) kinds[text_of(row[0])] = {text_of(row[1]), int_of(row[2]) != 0};

  auto wanted = [&](const std::string& table) {
    if (filter.tables.empty()) return true;
    return std::any_of(filter.tables.begin(), filter.tables.end(), [&](const std::string& t) { return equals_nocase(t, table); });
  };
  auto skipped = [&](const std::string& name) {
    if (filter.include_cf && is_d1_reserved_name(name)) return false;
    return is_internal_name(name);
  };

  database_schema out;
  bool has_sequence = false;
  for (const auto& row : master->rows) {
    schema_object o{text_of(row[0]), text_of(row[1]), text_of(row[2]), text_of(row[3])};
    if (o.name == "sqlite_sequence") has_sequence = true;
    if (o.sql.empty() || skipped(o.name) || skipped(o.table)) continue;
    if (o.type == "table") {
      const auto kind = kinds.find(o.name);
      if (kind != kinds.end() && kind->second.first == "shadow") continue;  // an FTS5/R*Tree's storage
      if (!wanted(o.name)) continue;
      table_info t;
      t.name = o.name;
      t.sql = o.sql;
      t.is_virtual = kind != kinds.end() && kind->second.first == "virtual";
      t.without_rowid = kind != kinds.end() && kind->second.second;
      out.tables.push_back(std::move(t));
    } else if (o.type == "index" || o.type == "trigger") {
      if (!wanted(o.table)) continue;
      (o.type == "index" ? out.indexes : out.triggers).push_back(std::move(o));
    } else if (o.type == "view") {
      if (!filter.tables.empty()) continue;  // a view may read any table: only with the whole schema
      out.views.push_back(std::move(o));
    }
  }
  for (const auto& t : filter.tables) {
    if (!out.find(t)) return error{errc::bad_request, "no table named '" + t + "' in " + r.describe(), {}, {}};
  }

  // Columns and foreign keys of every table, in one round trip on D1.
  std::vector<protocol::statement> sts;
  for (const auto& t : out.tables) {
    protocol::statement cols{"SELECT name, type, pk, hidden FROM pragma_table_xinfo(?) ORDER BY cid", {}};
    cols.params.positional = {value{t.name}};
    protocol::statement fks{"SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?)", {}};
    fks.params.positional = {value{t.name}};
    sts.push_back(std::move(cols));
    sts.push_back(std::move(fks));
  }
  if (has_sequence && filter.tables.empty()) sts.push_back({"SELECT name, seq FROM sqlite_sequence ORDER BY name", {}});
  std::vector<protocol::query_result> details;
  if (!sts.empty()) {
    auto d = r.query(std::move(sts));
    if (!d) return d.error();
    details = std::move(*d);
  }
  for (std::size_t i = 0; i < out.tables.size(); ++i) {
    add_columns(out.tables[i], details[2 * i], details[2 * i + 1]);
    if (auto ok = choose_key(out.tables[i]); !ok) return ok.error();
  }
  if (has_sequence && filter.tables.empty()) {
    for (const auto& s : details.back().rows) {
      const auto name = text_of(s[0]);
      if (out.find(name)) out.sequences.emplace_back(name, int_of(s[1]));
    }
  }

  order_by_foreign_keys(out);
  return out;
}

std::vector<std::string> d1_problems(const database_schema& schema) {
  std::vector<std::string> out;
  auto reserved = [](const std::string& kind, const std::string& name) {
    return kind + " " + name + ": D1 reserves names starting with _cf_ (rename it before migrating)";
  };
  for (const auto& t : schema.tables) {
    if (is_d1_reserved_name(t.name)) out.push_back(reserved("table", t.name));
    if (t.columns.size() > 100)
      out.push_back("table " + t.name + " has " + std::to_string(t.columns.size()) + " columns: D1 allows at most 100");
    if (t.is_virtual) {
      const auto m = virtual_module(t.sql);
      if (m != "fts5" && m != "fts5vocab" && m != "rtree" && m != "rtree_i32")
        out.push_back("virtual table " + t.name + " uses the module '" + m + "': D1 allows only fts5 and rtree");
    }
  }
  for (const auto& o : schema.objects()) {
    if (is_d1_reserved_name(o.name)) out.push_back(reserved(o.type, o.name));
  }
  return out;
}

std::string normalize_sql(std::string_view sql) {
  std::string out;
  char quote = 0;
  bool space = false;
  for (char c : sql) {
    if (quote) {
      out += c;
      if (c == quote) quote = 0;
      continue;
    }
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = true;
      continue;
    }
    if (space && !out.empty()) out += ' ';
    space = false;
    out += c;
    if (c == '\'' || c == '"' || c == '`') quote = c;
    if (c == '[') quote = ']';
  }
  return out;
}

}  // namespace tandem::tools
