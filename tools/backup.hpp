// `tandem backup` and `tandem restore` (the migration guide's "Data Recovery" section).
//
//   backup sqlite:PATH --to DIR   an online, consistent copy made with SQLite's backup API
//                                 (one read transaction: safe while tandem writes), named
//                                 DIR/<file stem>-YYYY-MM-DD.db like the guide's
//                                 project-YYYY-MM-DD.db, checked with quick_check.
//   backup d1 --to DIR            DIR/d1-<database id>-YYYY-MM-DD/: tables/<table>.json for every
//                                 table (the shape `wrangler d1 execute --json` prints, but with
//                                 exact values: 64-bit integers as written, floats with a '.',
//                                 blobs as arrays of bytes), dump.sql (schema and rows as SQL, in
//                                 the layout of sqlite3 .dump), manifest.json (schema, key, rows).
//   restore FROM --to TARGET      FROM is a .db backup or a D1 backup folder; TARGET sqlite:PATH
//                                 or d1. A target holding any table, view, index or trigger is
//                                 refused unless --force, which replaces its content.
#pragma once

#include <string>

#include "tools/move/database.hpp"

namespace tandem::tools {

struct backup_command {
  std::string from;  // sqlite:PATH, d1, d1:ID
  std::string dir;
  d1_settings d1;
  long timeout_ms = 60000;
};
// 0 on success (the path is printed), 1 when the backup failed, 2 for bad arguments.
int run_backup(const backup_command& c);

struct restore_command {
  std::string from;  // a .db file (or sqlite:PATH), or a D1 backup folder
  std::string to;    // sqlite:PATH, d1, d1:ID
  d1_settings d1;
  bool force = false;
  bool validate = true;
  std::string progress = "auto";
  long timeout_ms = 60000;
};
int run_restore(const restore_command& c);

// The file name of a SQLite backup of `source_path` made today: "<stem>-YYYY-MM-DD.db".
std::string backup_file_name(const std::string& source_path);

// Writes the D1 backup folder of `source` (any reader: the format does not depend on the
// store) into `folder`, which must not exist. The error names what failed.
backends::outcome<void> write_json_backup(reader& source, const std::string& folder, std::int64_t* rows = nullptr);

// Loads a backup folder (manifest.json and tables/*.json) into a new SQLite file at `path`.
backends::outcome<void> load_json_backup(const std::string& folder, const std::string& path);

}  // namespace tandem::tools
