#include "tools/move/validate.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "protocol/codec.hpp"
#include "protocol/text.hpp"
#include "tools/move/copy_engine.hpp"

namespace tandem::tools {

namespace {

using steady = std::chrono::steady_clock;

// FNV-1a over the exact values, with a type tag per value (so 1 and 1.0 and '1' differ).
struct checksum {
  std::uint64_t h = 1469598103934665603ULL;
  void add(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ULL;
    }
  }
  void add(const value& v) {
    const unsigned char tag = static_cast<unsigned char>(v.index());
    add(&tag, 1);
    switch (v.index()) {
      case 1: {
        const auto i = std::get<std::int64_t>(v);
        add(&i, sizeof i);
        break;
      }
      case 2: {
        double d = std::get<double>(v);
        if (d == 0) d = 0;  // -0.0 and 0.0 compare equal
        add(&d, sizeof d);
        break;
      }
      case 3: {
        const auto& s = std::get<std::string>(v);
        const auto n = s.size();
        add(&n, sizeof n);
        add(s.data(), n);
        break;
      }
      case 4: {
        const auto& s = std::get<protocol::blob>(v).bytes;
        const auto n = s.size();
        add(&n, sizeof n);
        add(s.data(), n);
        break;
      }
      default: break;
    }
  }
};

std::uint64_t checksum_of(const std::vector<row>& rows) {
  checksum c;
  for (const auto& r : rows)
    for (const auto& v : r) c.add(v);
  return c.h;
}

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

std::int64_t int_cell(const protocol::query_result& r) {
  if (r.rows.empty() || r.rows[0].empty()) return 0;
  if (const auto* i = std::get_if<std::int64_t>(&r.rows[0][0])) return *i;
  if (const auto* d = std::get_if<double>(&r.rows[0][0])) return static_cast<std::int64_t>(*d);
  return 0;
}

// What validation compares a table by: its declared primary key when it has one (the rowid is
// then an implementation detail), else the rowid.
table_info compare_shape(const table_info& t) {
  table_info s = t;
  const auto stored = static_cast<std::size_t>(
      std::count_if(t.columns.begin(), t.columns.end(), [](const column_info& c) { return !c.generated && !c.hidden; }));
  const bool rowid_first = t.copy_columns.size() == stored + 1;  // the rowid under an alias, then the columns
  std::vector<std::pair<int, std::string>> pk;
  for (const auto& c : t.columns)
    if (c.pk > 0 && !c.generated && !c.hidden) pk.emplace_back(c.pk, c.name);
  if (!rowid_first || pk.empty()) return s;
  std::sort(pk.begin(), pk.end());
  s.copy_columns.erase(s.copy_columns.begin());
  s.key.clear();
  for (const auto& [pos, name] : pk) {
    const auto it = std::find(s.copy_columns.begin(), s.copy_columns.end(), name);
    s.key.push_back(static_cast<std::size_t>(it - s.copy_columns.begin()));
  }
  return s;
}

std::string join_and(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return "(" + a + ") AND (" + b + ")";
}

class comparer {
 public:
  comparer(reader& first, reader& second, const validate_options& o) : first_(first), second_(second), o_(o) {}

  void diff(const table_info& t, const std::vector<row>& a, const std::vector<row>& b, table_report& rep) {
    std::map<std::string, std::size_t> in_b;
    for (std::size_t i = 0; i < b.size(); ++i) in_b.emplace(encode_key(t.key_of(b[i])), i);
    std::vector<bool> matched(b.size(), false);
    auto note = [&](row_difference d) {
      ++rep.difference_count;
      if (rep.differences.size() < o_.max_reported) rep.differences.push_back(std::move(d));
    };
    for (const auto& ra : a) {
      const auto key = t.key_of(ra);
      const auto it = in_b.find(encode_key(key));
      if (it == in_b.end()) {
        note({row_difference::kind::missing_in_second, key, {}, ra, {}});
        continue;
      }
      matched[it->second] = true;
      const auto& rb = b[it->second];
      row_difference d{row_difference::kind::different, key, {}, {}, {}};
      for (std::size_t c = 0; c < ra.size() && c < rb.size(); ++c) {
        if (ra[c] == rb[c]) continue;
        d.columns.push_back(t.copy_columns[c]);
        d.first.push_back(ra[c]);
        d.second.push_back(rb[c]);
      }
      if (!d.columns.empty()) note(std::move(d));
    }
    for (std::size_t i = 0; i < b.size(); ++i) {
      if (!matched[i]) note({row_difference::kind::missing_in_first, t.key_of(b[i]), {}, {}, b[i]});
    }
  }

  void full(const table_info& t, table_report& rep) {
    std::optional<row> after;
    for (;;) {
      select_spec a{t.name, t.copy_columns, after ? t.after_predicate() : "", after ? *after : row{}, t.key_expr(), o_.chunk_rows};
      auto ra = first_.select_one(a);
      if (!ra) {
        rep.error = first_.describe() + ": " + ra.error().message;
        return;
      }
      const bool last = ra->size() < o_.chunk_rows;
      select_spec b{t.name, t.copy_columns, join_and(a.where, last ? "" : t.through_predicate()), a.params, t.key_expr(), 0};
      if (!last) {
        const auto through = t.key_of(ra->back());
        b.params.insert(b.params.end(), through.begin(), through.end());
      }
      auto rb = second_.select_one(b);
      if (!rb) {
        rep.error = second_.describe() + ": " + rb.error().message;
        return;
      }
      ++rep.chunks;
      rep.compared += static_cast<std::int64_t>(ra->size());
      if (ra->size() != rb->size() || checksum_of(*ra) != checksum_of(*rb)) {
        ++rep.mismatched_chunks;
        diff(t, *ra, *rb, rep);
      }
      if (last) return;
      after = t.key_of(ra->back());
    }
  }

  void sample(const table_info& t, table_report& rep) {
    auto keys = first_.select_one({t.name, t.key_names(), "", {}, "random()", o_.sample});
    if (!keys) {
      rep.error = first_.describe() + ": " + keys.error().message;
      return;
    }
    if (keys->empty()) return;
    const std::size_t width = t.key.size();
    const std::size_t per = std::max<std::size_t>(1, 90 / width);
    std::vector<select_spec> specs;
    for (std::size_t i = 0; i < keys->size(); i += per) {
      select_spec s{t.name, t.copy_columns, "", {}, t.key_expr(), 0};
      std::string list;
      for (std::size_t k = i; k < std::min(keys->size(), i + per); ++k) {
        std::string tuple;
        for (std::size_t c = 0; c < width; ++c) tuple += c ? ", ?" : "?";
        list += (list.empty() ? "" : ", ") + (width == 1 ? tuple : "(" + tuple + ")");
        s.params.insert(s.params.end(), (*keys)[k].begin(), (*keys)[k].end());
      }
      s.where = width == 1 ? t.key_expr() + " IN (" + list + ")" : "(" + t.key_expr() + ") IN (VALUES " + list + ")";
      specs.push_back(std::move(s));
    }
    auto ra = first_.select(specs);
    if (!ra) {
      rep.error = first_.describe() + ": " + ra.error().message;
      return;
    }
    auto rb = second_.select(specs);
    if (!rb) {
      rep.error = second_.describe() + ": " + rb.error().message;
      return;
    }
    std::vector<row> a, b;
    for (auto& part : *ra) std::move(part.begin(), part.end(), std::back_inserter(a));
    for (auto& part : *rb) std::move(part.begin(), part.end(), std::back_inserter(b));
    rep.compared = static_cast<std::int64_t>(a.size());
    diff(t, a, b, rep);
  }

 private:
  reader& first_;
  reader& second_;
  const validate_options& o_;
};

// Candidate JSON columns of `t`: declared JSON (certain), or text-typed (to be sampled).
void json_candidates(const table_info& t, std::vector<std::string>& declared, std::vector<std::string>& sampled) {
  for (const auto& c : t.columns) {
    if (c.generated || c.hidden) continue;
    const auto type = upper(c.type);
    if (type.find("JSON") != std::string::npos) declared.push_back(c.name);
    else if (type.empty() || type.find("TEXT") != std::string::npos || type.find("CHAR") != std::string::npos || type.find("CLOB") != std::string::npos)
      sampled.push_back(c.name);
  }
}

std::int64_t as_int(const value& v) {
  if (const auto* n = std::get_if<std::int64_t>(&v)) return *n;
  if (const auto* d = std::get_if<double>(&v)) return static_cast<std::int64_t>(*d);
  return 0;
}

// The JSON columns of each table (declared JSON, or whose 50 first values are all JSON objects or
// arrays on the first database), then the values that do not parse, counted by json_valid() on
// each side: one round trip per side for all tables.
void check_json(reader& first, reader& second, const std::vector<const table_info*>& tables, std::vector<table_report>& reps) {
  std::vector<protocol::statement> sniff;
  std::vector<std::pair<std::size_t, std::vector<std::string>>> sniffed;  // table index, columns
  for (std::size_t i = 0; i < tables.size(); ++i) {
    std::vector<std::string> declared, sampled;
    json_candidates(*tables[i], declared, sampled);
    reps[i].json_columns = declared;
    if (sampled.empty() || !reps[i].error.empty()) continue;
    std::string sql = "SELECT ";
    for (std::size_t k = 0; k < sampled.size(); ++k) {
      const auto q = quote_name(sampled[k]);
      sql += (k ? ", " : "") + ("sum(CASE WHEN typeof(" + q + ") = 'text' AND substr(" + q + ", 1, 1) IN ('{', '[') THEN 1 ELSE 0 END), count(" + q + ")");
    }
    sniff.push_back({sql + " FROM (SELECT * FROM " + quote_name(tables[i]->name) + " LIMIT 50)", {}});
    sniffed.emplace_back(i, std::move(sampled));
  }
  if (!sniff.empty()) {
    if (auto r = first.query(std::move(sniff))) {
      for (std::size_t k = 0; k < sniffed.size(); ++k) {
        const auto& cells = (*r)[k].rows.at(0);
        const auto& [i, cols] = sniffed[k];
        for (std::size_t c = 0; c < cols.size(); ++c) {
          const auto count = as_int(cells[2 * c + 1]);
          if (count > 0 && as_int(cells[2 * c]) == count) reps[i].json_columns.push_back(cols[c]);
        }
      }
    }
  }
  std::vector<protocol::statement> counts;
  std::vector<std::pair<std::size_t, std::string>> counted;
  for (std::size_t i = 0; i < tables.size(); ++i) {
    if (!reps[i].error.empty()) continue;
    for (const auto& col : reps[i].json_columns) {
      const auto q = quote_name(col);
      counts.push_back({"SELECT count(*) FROM " + quote_name(tables[i]->name) + " WHERE typeof(" + q + ") = 'text' AND json_valid(" + q + ") = 0", {}});
      counted.emplace_back(i, col);
    }
  }
  if (counts.empty()) return;
  for (reader* side : {&first, &second}) {
    auto r = side->query(counts);
    if (!r) {
      for (auto& [i, col] : counted) reps[i].error = side->describe() + ": checking JSON: " + r.error().message;
      continue;
    }
    for (std::size_t k = 0; k < counted.size(); ++k) {
      const auto n = int_cell((*r)[k]);
      if (n == 0) continue;
      const auto& [i, col] = counted[k];
      const auto q = quote_name(col);
      const auto shape = compare_shape(*tables[i]);
      json_problem p{col, side->describe(), n, {}};
      if (auto keys = side->select_one({shape.name, shape.key_names(), "typeof(" + q + ") = 'text' AND json_valid(" + q + ") = 0", {}, shape.key_expr(), 5}))
        p.keys = std::move(*keys);
      reps[i].invalid_json.push_back(std::move(p));
    }
  }
}

}  // namespace

bool validation_report::equal() const {
  return only_in_first.empty() && only_in_second.empty() &&
         std::all_of(tables.begin(), tables.end(), [](const table_report& t) { return t.equal(); });
}

std::int64_t validation_report::differences() const {
  std::int64_t n = 0;
  for (const auto& t : tables) n += t.difference_count + (t.first_rows != t.second_rows && t.difference_count == 0 ? 1 : 0) + (t.error.empty() ? 0 : 1);
  return n + static_cast<std::int64_t>(only_in_first.size() + only_in_second.size());
}

std::int64_t validation_report::invalid_json() const {
  std::int64_t n = 0;
  for (const auto& t : tables)
    for (const auto& p : t.invalid_json) n += p.count;
  return n;
}

outcome<std::vector<std::string>> user_table_names(reader& r) {
  auto q = r.query_one("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type IN ('table', 'virtual') ORDER BY name");
  if (!q) return q.error();
  std::vector<std::string> out;
  for (const auto& row : q->rows) {
    if (const auto* s = std::get_if<std::string>(&row[0]); s && !is_internal_name(*s)) out.push_back(*s);
  }
  return out;
}

validation_report validate_databases(reader& first, reader& second, const database_schema& schema, const validate_options& o,
                                     const std::function<void(const table_report&)>& on_table) {
  const auto start = steady::now();
  validation_report rep;
  rep.first = first.describe();
  rep.second = second.describe();
  rep.how = o.how;
  std::vector<const table_info*> both;
  {
    auto theirs = user_table_names(second);
    for (const auto& t : schema.tables) {
      const bool there = theirs && std::find(theirs->begin(), theirs->end(), t.name) != theirs->end();
      if (there || !theirs) both.push_back(&t);
      else rep.only_in_first.push_back(t.name);
    }
    auto ours = user_table_names(first);
    if (theirs && ours && schema.tables.size() == ours->size()) {
      for (const auto& n : *theirs)
        if (std::find(ours->begin(), ours->end(), n) == ours->end()) rep.only_in_second.push_back(n);
    }
  }
  rep.tables.resize(both.size());
  // Row counts first, one round trip per side.
  std::vector<protocol::statement> counts;
  for (const auto* t : both) counts.push_back({"SELECT count(*) FROM " + quote_name(t->name), {}});
  auto ca = first.query(counts);
  auto cb = second.query(counts);
  for (std::size_t i = 0; i < both.size(); ++i) {
    auto& tr = rep.tables[i];
    tr.table = both[i]->name;
    tr.key_names = compare_shape(*both[i]).key_names();
    if (!ca) tr.error = first.describe() + ": " + ca.error().message;
    else tr.first_rows = int_cell((*ca)[i]);
    if (!cb) tr.error = second.describe() + ": " + cb.error().message;
    else tr.second_rows = int_cell((*cb)[i]);
  }
  if (o.check_json) check_json(first, second, both, rep.tables);
  // Largest tables first, so that no large table is left running alone at the end.
  std::vector<std::size_t> order(both.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return rep.tables[a].first_rows > rep.tables[b].first_rows; });
  std::mutex mu;
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    comparer cmp(first, second, o);
    for (std::size_t k = next++; k < both.size(); k = next++) {
      const std::size_t i = order[k];
      auto& tr = rep.tables[i];
      const auto shape = compare_shape(*both[i]);
      if (tr.error.empty()) {
        if (o.how == validate_options::mode::full) cmp.full(shape, tr);
        else if (o.how == validate_options::mode::sample) cmp.sample(shape, tr);
      }
      std::lock_guard lock(mu);
      if (on_table) on_table(tr);
    }
  };
  std::vector<std::thread> pool;
  for (int k = 1; k < std::max(1, o.parallel); ++k) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  rep.seconds = std::chrono::duration<double>(steady::now() - start).count();
  return rep;
}

}  // namespace tandem::tools
