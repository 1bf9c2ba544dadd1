#include "tools/validate.hpp"

#include <cstdio>
#include <iostream>

#include "protocol/codec.hpp"
#include "protocol/text.hpp"
#include "tools/progress.hpp"

namespace tandem::tools {

namespace {

std::string mode_name(validate_options::mode m) {
  switch (m) {
    case validate_options::mode::quick: return "quick";
    case validate_options::mode::sample: return "sample";
    default: return "full";
  }
}

}  // namespace

// ---- reports --------------------------------------------------------------------------------------

void print_table_report(std::ostream& out, const validation_report& report, const table_report& t) {
  const auto& A = report.first;
  const auto& B = report.second;
  if (t.equal()) {
    out << "✓ " << t.table << ": " << progress::count(t.first_rows) << " rows";
    if (report.how == validate_options::mode::full) out << ", every row equal";
    else if (report.how == validate_options::mode::sample) out << ", " << progress::count(t.compared) << " sampled rows equal";
    else out << " on both sides";
    if (!t.json_columns.empty()) out << ", JSON parses";
    out << "\n";
    return;
  }
  out << "✗ " << t.table << "\n";
  if (!t.error.empty()) out << "    could not compare: " << t.error << "\n";
  if (t.first_rows != t.second_rows)
    out << "    row counts differ: " << progress::count(t.first_rows) << " in " << A << ", " << progress::count(t.second_rows) << " in " << B << "\n";
  for (const auto& d : t.differences) {
    const auto key = show_key(t.key_names, d.key);
    switch (d.what) {
      case row_difference::kind::missing_in_second: out << "    row " << key << " is missing in " << B << "\n"; break;
      case row_difference::kind::missing_in_first: out << "    row " << key << " is only in " << B << " (missing in " << A << ")\n"; break;
      case row_difference::kind::different:
        out << "    row " << key << " differs:";
        for (std::size_t c = 0; c < d.columns.size(); ++c)
          out << (c ? ";" : "") << " " << d.columns[c] << " = " << show_value(d.first[c]) << " in " << A << ", " << show_value(d.second[c]) << " in " << B;
        out << "\n";
        break;
    }
  }
  if (t.difference_count > static_cast<std::int64_t>(t.differences.size()))
    out << "    … and " << progress::count(t.difference_count - static_cast<std::int64_t>(t.differences.size())) << " more rows differ\n";
  for (const auto& j : t.invalid_json) {
    out << "    column " << j.column << ": " << progress::count(j.count) << " value(s) do not parse as JSON in " << j.side << ":";
    for (const auto& k : j.keys) out << " " << show_key(t.key_names, k);
    out << (j.count > static_cast<std::int64_t>(j.keys.size()) ? " …" : "") << "\n";
  }
}

void print_summary(std::ostream& out, const validation_report& r) {
  const std::string rule(58, '=');
  std::size_t equal = 0;
  std::int64_t rows_a = 0, rows_b = 0;
  for (const auto& t : r.tables) {
    equal += t.equal();
    rows_a += t.first_rows;
    rows_b += t.second_rows;
  }
  for (const auto& t : r.only_in_first) out << "✗ table " << t << " is missing in " << r.second << "\n";
  for (const auto& t : r.only_in_second) out << "✗ table " << t << " is only in " << r.second << "\n";
  char dur[32];
  std::snprintf(dur, sizeof dur, "%.2fs", r.seconds);
  out << rule << "\n📊 Validation Summary (" << mode_name(r.how) << ")\n" << rule << "\n";
  out << "Compared: " << r.first << " with " << r.second << "\n";
  out << "Tables: " << r.tables.size() + r.only_in_first.size() + r.only_in_second.size() << " (" << equal << " equal)\n";
  out << "Rows: " << progress::count(rows_a) << " in " << r.first << ", " << progress::count(rows_b) << " in " << r.second << "\n";
  out << "Differences: " << progress::count(r.differences()) << "\n";
  out << "Invalid JSON values: " << progress::count(r.invalid_json()) << "\n";
  out << "Duration: " << dur << "\n" << rule << "\n";
  out << (r.equal() ? "✓ The databases are equal" : "✗ The databases differ") << "\n";
}

namespace {

// "[a,b,...]": each item appended by `each`.
template <class T, class F>
void append_array(std::string& out, const std::vector<T>& items, F&& each) {
  out += '[';
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    each(items[i]);
  }
  out += ']';
}

void append_row(std::string& out, const row& r) {
  append_array(out, r, [&](const value& v) { protocol::append_value(out, v); });
}

void append_strings(std::string& out, const std::vector<std::string>& v) {
  append_array(out, v, [&](const std::string& s) { protocol::append_json_string(out, s); });
}

const char* kind_name(row_difference::kind k) {
  switch (k) {
    case row_difference::kind::different: return "different";
    case row_difference::kind::missing_in_second: return "missing_in_second";
    default: return "missing_in_first";
  }
}

void append_difference(std::string& out, const row_difference& d) {
  out += "{\"kind\":\"";
  out += kind_name(d.what);
  out += "\",\"key\":";
  append_row(out, d.key);
  if (d.what == row_difference::kind::different) {
    out += ",\"columns\":";
    append_strings(out, d.columns);
  }
  out += ",\"first\":";
  append_row(out, d.first);
  out += ",\"second\":";
  append_row(out, d.second);
  out += '}';
}

void append_json_problem(std::string& out, const json_problem& j) {
  out += "{\"column\":";
  protocol::append_json_string(out, j.column);
  out += ",\"side\":";
  protocol::append_json_string(out, j.side);
  out += ",\"count\":" + std::to_string(j.count) + ",\"keys\":";
  append_array(out, j.keys, [&](const row& k) { append_row(out, k); });
  out += '}';
}

void append_table(std::string& out, const table_report& t) {
  out += "{\"table\":";
  protocol::append_json_string(out, t.table);
  out += ",\"equal\":";
  out += t.equal() ? "true" : "false";
  out += ",\"key\":";
  append_strings(out, t.key_names);
  out += ",\"first_rows\":" + std::to_string(t.first_rows) + ",\"second_rows\":" + std::to_string(t.second_rows) +
         ",\"compared\":" + std::to_string(t.compared) + ",\"chunks\":" + std::to_string(t.chunks) +
         ",\"mismatched_chunks\":" + std::to_string(t.mismatched_chunks) + ",\"difference_count\":" + std::to_string(t.difference_count) +
         ",\"differences\":";
  append_array(out, t.differences, [&](const row_difference& d) { append_difference(out, d); });
  out += ",\"json_columns\":";
  append_strings(out, t.json_columns);
  out += ",\"invalid_json\":";
  append_array(out, t.invalid_json, [&](const json_problem& j) { append_json_problem(out, j); });
  if (!t.error.empty()) {
    out += ",\"error\":";
    protocol::append_json_string(out, t.error);
  }
  out += '}';
}

}  // namespace

std::string report_json(const validation_report& r) {
  std::string out = "{\"equal\":";
  out += r.equal() ? "true" : "false";
  out += ",\"mode\":\"" + mode_name(r.how) + "\",\"first\":";
  protocol::append_json_string(out, r.first);
  out += ",\"second\":";
  protocol::append_json_string(out, r.second);
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.3f", r.seconds);
  out += ",\"seconds\":" + std::string(secs) + ",\"differences\":" + std::to_string(r.differences()) +
         ",\"invalid_json\":" + std::to_string(r.invalid_json()) + ",\"only_in_first\":";
  append_strings(out, r.only_in_first);
  out += ",\"only_in_second\":";
  append_strings(out, r.only_in_second);
  out += ",\"tables\":";
  append_array(out, r.tables, [&](const table_report& t) { append_table(out, t); });
  out += '}';
  return out;
}

int run_validate(const validate_command& c) {
  auto a_at = parse_endpoint(c.first);
  auto b_at = parse_endpoint(c.second);
  if (!a_at || !b_at) {
    std::cerr << "tandem validate: " << (!a_at ? a_at.error().message : b_at.error().message) << "\n";
    return 2;
  }
  const std::chrono::milliseconds timeout(c.timeout_ms);
  auto a = open_database(*a_at, c.d1, false, timeout);
  if (!a) {
    std::cerr << "tandem validate: " << a.error().message << "\n";
    return 2;
  }
  auto b = open_database(*b_at, c.d1, false, timeout);
  if (!b) {
    std::cerr << "tandem validate: " << b.error().message << "\n";
    return 2;
  }
  for (auto* o : {&*a, &*b}) {
    if (auto* s = dynamic_cast<sqlite_reader*>(o->read.get())) {
      if (auto ok = s->snapshot(); !ok) {
        std::cerr << "tandem validate: " << ok.error().message << "\n";
        return 2;
      }
    }
  }
  schema_filter filter;
  filter.tables = c.tables;
  auto schema = read_schema(*a->read, filter);
  if (!schema) {
    std::cerr << "tandem validate: reading the schema of " << a->describe() << ": " << schema.error().message << "\n";
    return 2;
  }
  if (!c.json) {
    std::cout << "🔍 Validating " << a->describe() << " against " << b->describe() << " (" << mode_name(c.options.how);
    if (c.options.how == validate_options::mode::full) std::cout << ": every row, checksums over chunks of " << progress::count(static_cast<std::int64_t>(c.options.chunk_rows)) << " rows";
    if (c.options.how == validate_options::mode::sample) std::cout << ": " << c.options.sample << " random rows per table";
    std::cout << ")\n";
    std::cout.flush();
  }
  validation_report report;
  report.first = a->describe();
  report.second = b->describe();
  report.how = c.options.how;
  report = validate_databases(*a->read, *b->read, *schema, c.options, [&](const table_report& t) {
    if (!c.json) {
      print_table_report(std::cout, report, t);
      std::cout.flush();
    }
  });
  if (c.json) std::cout << report_json(report) << "\n";
  else print_summary(std::cout, report);
  return report.equal() ? 0 : 1;
}

}  // namespace tandem::tools
