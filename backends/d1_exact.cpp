#include "backends/d1_exact.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

#include "backends/journal.hpp"

namespace tandem::backends {
namespace {

using protocol::errc;
using protocol::error;
using protocol::value;

error internal(std::string m) { return error{errc::internal, std::move(m), "d1", {}}; }

// ---- a small SQL tokenizer: enough to find statement ends, RETURNING and PRAGMA parts ----------

enum class tk { word, quoted, string, number, punct, end };

struct token {
  std::size_t begin = 0, end = 0;
  tk kind = tk::end;
};

bool ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || static_cast<unsigned char>(c) >= 0x80; }
bool ident_char(char c) { return ident_start(c) || std::isdigit(static_cast<unsigned char>(c)); }

// The token at or after `i`, skipping whitespace and comments.
token next_token(std::string_view s, std::size_t i) {
  for (;;) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '/')) {
      if (const auto skip = skip_quoted_token(s, i); skip != i) {
        i = skip;
        continue;
      }
    }
    break;
  }
  token t{i, i, tk::end};
  if (i >= s.size()) return t;
  const char c = s[i];
  if (c == '\'') {
    t.kind = tk::string;
    t.end = skip_quoted_token(s, i);
  } else if (c == '"' || c == '`' || c == '[') {
    t.kind = tk::quoted;
    t.end = skip_quoted_token(s, i);
  } else if ((c == 'x' || c == 'X') && i + 1 < s.size() && s[i + 1] == '\'') {
    t.kind = tk::string;  // a blob literal
    t.end = skip_quoted_token(s, i + 1);
  } else if (ident_start(c)) {
    t.kind = tk::word;
    t.end = i + 1;
    while (t.end < s.size() && (ident_char(s[t.end]) || s[t.end] == '$')) ++t.end;
  } else if (std::isdigit(static_cast<unsigned char>(c)) || (c == '.' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1])))) {
    t.kind = tk::number;
    t.end = i + 1;
    while (t.end < s.size()) {
      const char d = s[t.end];
      if (std::isalnum(static_cast<unsigned char>(d)) || d == '.' || d == '_') {
        ++t.end;
      } else if ((d == '+' || d == '-') && (s[t.end - 1] == 'e' || s[t.end - 1] == 'E')) {
        ++t.end;
      } else {
        break;
      }
    }
  } else {
    t.kind = tk::punct;
    t.end = i + 1;
  }
  return t;
}

bool is_word(std::string_view s, const token& t, std::string_view word) {
  if (t.kind != tk::word || t.end - t.begin != word.size()) return false;
  for (std::size_t k = 0; k < word.size(); ++k) {
    if (std::toupper(static_cast<unsigned char>(s[t.begin + k])) != word[k]) return false;
  }
  return true;
}

bool is_punct(std::string_view s, const token& t, char c) { return t.kind == tk::punct && s[t.begin] == c; }

// The statement without its terminating ';' and what follows it (comments, blanks).
std::string_view statement_body(std::string_view sql) {
  std::size_t end = 0;
  for (token t = next_token(sql, 0); t.kind != tk::end; t = next_token(sql, t.end)) {
    if (is_punct(sql, t, ';')) break;
    end = t.end;
  }
  return sql.substr(0, end);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Whether `sql` holds a parameter: ?, ?NNN, :name, @name or $name.
bool has_placeholder(std::string_view sql) {
  for (token t = next_token(sql, 0); t.kind != tk::end; t = next_token(sql, t.end)) {
    if (t.kind != tk::punct) continue;
    const char c = sql[t.begin];
    if (c == '?') return true;
    if ((c == ':' || c == '@' || c == '$') && t.end < sql.size() && ident_char(sql[t.end])) return true;
  }
  return false;
}

// The select list that carries `exprs` exactly: the row's type letters, then one cell each.
std::string typed_columns(const std::vector<std::string>& exprs) {
  std::string types, cells;
  for (std::size_t k = 0; k < exprs.size(); ++k) {
    const auto& e = exprs[k];
    types += (k ? "||substr(typeof(" : "substr(typeof(") + e + "),1,1)";
    cells += ",CASE typeof(" + e + ") WHEN 'integer' THEN IIF(" + e + " BETWEEN -9007199254740992 AND 9007199254740992," + e +
             ",CAST(" + e + " AS TEXT)) WHEN 'real' THEN CASE WHEN " + e + "=9e999 THEN 'Inf' WHEN " + e +
             "=-9e999 THEN '-Inf' WHEN " + e + "=0.0 AND atan2(" + e + ",-1.0)<0.0 THEN '-0.0' ELSE " + e + " END ELSE " + e +
             " END AS _" + std::to_string(k);
  }
  return types + " AS _t" + cells;
}

// A pragma's argument as an SQL string literal (names and quoted names become their text).
std::string pragma_argument(std::string_view s, const token& t) {
  const auto text = s.substr(t.begin, t.end - t.begin);
  if (t.kind == tk::string || t.kind == tk::number) return std::string(text);
  std::string name;
  if (t.kind == tk::quoted && text.size() >= 2) {
    const char close = text.front() == '[' ? ']' : text.front();
    for (std::size_t k = 1; k + 1 < text.size(); ++k) {
      name.push_back(text[k]);
      if (text[k] == close && close != ']' && k + 2 < text.size() && text[k + 1] == close) ++k;
    }
  } else {
    name = std::string(text);
  }
  std::string out = "'";
  for (char c : name) {
    out.push_back(c);
    if (c == '\'') out.push_back('\'');
  }
  return out + "'";
}

outcome<value> typed_cell(char type, value v) {
  auto mismatch = [&] { return internal(std::string("D1 returned a cell that does not match its type letter '") + type + "'"); };
  switch (type) {
    case 'n':
      if (std::holds_alternative<std::monostate>(v)) return v;
      return mismatch();
    case 'i':
      if (std::holds_alternative<std::int64_t>(v)) return v;
      if (const auto* s = std::get_if<std::string>(&v)) {
        std::int64_t i = 0;
        const auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), i);
        if (ec == std::errc() && end == s->data() + s->size()) return value{i};
      }
      return mismatch();
    case 'r':
      if (std::holds_alternative<double>(v)) return v;
      // A whole number: JavaScript printed it without '.', and the nearest double to those
      // digits is the REAL itself (int64 to double conversion rounds to nearest).
      if (const auto* i = std::get_if<std::int64_t>(&v)) return value{static_cast<double>(*i)};
      if (const auto* s = std::get_if<std::string>(&v)) {
        if (*s == "Inf") return value{std::numeric_limits<double>::infinity()};
        if (*s == "-Inf") return value{-std::numeric_limits<double>::infinity()};
        if (*s == "-0.0") return value{-0.0};
      }
      return mismatch();
    case 't':
      if (std::holds_alternative<std::string>(v)) return v;
      return mismatch();
    case 'b':
      if (std::holds_alternative<protocol::blob>(v)) return v;
      return mismatch();
    default: return mismatch();
  }
}

}  // namespace

std::optional<std::string> typed_query_sql(std::string_view sql, std::size_t columns, bool materialize) {
  const auto body = statement_body(sql);
  if (columns == 0 || body.empty()) return std::nullopt;
  std::string names;
  std::vector<std::string> refs;
  refs.reserve(columns);
  for (std::size_t k = 0; k < columns; ++k) {
    refs.push_back("c" + std::to_string(k));
    names += (k ? "," : "") + refs.back();
  }
  std::string out = "WITH _tandem_exact(" + names + ") AS " + (materialize ? "MATERIALIZED " : "") + "(\n";
  out.append(body);
  out += "\n) SELECT " + typed_columns(refs) + " FROM _tandem_exact";
  return out;
}

std::optional<std::string> typed_returning_sql(std::string_view sql, const std::vector<std::string>& columns) {
  const auto body = statement_body(sql);
  // The last RETURNING outside parentheses: the clause ends the statement.
  std::optional<token> returning;
  int depth = 0;
  for (token t = next_token(body, 0); t.kind != tk::end; t = next_token(body, t.end)) {
    if (is_punct(body, t, '(')) ++depth;
    if (is_punct(body, t, ')')) --depth;
    if (depth == 0 && is_word(body, t, "RETURNING")) returning = t;
  }
  if (!returning || columns.empty()) return std::nullopt;
  const auto list = body.substr(returning->end);
  if (has_placeholder(list)) return std::nullopt;
  std::string lowered(list);
  for (auto& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lowered.find("random") != std::string::npos) return std::nullopt;

  // The items, split at commas outside parentheses.
  std::vector<std::vector<token>> items(1);
  depth = 0;
  for (token t = next_token(list, 0); t.kind != tk::end; t = next_token(list, t.end)) {
    if (is_punct(list, t, '(')) ++depth;
    if (is_punct(list, t, ')')) --depth;
    if (depth == 0 && is_punct(list, t, ',')) {
      items.emplace_back();
      continue;
    }
    items.back().push_back(t);
  }
  std::vector<std::string> exprs;
  bool star_seen = false;
  for (const auto& item : items) {
    if (item.empty()) return std::nullopt;
    if (item.size() == 1 && is_punct(list, item[0], '*')) {
      if (star_seen || columns.size() < items.size()) return std::nullopt;
      star_seen = true;
      const std::size_t expanded = columns.size() - (items.size() - 1);
      for (std::size_t k = 0; k < expanded; ++k) exprs.push_back(quote_identifier(columns[exprs.size()]));
      continue;
    }
    std::size_t end = item.back().end;
    if (item.size() >= 3 && is_word(list, item[item.size() - 2], "AS") &&
        (item.back().kind == tk::word || item.back().kind == tk::quoted || item.back().kind == tk::string)) {
      end = item[item.size() - 3].end;
    }
    exprs.push_back("(" + std::string(trim(list.substr(item.front().begin, end - item.front().begin))) + ")");
  }
  if (exprs.size() != columns.size()) return std::nullopt;
  return std::string(body.substr(0, returning->begin)) + "RETURNING " + typed_columns(exprs);
}

std::optional<std::string> pragma_as_select(std::string_view sql) {
  const auto body = statement_body(sql);
  token t = next_token(body, 0);
  if (!is_word(body, t, "PRAGMA")) return std::nullopt;
  t = next_token(body, t.end);
  std::string schema;
  token name = t;
  if (t.kind != tk::word && t.kind != tk::quoted) return std::nullopt;
  t = next_token(body, t.end);
  if (is_punct(body, t, '.')) {
    schema = std::string(body.substr(name.begin, name.end - name.begin)) + ".";
    name = next_token(body, t.end);
    t = next_token(body, name.end);
  }
  if (name.kind != tk::word) return std::nullopt;
  for (std::size_t k = name.begin; k < name.end; ++k) {
    if (!std::isalnum(static_cast<unsigned char>(body[k])) && body[k] != '_') return std::nullopt;
  }
  std::string out = "SELECT * FROM " + schema + "pragma_" + std::string(body.substr(name.begin, name.end - name.begin));
  if (t.kind == tk::end) return out;
  if (!is_punct(body, t, '(')) return std::nullopt;
  t = next_token(body, t.end);
  std::string sign;
  if (is_punct(body, t, '-') || is_punct(body, t, '+')) {
    sign = body[t.begin];
    t = next_token(body, t.end);
    if (t.kind != tk::number) return std::nullopt;
  }
  if (t.kind == tk::end || t.kind == tk::punct) return std::nullopt;
  out += "(" + sign + pragma_argument(body, t) + ")";
  t = next_token(body, t.end);
  if (!is_punct(body, t, ')')) return std::nullopt;
  if (next_token(body, t.end).kind != tk::end) return std::nullopt;
  return out;
}

outcome<protocol::query_result> decode_typed(protocol::query_result typed, const std::vector<std::string>& columns) {
  protocol::query_result out;
  out.columns = columns;
  out.meta = std::move(typed.meta);
  out.rows.reserve(typed.rows.size());
  const std::size_t n = columns.size();
  for (auto& raw : typed.rows) {
    const auto* types = raw.empty() ? nullptr : std::get_if<std::string>(&raw[0]);
    if (types == nullptr || types->size() != n || raw.size() != n + 1) {
      return internal("D1 returned a row of an unexpected shape for a typed query (" + std::to_string(raw.size()) +
                      " cells for " + std::to_string(n) + " columns)");
    }
    auto& row = out.rows.emplace_back();
    row.reserve(n);
    for (std::size_t k = 0; k < n; ++k) {
      auto v = typed_cell((*types)[k], std::move(raw[k + 1]));
      if (!v) return v.error();
      row.push_back(std::move(*v));
    }
  }
  return out;
}

std::string typed_select_list(const std::vector<std::string>& exprs) { return exprs.empty() ? "'' AS _t" : typed_columns(exprs); }

bool may_differ(const protocol::value& v) {
  return std::holds_alternative<std::monostate>(v) || std::holds_alternative<std::int64_t>(v) || std::holds_alternative<double>(v);
}

std::shared_ptr<const exact_plan> exact_planner::plan(const std::string& sql, const statement_info& info, sqlite_connection& shadow) {
  if (auto it = cache_.find(sql); it != cache_.end()) return it->second;
  auto p = std::make_shared<exact_plan>();
  p->read = info.kind == statement_kind::read;
  p->last_row_id = !p->read;
  const std::size_t n = info.columns.size();
  // A candidate is taken only when SQLite compiles it as the same kind with one more column.
  auto take = [&](std::optional<std::string> candidate) {
    if (!candidate) return;
    auto checked = shadow.inspect(*candidate);
    if (!checked || checked->kind != info.kind || checked->columns.size() != n + 1) return;
    p->typed = true;
    p->sql = std::move(*candidate);
    p->columns = info.columns;
  };
  if (n > 0 && p->read) {
    const auto keyword = first_keyword(sql);
    if (keyword == "SELECT" || keyword == "VALUES" || keyword == "WITH") {
      // Flattening the CTE copies the client's expressions into each reference: materialize
      // when a copy could give another value (random()) or repeat a subquery.
      take(typed_query_sql(sql, n, !info.nondeterministic.empty() || info.selects > 1));
    } else if (keyword == "PRAGMA") {
      auto select = pragma_as_select(sql);
      auto same = select ? shadow.inspect(*select) : outcome<statement_info>(internal("not a pragma with a select form"));
      if (same && same->kind == statement_kind::read && same->columns == info.columns) take(typed_query_sql(*select, n, false));
    }
  } else if (n > 0) {
    take(typed_returning_sql(sql, info.columns));
  }
  if (cache_.size() >= capacity_) cache_.clear();
  cache_.emplace(sql, p);
  return p;
}

outcome<exact_statement> to_exact_d1_statement(const protocol::statement& st, std::shared_ptr<const exact_plan> plan,
                                               const d1_limits& limits) {
  if (plan && plan->typed) {
    if (auto typed = to_d1_statement(plan->sql, st.params, limits)) return exact_statement{std::move(*typed), std::move(plan)};
    // Over a limit in its typed form only: the client's SQL as it is.
    auto plain = std::make_shared<exact_plan>(*plan);
    plain->typed = false;
    plain->sql.clear();
    plain->columns.clear();
    plan = std::move(plain);
  }
  auto converted = to_d1_statement(st.sql, st.params, limits);
  if (!converted) return converted.error();
  return exact_statement{std::move(*converted), std::move(plan)};
}

bool is_stale_typed_form(const protocol::error& e) {
  return e.code == errc::sql_error && e.message.find("_tandem_exact") != std::string::npos;
}

outcome<std::vector<protocol::query_result>> restore_exact(std::vector<protocol::query_result> results,
                                                           const std::vector<std::shared_ptr<const exact_plan>>& plans,
                                                           bool is_batch) {
  constexpr std::int64_t k_two53 = std::int64_t{1} << 53;
  std::vector<protocol::query_result> out;
  out.reserve(results.size());
  std::size_t at = 0;
  for (const auto& plan : plans) {
    if (at >= results.size()) return internal("D1 answered fewer results than tandem sent statements");
    auto r = std::move(results[at++]);
    if (plan && plan->typed) {
      auto decoded = decode_typed(std::move(r), plan->columns);
      if (!decoded) return decoded.error();
      r = std::move(*decoded);
    } else {
      for (const auto& row : r.rows) {
        for (const auto& cell : row) {
          if (may_differ(cell)) r.meta.exact = false;
        }
        if (!r.meta.exact) break;
      }
    }
    if (plan && plan->last_row_id) {
      if (at >= results.size()) return internal("D1 did not answer the last_insert_rowid() of a write");
      const auto& companion = results[at++];
      const auto* text = companion.rows.size() == 1 && companion.rows[0].size() == 1 ? std::get_if<std::string>(&companion.rows[0][0]) : nullptr;
      std::int64_t id = 0;
      if (text == nullptr || std::from_chars(text->data(), text->data() + text->size(), id).ec != std::errc()) {
        return internal("D1 answered the last_insert_rowid() of a write with something that is not an integer");
      }
      r.meta.last_row_id = id;
    } else if (plan && plan->read && !is_batch) {
      r.meta.last_row_id = 0;  // a lone read on SQLite runs on a read-only connection
    } else if (r.meta.last_row_id >= k_two53 || r.meta.last_row_id <= -k_two53) {
      r.meta.exact = false;  // D1's JavaScript number, perhaps rounded
    }
    out.push_back(std::move(r));
  }
  while (at < results.size()) out.push_back(std::move(results[at++]));
  return out;
}

}  // namespace tandem::backends
