// The comparison under `tandem validate` (and `migrate`'s validation): are two databases (a SQLite
// file and D1, or any two) equal?
//
//   --quick     row counts per table.
//   --sample N  N random rows per table (picked on the first database), compared by key.
//   --full      every row: each table is walked in key ranges of `chunk_rows` rows (the ranges
//               are cut on the first database and read on both by the same key predicates, so
//               a missing or extra row changes one chunk only). Each side's chunk gets a 64-bit
//               checksum over its exact values; chunks whose checksums differ are compared row by
//               row, naming each key that is missing on one side or holds different values.
// JSON columns (declared JSON, or whose sampled values are all JSON objects/arrays) are checked
// to parse on both sides, by json_valid() run there.
//
// Why the checksum is not computed by SQL on D1 itself: SQLite's SQL (and so D1's) has no hash
// function, and D1 loads no extensions. D1 therefore runs the exact-value SELECT of each chunk
// (see d1_reader) and tandem hashes what arrives; nothing else is read twice.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tools/move/schema.hpp"

namespace tandem::tools {

struct validate_options {
  enum class mode { quick, sample, full } how = mode::full;
  std::size_t sample = 100;       // rows per table for mode::sample
  std::size_t chunk_rows = 4000;  // rows per checksum chunk for mode::full
  int parallel = 4;               // tables compared at once
  bool check_json = true;
  std::size_t max_reported = 20;  // differences listed per table (all are counted)
};

struct row_difference {
  enum class kind { missing_in_second, missing_in_first, different } what = kind::different;
  row key;
  std::vector<std::string> columns;  // kind::different: the columns that differ
  row first, second;                 // the values of those columns (different) or the row (missing)
};

struct json_problem {
  std::string column;
  std::string side;    // the database's description
  std::int64_t count = 0;
  std::vector<row> keys;  // some of the keys whose value does not parse
};

struct table_report {
  std::string table;
  std::vector<std::string> key_names;
  std::int64_t first_rows = 0, second_rows = 0;
  std::int64_t compared = 0;      // rows compared (sample: picked; full: every row of the first)
  std::size_t chunks = 0, mismatched_chunks = 0;
  std::int64_t difference_count = 0;
  std::vector<row_difference> differences;  // the first max_reported
  std::vector<std::string> json_columns;
  std::vector<json_problem> invalid_json;
  std::string error;  // could not be compared (e.g. missing on one side)
  bool equal() const { return error.empty() && difference_count == 0 && first_rows == second_rows && invalid_json.empty(); }
};

struct validation_report {
  std::string first, second;  // descriptions
  validate_options::mode how = validate_options::mode::full;
  std::vector<table_report> tables;
  std::vector<std::string> only_in_first, only_in_second;  // tables
  double seconds = 0;
  bool equal() const;
  std::int64_t differences() const;
  std::int64_t invalid_json() const;
};

// Compares `schema`'s tables (read from `first`) between the two databases. `on_table` is called
// as each table is done (from worker threads, one call at a time).
validation_report validate_databases(reader& first, reader& second, const database_schema& schema, const validate_options& options,
                                     const std::function<void(const table_report&)>& on_table = {});

// The tables of a database that tandem compares (not sqlite_*, _cf_*, _tandem_*).
backends::outcome<std::vector<std::string>> user_table_names(reader& r);

}  // namespace tandem::tools
