#include "backends/d1_statement.hpp"

#include <sqlite3.h>

#include <cctype>
#include <charconv>
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "protocol/codec.hpp"
#include "protocol/text.hpp"

namespace tandem::backends {
namespace {

using protocol::errc;
using protocol::error;

error bad(std::string m) { return error{errc::bad_request, std::move(m), "d1", {}}; }
error unsupported(std::string m) { return error{errc::unsupported, std::move(m), "d1", {}}; }

bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || static_cast<unsigned char>(c) >= 0x80; }

// Where the token starting at `i` ends, for the tokens that can hide a '?', ':' or ';':
// strings, quoted identifiers and comments. Returns i when there is no such token at i.
std::size_t skip_quoted(std::string_view s, std::size_t i) {
  const char c = s[i];
  auto until = [&](char close) {
    for (std::size_t j = i + 1; j < s.size(); ++j) {
      if (s[j] == close) {
        if (close != ']' && j + 1 < s.size() && s[j + 1] == close) {
          ++j;  // '' or "" escapes
          continue;
        }
        return j + 1;
      }
    }
    return s.size();
  };
  if (c == '\'' || c == '"' || c == '`') return until(c);
  if (c == '[') return until(']');
  if (c == '-' && i + 1 < s.size() && s[i + 1] == '-') {
    const auto nl = s.find('\n', i);
    return nl == std::string_view::npos ? s.size() : nl + 1;
  }
  if (c == '/' && i + 1 < s.size() && s[i + 1] == '*') {
    const auto end = s.find("*/", i + 2);
    return end == std::string_view::npos ? s.size() : end + 2;
  }
  return i;
}

struct param_ref {
  std::size_t begin, end;  // the placeholder's text in the SQL
  int index;               // SQLite's parameter index
  std::string name;        // with its prefix; empty for ? and ?NNN
};

// Finds every parameter placeholder and numbers it the way SQLite does: `?` takes the next
// index, `?NNN` index NNN, a named parameter the next index on first use and the same one after.
std::vector<param_ref> find_params(std::string_view sql) {
  std::vector<param_ref> refs;
  std::map<std::string, int, std::less<>> named;
  int max_index = 0;
  for (std::size_t i = 0; i < sql.size();) {
    if (const auto skip = skip_quoted(sql, i); skip != i) {
      i = skip;
      continue;
    }
    const char c = sql[i];
    if (c == '?') {
      std::size_t j = i + 1;
      while (j < sql.size() && std::isdigit(static_cast<unsigned char>(sql[j]))) ++j;
      int index = max_index + 1;
      if (j > i + 1) std::from_chars(sql.data() + i + 1, sql.data() + j, index);
      max_index = std::max(max_index, index);
      refs.push_back({i, j, index, {}});
      i = j;
    } else if ((c == ':' || c == '@' || c == '$') && i + 1 < sql.size() && ident_char(sql[i + 1])) {
      std::size_t j = i + 1;
      while (j < sql.size() && ident_char(sql[j])) ++j;
      std::string name(sql.substr(i, j - i));
      auto it = named.find(name);
      if (it == named.end()) it = named.emplace(name, ++max_index).first;
      refs.push_back({i, j, it->second, name});
      i = j;
    } else if (ident_char(c)) {
      // Skip whole words so that x'..' and names with '$' are not misread.
      std::size_t j = i + 1;
      while (j < sql.size() && (ident_char(sql[j]) || sql[j] == '$')) ++j;
      if ((c == 'x' || c == 'X') && j == i + 1 && j < sql.size() && sql[j] == '\'') {
        i = skip_quoted(sql, j);
        continue;
      }
      i = j;
    } else {
      ++i;
    }
  }
  return refs;
}

// The literal for a value that cannot travel exactly as a JSON parameter, if it is one. Every
// integer is one: D1 binds a JSON number as REAL in some runtimes (42 arrives as 42.0, and a
// TEXT column then holds '42.0'), and beyond 2^53 it is rounded on the way. As (n + 0): like a
// bound value it has no affinity (CAST(n AS INTEGER) has INTEGER affinity, so `text_col = 42`
// would match '42.0' and ' 42', which SQLite's `text_col = ?` does not), and unlike a bare (n) it
// is no column number in ORDER BY or GROUP BY. -2^63 is written as (-2^63+1) - 1.
std::optional<std::string> literal_for(const protocol::value& v) {
  if (const auto* i = std::get_if<std::int64_t>(&v)) {
    if (*i == std::numeric_limits<std::int64_t>::min()) return std::string("(-9223372036854775807 - 1)");
    return "(" + std::to_string(*i) + " + 0)";
  }
  if (const auto* d = std::get_if<double>(&v)) {
    if (std::isfinite(*d) && *d != std::trunc(*d)) return std::nullopt;  // has a fraction: exact in JSON
    if (std::isnan(*d)) return std::string("(NULL)");
    if (std::isinf(*d)) return std::string(*d > 0 ? "(9e999)" : "(-9e999)");
    return "(" + exact_float_literal(*d) + ")";
  }
  if (const auto* b = std::get_if<protocol::blob>(&v)) {
    std::string s = "(X'";
    protocol::append_hex(s, b->bytes);
    return s + "')";
  }
  return std::nullopt;
}

// A literal for a value that travels fine as a parameter, for statements with more parameters
// than D1 binds: text as a quoted string (when it is valid UTF-8 without NUL, which the JSON
// request carries unchanged), a float as its exact literal. nullopt when there is none.
std::optional<std::string> overflow_literal(const protocol::value& v) {
  if (const auto* s = std::get_if<std::string>(&v)) {
    if (s->find('\0') != std::string::npos || !protocol::is_valid_utf8(*s)) return std::nullopt;
    std::string out = "'";
    for (char c : *s) {
      out += c;
      if (c == '\'') out += '\'';
    }
    return out + "'";
  }
  if (const auto* d = std::get_if<double>(&v)) return "(" + exact_float_literal(*d) + ")";
  if (std::holds_alternative<std::monostate>(v)) return std::string("NULL");
  return std::nullopt;
}

}  // namespace

std::string exact_float_literal(double d) {
  constexpr double k_two53 = 9007199254740992.0;
  if (d == std::trunc(d) && std::fabs(d) < k_two53) {
    std::string s;
    protocol::append_value(s, protocol::value{d});  // the integer's digits and ".0": exact
    return s;
  }
  // |d| = m * 2^e with m an integer below 2^53: multiplying or dividing by powers of two never
  // rounds (every intermediate has d's significant bits), so the expression is exactly d.
  int exp = 0;
  const double frac = std::frexp(std::fabs(d), &exp);
  auto m = static_cast<std::int64_t>(std::ldexp(frac, 53));
  int e = exp - 53;
  while (e < 0 && m % 2 == 0) {  // shorter: drop the mantissa's trailing zero bits
    m /= 2;
    ++e;
  }
  std::string s = (d < 0 ? "-" : "") + std::to_string(m) + ".0";
  const char* op = e >= 0 ? "*" : "/";
  for (int k = std::abs(e); k > 0; k -= 32) s += std::string(op) + (k >= 32 ? "4294967296.0" : std::to_string(std::int64_t{1} << k) + ".0");
  return s;
}

std::size_t skip_quoted_token(std::string_view sql, std::size_t i) { return skip_quoted(sql, i); }

std::string first_keyword(std::string_view sql) {
  std::size_t i = 0;
  while (i < sql.size()) {
    if (std::isspace(static_cast<unsigned char>(sql[i])) || sql[i] == ';' || sql[i] == '(') {
      ++i;
    } else if (const auto skip = skip_quoted(sql, i); skip != i && (sql[i] == '-' || sql[i] == '/')) {
      i = skip;
    } else {
      break;
    }
  }
  std::string word;
  while (i < sql.size() && std::isalpha(static_cast<unsigned char>(sql[i])))
    word.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i++]))));
  return word;
}

outcome<void> check_single_statement(std::string_view sql) {
  if (first_keyword(sql).empty()) return bad("empty SQL: no statement to run");
  // Each ';' outside strings and comments may end the statement; sqlite3_complete() tells
  // whether it does (it knows that trigger bodies contain ';').
  for (std::size_t i = 0; i < sql.size();) {
    if (const auto skip = skip_quoted(sql, i); skip != i) {
      i = skip;
      continue;
    }
    if (sql[i] == ';') {
      const std::string prefix(sql.substr(0, i + 1));
      if (sqlite3_complete(prefix.c_str())) {
        const auto rest = sql.substr(i + 1);
        if (!first_keyword(rest).empty()) {
          return bad("only one statement per query; found more after '" + prefix + "' (send several statements as a batch)");
        }
        return {};
      }
    }
    ++i;
  }
  return {};
}

outcome<d1_statement> to_d1_statement(const protocol::statement& st, const d1_limits& limits) {
  return to_d1_statement(st.sql, st.params, limits);
}

outcome<d1_statement> to_d1_statement(std::string_view sql, const protocol::params& p, const d1_limits& limits) {
  const auto refs = find_params(sql);
  int count = 0;
  for (const auto& r : refs) count = std::max(count, r.index);

  // The value of each SQLite parameter index, 1-based.
  std::vector<const protocol::value*> by_index(static_cast<std::size_t>(count) + 1, nullptr);
  if (!p.is_named) {
    if (static_cast<std::size_t>(count) != p.positional.size()) {
      return bad("the statement has " + std::to_string(count) + " parameter(s) but " +
                 std::to_string(p.positional.size()) + " value(s) were given");
    }
    for (int i = 1; i <= count; ++i) by_index[i] = &p.positional[i - 1];
  } else {
    std::vector<bool> used(p.named.size(), false);
    for (const auto& r : refs) {
      if (r.name.empty()) {
        return bad("parameter " + std::to_string(r.index) + " is positional; pass params as an array, or name it (:name)");
      }
      if (by_index[r.index]) continue;
      std::size_t found = p.named.size();
      for (std::size_t k = 0; k < p.named.size(); ++k) {
        if (p.named[k].first == r.name || p.named[k].first == std::string_view(r.name).substr(1)) {
          found = k;
          break;
        }
      }
      if (found == p.named.size()) return bad("no value given for parameter " + r.name);
      used[found] = true;
      by_index[r.index] = &p.named[found].second;
    }
    for (std::size_t k = 0; k < used.size(); ++k) {
      if (!used[k]) return bad("the statement has no parameter named '" + p.named[k].first + "'");
    }
  }

  // More parameters than D1 binds (an ORM's multi-row INSERT): the smallest ones are written
  // into the SQL as literals until the rest fit.
  std::vector<std::optional<std::string>> literal(refs.size());
  std::size_t bound = 0;
  for (std::size_t k = 0; k < refs.size(); ++k) {
    literal[k] = literal_for(*by_index[refs[k].index]);
    if (!literal[k]) ++bound;
  }
  if (bound > limits.max_bound_parameters) {
    std::vector<std::size_t> order;
    for (std::size_t k = 0; k < refs.size(); ++k)
      if (!literal[k]) order.push_back(k);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return protocol::byte_size(*by_index[refs[a].index]) < protocol::byte_size(*by_index[refs[b].index]);
    });
    for (std::size_t k : order) {
      if (bound <= limits.max_bound_parameters) break;
      if ((literal[k] = overflow_literal(*by_index[refs[k].index]))) --bound;
    }
  }

  d1_statement out;
  out.sql.reserve(sql.size());
  out.params_json = "[";
  std::size_t copied = 0;
  for (std::size_t k = 0; k < refs.size(); ++k) {
    const auto& r = refs[k];
    const auto* v = by_index[r.index];
    if (protocol::byte_size(*v) > limits.max_value_bytes) {
      return unsupported("a value of " + std::to_string(protocol::byte_size(*v)) + " bytes is over D1's limit of " +
                         std::to_string(limits.max_value_bytes) + " bytes per value");
    }
    out.sql.append(sql.substr(copied, r.begin - copied));
    copied = r.end;
    if (literal[k]) {
      out.sql += *literal[k];
      continue;
    }
    out.sql += '?';
    if (out.bound++) out.params_json += ',';
    protocol::append_value(out.params_json, *v);
  }
  out.sql.append(sql.substr(copied));
  out.params_json += ']';
  if (out.bound > limits.max_bound_parameters) {
    return unsupported("D1 allows at most " + std::to_string(limits.max_bound_parameters) +
                       " bound parameters per statement; this one binds " + std::to_string(out.bound));
  }
  if (out.sql.size() > limits.max_statement_bytes) {
    return unsupported("the statement is " + std::to_string(out.sql.size()) + " bytes" +
                       (out.sql.size() > sql.size() ? " once blobs and integers are written into it" : "") +
                       "; D1 allows at most " + std::to_string(limits.max_statement_bytes));
  }
  return out;
}

}  // namespace tandem::backends
