#include "tools/backup.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "tools/migrate.hpp"
#include "tools/progress.hpp"

namespace tandem::tools {

namespace fs = std::filesystem;

namespace {

using steady = std::chrono::steady_clock;

// Tables and rows of a SQLite file, for the report.
std::string describe_contents(const std::string& path) {
  auto r = sqlite_reader::open(path);
  if (!r) return "";
  auto names = (*r)->query_one("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'");
  if (!names) return "";
  std::vector<protocol::statement> counts;
  for (const auto& row : names->rows) counts.push_back({"SELECT count(*) FROM " + quote_name(std::get<std::string>(row[0])), {}});
  std::int64_t rows = 0;
  if (!counts.empty()) {
    if (auto c = (*r)->query(counts))
      for (const auto& q : *c) rows += std::get<std::int64_t>(q.rows.at(0).at(0));
  }
  return std::to_string(names->rows.size()) + " tables, " + progress::count(rows) + " rows";
}

}  // namespace

int run_backup(const backup_command& c) {
  auto at = parse_endpoint(c.from);
  if (!at) {
    std::cerr << "tandem backup: " << at.error().message << "\n";
    return 2;
  }
  std::error_code ec;
  fs::create_directories(c.dir, ec);
  if (!fs::is_directory(c.dir, ec)) {
    std::cerr << "tandem backup: cannot create the folder " << c.dir << "\n";
    return 2;
  }
  const auto start = steady::now();
  if (at->type == endpoint::kind::sqlite) {
    auto probe = sqlite_reader::open(at->path);  // a clear error for a missing file or a non-database
    if (!probe) {
      std::cerr << "tandem backup: " << probe.error().message << "\n";
      return 2;
    }
    probe->reset();
    const fs::path final_path = unused_path(c.dir, fs::path(backup_file_name(at->path)).stem().string(), ".db");
    const fs::path partial = final_path.string() + ".partial";
    fs::remove(partial, ec);
    if (auto r = copy_sqlite_backup(at->path, partial.string()); !r) {
      std::cerr << "tandem backup: " << r.error().message << "\n";
      fs::remove(partial, ec);
      return 1;
    }
    fs::rename(partial, final_path, ec);
    if (ec) {
      std::cerr << "tandem backup: cannot rename " << partial << ": " << ec.message() << "\n";
      return 1;
    }
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.2fs", std::chrono::duration<double>(steady::now() - start).count());
    std::cout << "✓ Backed up " << at->describe() << " to " << final_path.string() << " (" << describe_contents(final_path.string()) << ", "
              << progress::count(static_cast<std::int64_t>(fs::file_size(final_path, ec))) << " bytes, quick_check ok) in " << secs << "\n";
    return 0;
  }
  auto source = open_database(*at, c.d1, false, std::chrono::milliseconds(c.timeout_ms));
  if (!source) {
    std::cerr << "tandem backup: " << source.error().message << "\n";
    return 2;
  }
  const std::string id = source->describe().substr(3);
  const fs::path folder = unused_path(c.dir, "d1-" + id + "-" + local_date(), "");
  std::int64_t rows = 0;
  if (auto r = write_json_backup(*source->read, folder.string(), &rows); !r) {
    std::cerr << "tandem backup: " << r.error().message << " (the incomplete folder " << folder.string() << " has no manifest.json)\n";
    return 1;
  }
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.2fs", std::chrono::duration<double>(steady::now() - start).count());
  std::cout << "✓ Backed up " << source->describe() << " to " << folder.string() << "/ (" << progress::count(rows)
            << " rows: tables/*.json, dump.sql, manifest.json) in " << secs << "\n";
  return 0;
}

namespace {

// A restore into a SQLite file: its pages replaced by the backup's.
int restore_into_sqlite(const restore_command& c, const std::string& from, const endpoint& to, steady::time_point start) {
  std::error_code ec;
  if (fs::exists(to.path, ec)) {
    auto existing = sqlite_reader::open(to.path);
    if (!existing) {
      std::cerr << "tandem restore: " << existing.error().message << "\n";
      return 2;
    }
    auto n = user_objects(**existing);
    if (n && *n > 0 && !c.force) {
      std::cerr << "tandem restore: " << to.describe() << " is not empty (" << *n << " tables, views, indexes or triggers); --force replaces its content\n";
      return 1;
    }
  }
  if (auto r = restore_sqlite_backup(from, to.path); !r) {
    std::cerr << "tandem restore: " << r.error().message << "\n";
    return 1;
  }
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.2fs", std::chrono::duration<double>(steady::now() - start).count());
  std::cout << "✓ Restored " << c.from << " into " << to.describe() << " (" << describe_contents(to.path) << ") in " << secs << "\n";
  return 0;
}

// A restore into D1: emptied first with --force, then migrated from the backup and validated.
int restore_into_d1(const restore_command& c, opened& source, const endpoint& to) {
  auto target = open_database(to, c.d1, true, std::chrono::milliseconds(c.timeout_ms));
  if (!target) {
    std::cerr << "tandem restore: " << target.error().message << "\n";
    return 2;
  }
  auto n = user_objects(*target->read);
  if (!n) {
    std::cerr << "tandem restore: " << n.error().message << "\n";
    return 2;
  }
  if (*n > 0) {
    if (!c.force) {
      std::cerr << "tandem restore: " << target->describe() << " is not empty (" << *n << " tables, views, indexes or triggers); --force replaces its content\n";
      return 1;
    }
    auto drops = drop_user_objects(*target->read);
    if (!drops) {
      std::cerr << "tandem restore: " << drops.error().message << "\n";
      return 1;
    }
    if (auto r = run_sync(*target->store, *drops, steady::now() + std::chrono::milliseconds(c.timeout_ms)); !r) {
      std::cerr << "tandem restore: emptying " << target->describe() << " failed (nothing was dropped): " << r.error().message << "\n";
      return 1;
    }
    std::cout << "🧹 Emptied " << target->describe() << " (--force: " << *n << " objects dropped)\n";
  }
  if (auto ok = dynamic_cast<sqlite_reader&>(*source.read).snapshot(); !ok) {
    std::cerr << "tandem restore: " << ok.error().message << "\n";
    return 1;
  }
  migrate_command mc;
  mc.validate = c.validate;
  mc.progress = c.progress;
  mc.timeout_ms = c.timeout_ms;
  auto settings = resolve_settings(mc);
  if (!settings) {
    std::cerr << "tandem restore: " << settings.error().message << "\n";
    return 2;
  }
  const int rc = migrate_between(source, *target, *settings, std::cout);
  target->store->shutdown();
  return rc;
}

}  // namespace

int run_restore(const restore_command& c) {
  auto to = parse_endpoint(c.to);
  if (!to) {
    std::cerr << "tandem restore: " << to.error().message << "\n";
    return 2;
  }
  std::string from = c.from.rfind("sqlite:", 0) == 0 ? c.from.substr(7) : c.from;
  std::error_code ec;
  const auto start = steady::now();
  // A D1 backup folder becomes a SQLite file first: both targets are then restored from a file.
  fs::path temp_dir;
  struct cleanup {
    fs::path dir;
    ~cleanup() {
      std::error_code e;
      if (!dir.empty()) fs::remove_all(dir, e);
    }
  } clean;
  if (fs::is_directory(from, ec)) {
    temp_dir = fs::temp_directory_path() / ("tandem-restore-" + std::to_string(::getpid()));
    fs::create_directories(temp_dir, ec);
    clean.dir = temp_dir;
    const std::string file = (temp_dir / "backup.db").string();
    if (auto r = load_json_backup(from, file); !r) {
      std::cerr << "tandem restore: " << r.error().message << "\n";
      return 2;
    }
    from = file;
  }
  auto source = open_database(endpoint{endpoint::kind::sqlite, from, {}}, {}, false);
  if (!source) {
    std::cerr << "tandem restore: " << source.error().message << "\n";
    return 2;
  }
  if (to->type == endpoint::kind::sqlite) return restore_into_sqlite(c, from, *to, start);
  return restore_into_d1(c, *source, *to);
}

}  // namespace tandem::tools
