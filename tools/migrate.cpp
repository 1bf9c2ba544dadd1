#include "tools/migrate.hpp"

#include <sqlite3.h>

#include "protocol/json_reader.hpp"
#include "tools/ctl.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "backends/sqlite_connection.hpp"
#include "backends/sqlite_store.hpp"
#include "tools/progress.hpp"
#include "tools/validate.hpp"

namespace tandem::tools {

using backends::outcome;
using protocol::errc;
using protocol::error;
using protocol::statement;
using protocol::value;

namespace {

using steady = std::chrono::steady_clock;

error bad(std::string m) { return error{errc::bad_request, std::move(m), {}, {}}; }

outcome<std::optional<bool>> env_bool(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::optional<bool>{};
  std::string s(v);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "true" || s == "1" || s == "yes" || s == "on") return std::optional<bool>{true};
  if (s == "false" || s == "0" || s == "no" || s == "off") return std::optional<bool>{false};
  return bad(std::string(name) + " must be true or false, not '" + v + "'");
}

outcome<std::optional<long>> env_long(const char* name, long min, long max) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::optional<long>{};
  long n = 0;
  const std::string_view s(v);
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || end != s.data() + s.size() || n < min || n > max)
    return bad(std::string(name) + " must be a whole number from " + std::to_string(min) + " to " + std::to_string(max) + ", not '" + v + "'");
  return std::optional<long>{n};
}

std::string kind_name(const opened& o) { return o.where.type == endpoint::kind::d1 ? "D1" : "SQLite"; }

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fs", s);
  return buf;
}

// Forwards the engine's progress to the display.
class observer final : public copy_observer {
 public:
  explicit observer(progress& p) : p_(p) {}
  void started(const table_copy& t) override { p_.table_started(t.table, t.total, t.copied); }
  void progressed(const table_copy& t) override { p_.table_progressed(t.table, t.copied); }
  void finished(const table_copy& t) override { p_.table_finished(t.table, t.copied, t.total, t.error); }

 private:
  progress& p_;
};

struct target_object {
  std::string type, table, sql;
};

outcome<std::map<std::string, target_object>> target_objects(reader& r) {
  auto q = r.query_one("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL");
  if (!q) return q.error();
  std::map<std::string, target_object> out;
  for (const auto& row : q->rows) {
    auto text = [&](std::size_t i) { return std::get_if<std::string>(&row[i]) ? std::get<std::string>(row[i]) : std::string(); };
    out[text(1)] = {text(0), text(2), text(3)};
  }
  return out;
}

// The statements that set each AUTOINCREMENT counter to the source's value.
std::vector<statement> sequence_statements(const database_schema& schema) {
  std::vector<statement> out;
  for (const auto& [name, seq] : schema.sequences) {
    statement up{"UPDATE sqlite_sequence SET seq = " + std::to_string(seq) + " WHERE name = ?", {}};
    up.params.positional = {value{name}};
    statement in{"INSERT INTO sqlite_sequence (name, seq) SELECT ?, " + std::to_string(seq) +
                     " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)",
                 {}};
    in.params.positional = {value{name}, value{name}};
    out.push_back(std::move(up));
    out.push_back(std::move(in));
  }
  return out;
}

constexpr const char* k_aside_table = "_tandem_migrate_triggers";

// Puts back the triggers set aside in `target` (by this run or an interrupted one) and drops the
// table that kept them, in one atomic batch. Returns their names.
outcome<std::vector<std::string>> restore_triggers(backends::store& target, std::chrono::milliseconds timeout) {
  auto there = run_sync(target, {{std::string("SELECT count(*) FROM sqlite_schema WHERE name = '") + k_aside_table + "'", {}}});
  if (!there) return there.error();
  if (std::get<std::int64_t>(there->at(0).rows.at(0).at(0)) == 0) return std::vector<std::string>{};
  auto kept = run_sync(target, {{std::string("SELECT a.name, a.sql, s.name IS NOT NULL FROM ") + k_aside_table +
                                     " a LEFT JOIN sqlite_schema s ON s.type = 'trigger' AND s.name = a.name ORDER BY a.name",
                                 {}}});
  if (!kept) return kept.error();
  std::vector<statement> back;
  std::vector<std::string> names;
  for (const auto& row : kept->at(0).rows) {
    names.push_back(std::get<std::string>(row[0]));
    if (std::get<std::int64_t>(row[2]) == 0) back.push_back({std::get<std::string>(row[1]), {}});
  }
  back.push_back({std::string("DROP TABLE ") + k_aside_table, {}});
  // If D1 did not answer: it is in once the table is gone.
  auto r = run_until_known(target, back, timeout, [&]() -> std::optional<bool> {
    auto left = run_sync(target, {{std::string("SELECT count(*) FROM sqlite_schema WHERE name = '") + k_aside_table + "'", {}}});
    if (!left) return std::nullopt;
    return std::get<std::int64_t>(left->at(0).rows.at(0).at(0)) == 0;
  });
  if (!r) return r.error();
  return names;
}

// The journal position of a SQLite snapshot: the last sequence number tandem's journal gave out.
outcome<std::int64_t> journal_position(sqlite_reader& r) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v2(r.handle(),
                                    "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = '_tandem_journal'), "
                                    "(SELECT max(seq) FROM _tandem_journal), 0)",
                                    -1, &raw, nullptr);
  backends::sqlite_stmt_ptr st(raw);
  if (rc != SQLITE_OK || sqlite3_step(raw) != SQLITE_ROW) return error{errc::unavailable, sqlite3_errmsg(r.handle()), "sqlite", {}};
  return static_cast<std::int64_t>(sqlite3_column_int64(raw, 0));
}

}  // namespace

outcome<migrate_settings> resolve_settings(const migrate_command& c) {
  migrate_settings s;
  auto batch = env_long("MIGRATION_BATCH_SIZE", 1, 100000);
  auto validate = env_bool("MIGRATION_VALIDATE");
  auto cont = env_bool("MIGRATION_CONTINUE_ON_ERROR");
  auto dry = env_bool("MIGRATION_DRY_RUN");
  auto parallel = env_long("MIGRATION_PARALLEL_TABLES", 1, 64);
  auto timeout = env_long("MIGRATION_TIMEOUT", 1, 86400000);
  auto stall = env_long("TANDEM_MIGRATE_STALL_AFTER", 0, 1000000000);
  if (!batch) return batch.error();
  if (!validate) return validate.error();
  if (!cont) return cont.error();
  if (!dry) return dry.error();
  if (!parallel) return parallel.error();
  if (!timeout) return timeout.error();
  if (!stall) return stall.error();
  if (c.batch_size && (*c.batch_size < 1 || *c.batch_size > 100000)) return bad("--batch-size must be from 1 to 100000");
  if (c.parallel_tables && (*c.parallel_tables < 1 || *c.parallel_tables > 64)) return bad("--parallel-tables must be from 1 to 64");
  if (c.timeout_ms && *c.timeout_ms < 1) return bad("--timeout must be a positive number of milliseconds");
  if (c.schema_only && c.data_only) return bad("--schema-only and --data-only exclude each other");
  s.batch_size = static_cast<std::size_t>(c.batch_size.value_or(batch->value_or(1000)));
  s.validate = c.validate.value_or(validate->value_or(true));
  s.continue_on_error = c.continue_on_error.value_or(cont->value_or(false));
  s.dry_run = c.dry_run.value_or(dry->value_or(false));
  s.parallel_tables = static_cast<int>(c.parallel_tables.value_or(parallel->value_or(1)));
  s.timeout_ms = c.timeout_ms.value_or(timeout->value_or(60000));
  s.stall_after_batches = stall->value_or(-1);
  s.schema_only = c.schema_only;
  s.data_only = c.data_only;
  s.resume = c.resume;
  s.tables = c.tables;
  s.progress = c.progress;
  return s;
}

int migrate_between(opened& source, opened& target, const migrate_settings& s, std::ostream& out) {
  const auto start = steady::now();
  const bool to_d1 = target.where.type == endpoint::kind::d1;
  out << "🚀 Starting " << kind_name(source) << " to " << kind_name(target) << " migration" << (s.dry_run ? " (dry run: nothing is written)" : "")
      << "...\n";
  out << "   from " << source.describe() << " to " << target.describe() << "\n";

  schema_filter filter;
  filter.tables = s.tables;
  filter.include_cf = source.where.type == endpoint::kind::sqlite;
  auto schema = read_schema(*source.read, filter);
  if (!schema) {
    out << "✗ Reading the schema of " << source.describe() << " failed: " << schema.error().message << "\n";
    return 1;
  }
  std::vector<std::string> problems = to_d1 ? d1_problems(*schema) : std::vector<std::string>{};
  if (!to_d1) {
    for (const auto& t : schema->tables)
      if (is_internal_name(t.name)) problems.push_back("table " + t.name + ": the name is reserved");
  }
  if (!problems.empty()) {
    out << "✗ " << target.describe() << " cannot take this schema; nothing was written:\n";
    for (const auto& p : problems) out << "   - " << p << "\n";
    return 1;
  }
  for (const auto& w : schema->warnings) out << "⚠ " << w << "\n";
  out << "📊 Found " << schema->tables.size() << " tables to migrate\n";

  // What the target already has: identical objects are kept, different ones stop the migration.
  auto existing = target_objects(*target.read);
  if (!existing) {
    out << "✗ Reading the schema of " << target.describe() << " failed: " << existing.error().message << "\n";
    return 1;
  }
  std::vector<statement> creates, triggers;
  std::vector<std::string> trigger_names, conflicts, missing;
  std::size_t n_tables = 0, n_other = 0, kept = 0;
  auto plan = [&](const std::string& type, const std::string& name, const std::string& sql, std::vector<statement>& into) {
    const auto it = existing->find(name);
    if (it == existing->end()) {
      into.push_back({sql, {}});
      return true;
    }
    if (it->second.type != type || normalize_sql(it->second.sql) != normalize_sql(sql)) {
      conflicts.push_back(type + " " + name + ": the target has\n       " + it->second.sql + "\n     the source has\n       " + sql);
    } else {
      ++kept;
    }
    return false;
  };
  for (const auto& t : schema->tables) {
    if (s.data_only) {
      if (!existing->count(t.name)) missing.push_back(t.name);
      continue;
    }
    n_tables += plan("table", t.name, t.sql, creates);
  }
  if (!s.data_only) {
    for (const auto& o : schema->indexes) n_other += plan(o.type, o.name, o.sql, creates);
    for (const auto& o : schema->views) n_other += plan(o.type, o.name, o.sql, creates);
    for (const auto& o : schema->triggers)
      if (plan(o.type, o.name, o.sql, triggers)) trigger_names.push_back(o.name);
  }
  if (!conflicts.empty()) {
    out << "✗ " << target.describe() << " already has objects with other definitions; nothing was written:\n";
    for (const auto& c : conflicts) out << "   - " << c << "\n";
    return 1;
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    out << "✗ --data-only, but " << target.describe() << " has no table(s) " << list << " (create the schema first)\n";
    return 1;
  }

  if (!s.data_only) {
    if (s.dry_run) {
      out << "🧱 Schema: would create " << n_tables << " tables and " << n_other << " indexes/views now, " << triggers.size()
          << " triggers after the data" << (kept ? " (" + std::to_string(kept) + " already there)" : "") << "\n";
    } else if (!creates.empty()) {
      // One atomic batch: if D1 did not answer, it is in if its first object is.
      auto made = run_until_known(*target.store, creates, std::chrono::milliseconds(s.timeout_ms),
                                  [&, first = creates.front().sql]() -> std::optional<bool> {
                                    auto now = target_objects(*target.read);
                                    if (!now) return std::nullopt;
                                    return std::any_of(now->begin(), now->end(), [&](const auto& o) { return o.second.sql == first; });
                                  });
      if (!made) {
        out << "✗ Creating the schema in " << target.describe() << " failed (nothing was created): " << made.error().message << "\n";
        return 1;
      }
      out << "🧱 Created " << n_tables << " tables and " << n_other << " indexes/views" << (kept ? " (" + std::to_string(kept) + " already there)" : "") << "\n";
    } else {
      out << "🧱 Schema already in place (" << kept << " objects)\n";
    }
  }

  // Triggers the target already has on tables rows go into would fire for every copied row:
  // they are set aside, kept in _tandem_migrate_triggers by the same atomic batch that drops
  // them, and put back after the copy (a run that dies in between leaves them there for the next).
  if (!s.schema_only) {
    std::vector<statement> aside{{std::string("CREATE TABLE IF NOT EXISTS ") + k_aside_table + " (name TEXT PRIMARY KEY, sql TEXT NOT NULL)", {}}};
    std::string names;
    for (const auto& [name, o] : *existing) {
      if (o.type != "trigger" || !schema->find(o.table)) continue;
      statement keep{std::string("INSERT OR REPLACE INTO ") + k_aside_table + " (name, sql) VALUES (?, ?)", {}};
      keep.params.positional = {value{name}, value{o.sql}};
      aside.push_back(std::move(keep));
      aside.push_back({"DROP TRIGGER IF EXISTS " + quote_name(name), {}});
      names += (names.empty() ? "" : ", ") + name;
    }
    if (names.empty()) {
      // nothing to set aside
    } else if (s.dry_run) {
      out << "⏸ Would set aside the target's triggers while rows are copied: " << names << "\n";
    } else if (auto r = run_until_known(*target.store, aside, std::chrono::milliseconds(s.timeout_ms)); !r) {
      out << "✗ Setting aside the target's triggers failed (nothing was changed): " << r.error().message << "\n";
      return 1;
    } else {
      out << "⏸ Set aside the target's triggers while rows are copied (they are put back after): " << names << "\n";
    }
  }

  copy_result copied;
  if (!s.schema_only) {
    copy_options co;
    co.batch_rows = s.batch_size;
    co.parallel_tables = s.parallel_tables;
    co.timeout = std::chrono::milliseconds(s.timeout_ms);
    co.continue_on_error = s.continue_on_error;
    co.dry_run = s.dry_run;
    co.resume = s.resume;
    co.source_id = source.describe();
    co.limits = to_d1 ? insert_limits::for_d1() : insert_limits::for_sqlite();
    co.stall_after_batches = s.stall_after_batches;
    std::int64_t total = 0;
    {
      // Totals for the overall bar: one count per table.
      std::vector<statement> counts;
      for (const auto& t : schema->tables) counts.push_back({"SELECT count(*) FROM " + quote_name(t.name), {}});
      if (auto c = source.read->query(std::move(counts)))
        for (const auto& r : *c)
          if (!r.rows.empty() && std::holds_alternative<std::int64_t>(r.rows[0][0])) total += std::get<std::int64_t>(r.rows[0][0]);
    }
    if (s.resume) out << "↻ Resuming from the checkpoint in " << target.describe() << "\n";
    progress bar(out, progress::parse(s.progress), total);
    observer obs(bar);
    copied = copy_tables(*source.read, schema->tables, *target.store, co, &obs);
    bar.close();
    if (!copied.error.empty()) out << "✗ " << copied.error << "\n";
  }

  const bool data_ok = s.schema_only || copied.ok();
  if (!s.dry_run && !s.schema_only) {
    auto restored = restore_triggers(*target.store, std::chrono::milliseconds(s.timeout_ms));
    if (!restored) {
      out << "⚠ The target's triggers set aside are not back yet (" << restored.error().message << "); the next run puts them back\n";
    } else if (!restored->empty()) {
      // A trigger of the source that an interrupted run had set aside is back already.
      for (std::size_t i = trigger_names.size(); i-- > 0;) {
        if (std::find(restored->begin(), restored->end(), trigger_names[i]) == restored->end()) continue;
        trigger_names.erase(trigger_names.begin() + static_cast<std::ptrdiff_t>(i));
        triggers.erase(triggers.begin() + static_cast<std::ptrdiff_t>(i));
      }
      out << "▶ Put back " << restored->size() << " trigger(s) of the target\n";
    }
  }
  if (!s.dry_run && (data_ok || s.continue_on_error)) {
    std::vector<statement> after = s.data_only ? std::vector<statement>{} : triggers;
    if (!s.schema_only) {
      auto seq = sequence_statements(*schema);
      after.insert(after.end(), seq.begin(), seq.end());
    }
    if (!after.empty()) {
      auto in = [&, first = after.front().sql]() -> std::optional<bool> {
        if (s.data_only || triggers.empty()) return false;  // only counters: setting them twice is harmless
        auto now = target_objects(*target.read);
        if (!now) return std::nullopt;
        return std::any_of(now->begin(), now->end(), [&](const auto& o) { return o.second.sql == first; });
      };
      if (auto r = run_until_known(*target.store, after, std::chrono::milliseconds(s.timeout_ms), in); !r) {
        out << "✗ Creating the triggers / AUTOINCREMENT counters failed: " << r.error().message << "\n";
        copied.error = copied.error.empty() ? "triggers: " + r.error().message : copied.error;
      } else if (!triggers.empty() && !s.data_only) {
        out << "🧱 Created " << triggers.size() << " triggers\n";
      }
    }
  } else if (s.dry_run && !s.schema_only) {
    out << "🧪 Dry run: read " << progress::count(copied.copied_rows()) << " rows from " << copied.tables.size() << " tables; would send "
        << progress::count(static_cast<std::int64_t>(copied.batches)) << " batches of " << progress::count(static_cast<std::int64_t>(copied.statements))
        << " statements, every one within " << (to_d1 ? "D1's" : "SQLite's") << " limits. Nothing was written.\n";
  }
  const bool ok = copied.error.empty() && data_ok;
  if (ok && !s.dry_run && !s.schema_only) {
    if (auto d = drop_checkpoint(*target.store, std::chrono::milliseconds(s.timeout_ms)); !d) out << "⚠ Could not drop the checkpoint table: " << d.error().message << "\n";
  }

  // Validation: every row, both sides, the guide's lines per table.
  std::int64_t validation_errors = 0;
  if (s.validate && !s.dry_run && !s.schema_only && (ok || s.continue_on_error)) {
    validate_options vo;
    vo.how = validate_options::mode::full;
    vo.parallel = 4;
    validation_report header;
    header.first = source.describe();
    header.second = target.describe();
    auto report = validate_databases(*source.read, *target.read, *schema, vo, [&](const table_report& t) {
      out << "🔍 Validating table: " << t.table << "\n";
      if (t.first_rows == t.second_rows) out << "✓ Row counts match: " << progress::count(t.first_rows) << "\n";
      else out << "❌ Row count mismatch: " << kind_name(source) << "=" << t.first_rows << ", " << kind_name(target) << "=" << t.second_rows << "\n";
      if (t.equal()) out << "✓ Data validation passed\n";
      else print_table_report(out, header, t);
      out.flush();
    });
    validation_errors = report.differences() + report.invalid_json();
  }

  const std::string rule(58, '=');
  out << rule << "\n📊 Migration Summary" << (s.dry_run ? " (dry run)" : "") << "\n" << rule << "\n";
  out << "Total tables: " << schema->tables.size() << "\n";
  if (!s.schema_only) {
    out << "Total rows: " << progress::count(copied.total_rows()) << "\n";
    out << (s.dry_run ? "Rows read: " : "Migrated rows: ") << progress::count(copied.copied_rows()) << "\n";
    out << "Failed rows: " << progress::count(copied.failed_rows()) << "\n";
  }
  out << "Validation errors: " << validation_errors << "\n";
  out << "Duration: " << seconds_text(std::chrono::duration<double>(steady::now() - start).count()) << "\n" << rule << "\n";
  const bool success = ok && validation_errors == 0;
  if (success) {
    out << "✓ " << (s.dry_run ? "Dry run completed: the migration can run" : "Migration completed successfully") << "\n";
  } else {
    out << "✗ Migration failed";
    for (const auto& t : copied.tables)
      if (!t.error.empty()) out << "\n   " << t.error;
    if (!copied.error.empty() && std::none_of(copied.tables.begin(), copied.tables.end(), [&](const table_copy& t) { return t.error == copied.error; }))
      out << "\n   " << copied.error;
    if (validation_errors) out << "\n   " << validation_errors << " validation error(s)";
    if (!s.dry_run && !s.schema_only && !ok)
      out << "\n   What was copied is checkpointed: once the cause is fixed, run the same command with --resume to copy the rest.";
    out << "\n";
  }
  out.flush();
  return success ? 0 : 1;
}

int run_migrate(const migrate_command& c) {
  auto s = resolve_settings(c);
  if (!s) {
    std::cerr << "tandem migrate: " << s.error().message << "\n";
    return 2;
  }
  auto from = parse_endpoint(c.from);
  auto to = parse_endpoint(c.to);
  if (!from || !to) {
    std::cerr << "tandem migrate: " << (!from ? from.error().message : to.error().message) << "\n";
    return 2;
  }
  if (from->describe() == to->describe()) {
    std::cerr << "tandem migrate: --from and --to are the same database (" << from->describe() << ")\n";
    return 2;
  }
  const std::chrono::milliseconds timeout(s->timeout_ms);
  auto source = open_database(*from, c.d1, false, timeout);
  if (!source) {
    std::cerr << "tandem migrate: " << source.error().message << "\n";
    return 2;
  }
  // A live backfill: tandem pauses replication first, so D1 holds still while the snapshot is
  // copied; the snapshot's journal position S is where replication goes on afterwards.
  const bool live = !c.via_control.empty();
  if (live && (from->type != endpoint::kind::sqlite || to->type != endpoint::kind::d1 || s->dry_run || s->schema_only)) {
    std::cerr << "tandem migrate: --via-control copies a live SQLite (--from sqlite:PATH) into D1 (--to d1), data included\n";
    return 2;
  }
  if (live && s->resume) {
    // A resumed copy would read a newer snapshot than the rows already copied: writes between
    // the two to copied rows would never reach D1.
    std::cerr << "tandem migrate: a live backfill cannot --resume (each run copies one snapshot whole); "
                 "empty the D1 database and run it again\n";
    return 2;
  }
  auto control = [&](const std::string& line) -> std::optional<std::string> {
    std::string why;
    auto answer = control_exchange(c.via_control, line, why);
    if (!answer) {
      std::cerr << "tandem migrate: " << why << "\n";
      return std::nullopt;
    }
    auto doc = protocol::read_json(*answer);
    const auto* o = doc.ok() ? doc.value.if_object() : nullptr;
    const auto* ok = o ? o->if_contains("ok") : nullptr;
    if (!ok || !ok->is_bool() || !ok->get_bool()) {
      const auto* e = o ? o->if_contains("error") : nullptr;
      std::cerr << "tandem migrate: tandem refused '" << line << "': " << (e && e->is_string() ? std::string(e->get_string()) : *answer) << "\n";
      return std::nullopt;
    }
    return answer;
  };
  if (live && !control("backfill-begin")) return 2;
  std::int64_t snapshot_seq = 0;
  if (auto* r = dynamic_cast<sqlite_reader*>(source->read.get())) {
    if (auto ok = r->snapshot(); !ok) {
      std::cerr << "tandem migrate: " << ok.error().message << "\n";
      return 2;
    }
    if (live) {
      auto seq = journal_position(*r);
      if (!seq) {
        std::cerr << "tandem migrate: " << from->describe() << " has no tandem journal: is tandem running dual-sqlite on it? ("
                  << seq.error().message << "); replication stays paused (tandem ctl resume-replication)\n";
        return 2;
      }
      snapshot_seq = *seq;
      std::cout << "Live backfill: replication paused; copying the snapshot at journal sequence " << snapshot_seq << "\n";
    }
  }
  outcome<opened> target = error{};
  if (s->dry_run && to->type == endpoint::kind::sqlite) {
    // Nothing may be written, not even a new file: look at an existing file read-only, or at
    // an empty database.
    opened o;
    o.where = *to;
    std::error_code ec;
    const std::string path = std::filesystem::exists(to->path, ec) ? to->path : ":memory:";
    backends::sqlite_store_options so;
    so.db.path = path;
    so.db.read_only = path != ":memory:";
    auto st = backends::sqlite_store::open(so);
    if (!st) {
      std::cerr << "tandem migrate: " << st.error().message << "\n";
      return 2;
    }
    o.store = std::move(*st);
    o.read = std::make_unique<d1_reader>(*o.store, "sqlite:" + to->path, timeout);  // reads through the store
    target = std::move(o);
  } else {
    target = open_database(*to, c.d1, true, timeout);
  }
  if (!target) {
    std::cerr << "tandem migrate: " << target.error().message << "\n";
    return 2;
  }
  const int rc = migrate_between(*source, *target, *s, std::cout);
  target->store->shutdown();
  if (live) {
    if (rc != 0) {
      std::cerr << "tandem migrate: the backfill did not complete; replication stays paused and D1 holds a partial copy. "
                   "Fix the cause, empty the D1 database, and run the same command again\n";
      return rc;
    }
    if (!control("backfill-end " + std::to_string(snapshot_seq))) return 1;
    std::cout << "Live backfill done: D1 holds the snapshot at journal sequence " << snapshot_seq
              << "; replication goes on from " << snapshot_seq + 1 << "\n";
  }
  return rc;
}

}  // namespace tandem::tools
