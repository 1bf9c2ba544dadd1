// A database's schema as the move tools need it: tables in an order that satisfies foreign keys,
// each with the columns to copy and the key that orders its rows; indexes, views, triggers; the
// AUTOINCREMENT counters. Read through a tools::reader, so from SQLite and D1 alike.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tools/move/database.hpp"

namespace tandem::tools {

struct column_info {
  std::string name;
  std::string type;  // as declared
  int pk = 0;        // position in the primary key (1-based); 0 when not part of it
  bool generated = false;  // GENERATED ALWAYS AS: computed, never inserted
  bool hidden = false;     // a virtual table's hidden column
};

struct table_info {
  std::string name;
  std::string sql;  // CREATE TABLE / CREATE VIRTUAL TABLE
  std::vector<column_info> columns;
  bool without_rowid = false;
  bool is_virtual = false;
  // What is read and inserted, in this order: the rowid under a name no column uses (when it is
  // not already a column, as INTEGER PRIMARY KEY makes it), then every stored column.
  std::vector<std::string> copy_columns;
  // Indexes into copy_columns of the key that orders and identifies rows: the rowid, or the
  // PRIMARY KEY of a WITHOUT ROWID table, in key order.
  std::vector<std::size_t> key;
  std::vector<std::string> parents;  // tables its foreign keys reference (itself excluded)

  std::vector<std::string> key_names() const;
  // "rowid" or "(a, b)": the ORDER BY and comparison expression of the key.
  std::string key_expr() const;
  row key_of(const row& r) const;
  // "key > (?, ?)" style predicates, with the key's values as parameters.
  std::string after_predicate() const;   // key > ?
  std::string through_predicate() const; // key <= ?
  std::string equals_predicate() const;  // key = ?
};

struct schema_object {
  std::string type;  // table, index, view, trigger
  std::string name;
  std::string table;  // tbl_name
  std::string sql;
};

struct database_schema {
  std::vector<table_info> tables;       // parents before children
  std::vector<schema_object> indexes;   // in creation order
  std::vector<schema_object> views;
  std::vector<schema_object> triggers;
  std::vector<std::pair<std::string, std::int64_t>> sequences;  // sqlite_sequence
  std::vector<std::string> warnings;    // e.g. a foreign-key cycle

  const table_info* find(std::string_view table) const;
  // Every object except the tables, in the order they should be created after them.
  std::vector<schema_object> objects() const;
};

// Names tandem never copies or compares: SQLite's (sqlite_*), D1's (_cf_*) and tandem's own
// (_tandem_*). Case-insensitive, as SQLite names are.
bool is_internal_name(std::string_view name);
bool is_d1_reserved_name(std::string_view name);  // _cf_*

struct schema_filter {
  std::vector<std::string> tables;  // only these (and their indexes, triggers); empty: all
  bool include_cf = false;  // keep _cf_* user objects (a SQLite source: D1 will refuse them)
};

// Reads the schema of the database behind `r`. Errors: the reader's, or BAD_REQUEST naming a
// table in the filter that does not exist.
backends::outcome<database_schema> read_schema(reader& r, const schema_filter& filter = {});

// What D1 would refuse in `schema`, each as one sentence naming the object ("table _cf_x: names
// starting with _cf_ are reserved by D1"). Empty when D1 can take it all.
std::vector<std::string> d1_problems(const database_schema& schema);

// Collapses whitespace runs to one space (outside quotes), so that two CREATE statements that
// differ only in layout compare equal.
std::string normalize_sql(std::string_view sql);

}  // namespace tandem::tools
