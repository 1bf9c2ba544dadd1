// The backup and restore cores under `tandem backup` and `tandem restore` (the migration guide's
// "Data Recovery" section); tools/backup.hpp is their command line.
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

#include <filesystem>
#include <string>
#include <vector>

#include "tools/move/database.hpp"

namespace tandem::tools {

// Today's date in local time, "YYYY-MM-DD" (the guide's backup names).
std::string local_date();

// `dir`/`base``ext`, or with -2, -3, ... before `ext` when taken: a backup never overwrites another.
std::filesystem::path unused_path(const std::filesystem::path& dir, const std::string& base, const std::string& ext);

// User objects (tables, views, indexes, triggers) a database holds; tandem's own do not count.
backends::outcome<std::int64_t> user_objects(reader& r);

// An online, consistent copy of the SQLite file `from` into a new file `to` with SQLite's backup
// API (one read transaction: safe while others write), made self-contained (journal_mode DELETE)
// and checked with quick_check. UNAVAILABLE saying what failed; `to` may then hold a partial copy.
backends::outcome<void> copy_sqlite_backup(const std::string& from, const std::string& to);

// Replaces the content of the SQLite file `to` (created if missing) with that of `from`.
backends::outcome<void> restore_sqlite_backup(const std::string& from, const std::string& to);

// The one atomic batch that empties a database of everything of the user's (triggers, views,
// indexes, tables, children before parents) and of the move tools' own tables.
backends::outcome<std::vector<protocol::statement>> drop_user_objects(reader& r);

// The file name of a SQLite backup of `source_path` made today: "<stem>-YYYY-MM-DD.db".
std::string backup_file_name(const std::string& source_path);

// Writes the D1 backup folder of `source` (any reader: the format does not depend on the
// store) into `folder`, which must not exist. The error names what failed.
backends::outcome<void> write_json_backup(reader& source, const std::string& folder, std::int64_t* rows = nullptr);

// Loads a backup folder (manifest.json and tables/*.json) into a new SQLite file at `path`.
backends::outcome<void> load_json_backup(const std::string& folder, const std::string& path);

}  // namespace tandem::tools
