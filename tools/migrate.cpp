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

#include "backends/journal.hpp"
#include "backends/sqlite_connection.hpp"
#include "backends/sqlite_store.hpp"
#include "tools/progress.hpp"
#include "tools/validate.hpp"

namespace tandem::tools {

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

// The journal position of a SQLite snapshot: the last sequence number tandem's journal gave out.
outcome<std::int64_t> journal_position(sqlite_reader& r) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v2(r.handle(), backends::journal_high_water_statement().sql.c_str(), -1, &raw, nullptr);
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

namespace {

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::string kept_text(const migrate_plan& p) { return p.kept ? " (" + std::to_string(p.kept) + " already there)" : ""; }

// Says why the plan writes nothing; false when it may go on.
bool print_refusal(std::ostream& out, const opened& target, const migrate_plan& p) {
  if (!p.conflicts.empty()) {
    out << "✗ " << target.describe() << " already has objects with other definitions; nothing was written:\n";
    for (const auto& c : p.conflicts) out << "   - " << c << "\n";
    return true;
  }
  if (!p.missing.empty()) {
    out << "✗ --data-only, but " << target.describe() << " has no table(s) " << join(p.missing) << " (create the schema first)\n";
    return true;
  }
  return false;
}

// The schema before the rows, and the target's triggers set aside. False when the run stops.
bool prepare_target(std::ostream& out, opened& target, const migrate_plan& p, const migrate_settings& s) {
  if (!s.data_only) {
    if (s.dry_run) {
      out << "🧱 Schema: would create " << p.new_tables << " tables and " << p.new_others << " indexes/views now, " << p.triggers.size()
          << " triggers after the data" << kept_text(p) << "\n";
    } else if (!p.creates.empty()) {
      if (auto made = create_schema(*target.store, *target.read, p, s.timeout()); !made) {
        out << "✗ Creating the schema in " << target.describe() << " failed (nothing was created): " << made.error().message << "\n";
        return false;
      }
      out << "🧱 Created " << p.new_tables << " tables and " << p.new_others << " indexes/views" << kept_text(p) << "\n";
    } else {
      out << "🧱 Schema already in place (" << p.kept << " objects)\n";
    }
  }
  if (p.set_aside_names.empty()) return true;
  const std::string names = join(p.set_aside_names);
  if (s.dry_run) {
    out << "⏸ Would set aside the target's triggers while rows are copied: " << names << "\n";
  } else if (auto r = set_aside_triggers(*target.store, p, s.timeout()); !r) {
    out << "✗ Setting aside the target's triggers failed (nothing was changed): " << r.error().message << "\n";
    return false;
  } else {
    out << "⏸ Set aside the target's triggers while rows are copied (they are put back after): " << names << "\n";
  }
  return true;
}

copy_result copy_rows(std::ostream& out, opened& source, opened& target, const database_schema& schema, const migrate_plan& p,
                      const migrate_settings& s) {
  const std::int64_t total = count_rows(*source.read, schema);
  if (s.resume) out << "↻ Resuming from the checkpoint in " << target.describe() << "\n";
  progress bar(out, progress::parse(s.progress), total);
  observer obs(bar);
  copy_result copied = copy_tables(*source.read, schema.tables, *target.store, p.copy, &obs);
  bar.close();
  if (!copied.error.empty()) out << "✗ " << copied.error << "\n";
  return copied;
}

// After the rows: the target's triggers back, the source's triggers and counters, the checkpoint
// dropped (or, in a dry run, what would have been sent).
void finish_target(std::ostream& out, opened& target, migrate_plan& p, const migrate_settings& s, copy_result& copied, bool data_ok,
                   bool to_d1) {
  if (!s.dry_run && !s.schema_only) {
    auto restored = restore_triggers(*target.store, p, s.timeout());
    if (!restored) {
      out << "⚠ The target's triggers set aside are not back yet (" << restored.error().message << "); the next run puts them back\n";
    } else if (!restored->empty()) {
      out << "▶ Put back " << restored->size() << " trigger(s) of the target\n";
    }
  }
  if (!s.dry_run && (data_ok || s.continue_on_error)) {
    if (auto r = finish_schema(*target.store, *target.read, p, s); !r) {
      out << "✗ Creating the triggers / AUTOINCREMENT counters failed: " << r.error().message << "\n";
      copied.error = copied.error.empty() ? "triggers: " + r.error().message : copied.error;
    } else if (!p.triggers.empty() && !s.data_only) {
      out << "🧱 Created " << p.triggers.size() << " triggers\n";
    }
  } else if (s.dry_run && !s.schema_only) {
    out << "🧪 Dry run: read " << progress::count(copied.copied_rows()) << " rows from " << copied.tables.size() << " tables; would send "
        << progress::count(static_cast<std::int64_t>(copied.batches)) << " batches of " << progress::count(static_cast<std::int64_t>(copied.statements))
        << " statements, every one within " << (to_d1 ? "D1's" : "SQLite's") << " limits. Nothing was written.\n";
  }
  if (copied.error.empty() && data_ok && !s.dry_run && !s.schema_only) {
    if (auto d = drop_checkpoint(*target.store, s.timeout()); !d) out << "⚠ Could not drop the checkpoint table: " << d.error().message << "\n";
  }
}

// Validation: every row, both sides, the guide's lines per table. The number of errors.
std::int64_t validate_copy(std::ostream& out, opened& source, opened& target, const database_schema& schema) {
  validate_options vo;
  vo.how = validate_options::mode::full;
  vo.parallel = 4;
  validation_report header;
  header.first = source.describe();
  header.second = target.describe();
  auto report = validate_databases(*source.read, *target.read, schema, vo, [&](const table_report& t) {
    out << "🔍 Validating table: " << t.table << "\n";
    if (t.first_rows == t.second_rows) out << "✓ Row counts match: " << progress::count(t.first_rows) << "\n";
    else out << "❌ Row count mismatch: " << kind_name(source) << "=" << t.first_rows << ", " << kind_name(target) << "=" << t.second_rows << "\n";
    if (t.equal()) out << "✓ Data validation passed\n";
    else print_table_report(out, header, t);
    out.flush();
  });
  return report.differences() + report.invalid_json();
}

// The guide's summary, and the verdict.
void print_summary(std::ostream& out, const database_schema& schema, const copy_result& copied, const migrate_settings& s, bool ok,
                   std::int64_t validation_errors, double seconds) {
  const std::string rule(58, '=');
  out << rule << "\n📊 Migration Summary" << (s.dry_run ? " (dry run)" : "") << "\n" << rule << "\n";
  out << "Total tables: " << schema.tables.size() << "\n";
  if (!s.schema_only) {
    out << "Total rows: " << progress::count(copied.total_rows()) << "\n";
    out << (s.dry_run ? "Rows read: " : "Migrated rows: ") << progress::count(copied.copied_rows()) << "\n";
    out << "Failed rows: " << progress::count(copied.failed_rows()) << "\n";
  }
  out << "Validation errors: " << validation_errors << "\n";
  out << "Duration: " << seconds_text(seconds) << "\n" << rule << "\n";
  if (ok && validation_errors == 0) {
    out << "✓ " << (s.dry_run ? "Dry run completed: the migration can run" : "Migration completed successfully") << "\n";
    return;
  }
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

}  // namespace

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
  if (const auto problems = schema_problems(*schema, to_d1); !problems.empty()) {
    out << "✗ " << target.describe() << " cannot take this schema; nothing was written:\n";
    for (const auto& p : problems) out << "   - " << p << "\n";
    return 1;
  }
  for (const auto& w : schema->warnings) out << "⚠ " << w << "\n";
  out << "📊 Found " << schema->tables.size() << " tables to migrate\n";

  // What the target already has: identical objects are kept, different ones stop the migration.
  auto existing = read_target_schema(*target.read);
  if (!existing) {
    out << "✗ Reading the schema of " << target.describe() << " failed: " << existing.error().message << "\n";
    return 1;
  }
  auto plan = plan_migration(*schema, *existing, s, to_d1, source.describe());
  if (print_refusal(out, target, plan)) return 1;
  if (!prepare_target(out, target, plan, s)) return 1;

  copy_result copied;
  if (!s.schema_only) copied = copy_rows(out, source, target, *schema, plan, s);
  const bool data_ok = s.schema_only || copied.ok();
  finish_target(out, target, plan, s, copied, data_ok, to_d1);
  const bool ok = copied.error.empty() && data_ok;

  std::int64_t validation_errors = 0;
  if (s.validate && !s.dry_run && !s.schema_only && (ok || s.continue_on_error)) validation_errors = validate_copy(out, source, target, *schema);
  print_summary(out, *schema, copied, s, ok, validation_errors, std::chrono::duration<double>(steady::now() - start).count());
  out.flush();
  return ok && validation_errors == 0 ? 0 : 1;
}

namespace {

// Sends `line` to the control socket of the tandem a live backfill runs beside; its answer, or
// nullopt (said on stderr) when tandem cannot be reached or refused.
std::optional<std::string> ask_tandem(const std::string& socket, const std::string& line) {
  std::string why;
  auto answer = control_exchange(socket, line, why);
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
}

// The target of a dry run into SQLite: nothing may be written, not even a new file, so an
// existing file is looked at read-only, or else an empty database.
outcome<opened> open_dry_run_target(const endpoint& to, std::chrono::milliseconds timeout) {
  opened o;
  o.where = to;
  std::error_code ec;
  const std::string path = std::filesystem::exists(to.path, ec) ? to.path : ":memory:";
  backends::sqlite_store_options so;
  so.db.path = path;
  so.db.read_only = path != ":memory:";
  auto st = backends::sqlite_store::open(so);
  if (!st) return st.error();
  o.store = std::move(*st);
  o.read = std::make_unique<d1_reader>(*o.store, "sqlite:" + to.path, timeout);  // reads through the store
  return o;
}

}  // namespace

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
  auto control = [&](const std::string& line) { return ask_tandem(c.via_control, line); };
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
    target = open_dry_run_target(*to, timeout);
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
