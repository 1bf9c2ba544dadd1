#include "tools/commands.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "tools/backup.hpp"
#include "tools/move/database.hpp"
#include "tools/migrate.hpp"
#include "tools/validate.hpp"

namespace tandem::tools {

namespace {

// One command's parsed line: its own D1 settings and config file, so that each --help lists its
// own flags.
struct migrate_line {
  CLI::App* cmd = nullptr;
  migrate_command c;
  d1_settings d1;
  std::string config;
};

struct validate_line {
  CLI::App* cmd = nullptr;
  validate_command c;
  d1_settings d1;
  std::string config;
  std::vector<std::string> positional;
  bool quick = false, full = false;
  std::optional<std::size_t> sample;
  bool no_json_check = false;
};

struct backup_line {
  CLI::App* cmd = nullptr;
  backup_command c;
  d1_settings d1;
  std::string config;
};

struct restore_line {
  CLI::App* cmd = nullptr;
  restore_command c;
  d1_settings d1;
  std::string config;
  bool no_validate = false;
};

constexpr const char* k_d1_footer =
    "Databases: sqlite:PATH, d1 (the D1 database from --d1-database, the config or the environment), d1:DATABASE_ID.\n"
    "D1 is reached over its REST API with the token in $CLOUDFLARE_API_TOKEN (or --d1-token-env).";

// The flags that say how to reach D1, and the footer that explains them followed by `footer`.
void add_d1_flags(CLI::App* cmd, d1_settings& d1, std::string& config, const std::string& footer) {
  cmd->add_option("-c,--config", config, "tandem config file: its \"d1\" section says how to reach D1")->check(CLI::ExistingFile);
  cmd->add_option("--d1-transport", d1.transport, "rest (D1's REST API) or bridge (tandem's bridge Worker) (default $TANDEM_D1_TRANSPORT, else rest)")
      ->check(CLI::IsMember({"rest", "bridge"}));
  cmd->add_option("--d1-endpoint", d1.endpoint, "D1's REST API, or the bridge Worker's URL (default $TANDEM_D1_ENDPOINT, else https://api.cloudflare.com)");
  cmd->add_option("--d1-account", d1.account_id, "Cloudflare account id (default $CLOUDFLARE_ACCOUNT_ID)");
  cmd->add_option("--d1-database", d1.database_id, "D1 database id, a UUID (default $TANDEM_D1_DATABASE_ID; or write d1:ID)");
  cmd->add_option("--d1-token-env", d1.token_env, "environment variable holding the API token")->capture_default_str();
  cmd->add_option("--d1-ca-file", d1.ca_file, "extra CA certificate to trust");
  cmd->footer(std::string(k_d1_footer) + footer);
}

void add_timeout(CLI::App* cmd, long& timeout_ms) {
  cmd->add_option("--timeout", timeout_ms, "ms each request to D1 may take")->capture_default_str();
}

void add_migrate(CLI::App& app, migrate_line& m) {
  m.cmd = app.add_subcommand("migrate", "copy a database's schema and rows from SQLite to D1, or back (the rollback)");
  auto* cmd = m.cmd;
  auto& mc = m.c;
  cmd->add_option("--from", mc.from, "the source: sqlite:PATH or d1")->required();
  cmd->add_option("--to", mc.to, "the target: d1 or sqlite:PATH")->required();
  cmd->add_option("--batch-size", mc.batch_size, "rows per committed batch (env MIGRATION_BATCH_SIZE, default 1000)");
  cmd->add_flag_callback("--validate", [&mc] { mc.validate = true; }, "compare every row afterwards (env MIGRATION_VALIDATE, default true)");
  cmd->add_flag_callback("--no-validate", [&mc] { mc.validate = false; }, "skip the validation");
  cmd->add_flag_callback("--continue-on-error", [&mc] { mc.continue_on_error = true; },
                         "a failing table does not stop the others (env MIGRATION_CONTINUE_ON_ERROR, default false)");
  cmd->add_flag_callback("--dry-run", [&mc] { mc.dry_run = true; },
                         "read everything and check every limit, write nothing (env MIGRATION_DRY_RUN, default false)");
  cmd->add_option("--parallel-tables", mc.parallel_tables, "tables copied at once (env MIGRATION_PARALLEL_TABLES, default 1)");
  cmd->add_option("--timeout", mc.timeout_ms, "ms one batch may take, retries included, before the run stops (env MIGRATION_TIMEOUT, default 60000)");
  cmd->add_flag("--schema-only", mc.schema_only, "create tables, indexes, views and triggers; copy no rows");
  cmd->add_flag("--data-only", mc.data_only, "copy rows into tables that already exist");
  cmd->add_flag("--resume", mc.resume, "continue an interrupted migration from the checkpoint in the target");
  cmd->add_option("--via-control", mc.via_control,
                  "live backfill: the control socket of a tandem running dual-sqlite on --from; writes during the copy are neither lost nor applied twice");
  cmd->add_option("--tables", mc.tables, "only these tables (comma-separated)")->delimiter(',');
  cmd->add_option("--progress", mc.progress, "auto (bars on a terminal, lines otherwise), bars, lines or none")
      ->check(CLI::IsMember({"auto", "bars", "lines", "none"}))
      ->capture_default_str();
  add_d1_flags(cmd, m.d1, m.config,
               "\nExamples:\n"
               "  tandem migrate --from sqlite:var/app.db --to d1 --dry-run\n"
               "  tandem migrate --from sqlite:var/app.db --to d1 --batch-size 5000\n"
               "  tandem migrate --from sqlite:var/app.db --to d1 --resume      # after an interruption\n"
               "  tandem migrate --from d1 --to sqlite:var/rollback.db           # the rollback\n"
               "  tandem migrate --from sqlite:var/tandem.db --to d1 --via-control var/tandem.sock   # live, tandem in dual-sqlite\n"
               "Exit status: 0 migrated and validated, 1 failed (see the summary), 2 bad arguments or unreachable database.");
}

void add_validate(CLI::App& app, validate_line& v) {
  v.cmd = app.add_subcommand("validate", "compare two databases (SQLite and D1): row counts, sampled rows, or every row");
  auto* cmd = v.cmd;
  auto& vc = v.c;
  cmd->add_option("databases", v.positional, "the two databases, e.g. sqlite:var/app.db d1")->expected(0, 2);
  cmd->add_option("--from", vc.first, "the first database (where chunks are cut and samples picked)");
  cmd->add_option("--to", vc.second, "the second database");
  cmd->add_flag("--quick", v.quick, "row counts per table only");
  cmd->add_option("--sample", v.sample, "N random rows per table, compared by primary key");
  cmd->add_flag("--full", v.full, "every row, by checksums over primary-key chunks (the default)");
  cmd->add_option("--chunk-rows", vc.options.chunk_rows, "rows per checksum chunk with --full")->capture_default_str();
  cmd->add_option("--parallel", vc.options.parallel, "tables compared at once")->capture_default_str();
  cmd->add_option("--tables", vc.tables, "only these tables (comma-separated)")->delimiter(',');
  cmd->add_flag("--no-json-check", v.no_json_check, "do not check that JSON columns parse");
  cmd->add_flag("--json", vc.json, "print one JSON object instead of the readable report");
  add_timeout(cmd, vc.timeout_ms);
  add_d1_flags(cmd, v.d1, v.config,
               "\nExamples:\n"
               "  tandem validate sqlite:var/app.db d1 --quick\n"
               "  tandem validate --from sqlite:var/app.db --to d1 --full --json\n"
               "Exit status: 0 equal, 1 different (each differing key is named), 2 could not compare.");
}

void add_backup(CLI::App& app, backup_line& b) {
  b.cmd = app.add_subcommand("backup", "copy a SQLite file (online, consistent) or a D1 database (JSON and SQL) into a folder");
  auto* cmd = b.cmd;
  cmd->add_option("database", b.c.from, "sqlite:PATH, d1 or d1:ID")->required();
  cmd->add_option("--to", b.c.dir, "the folder to write the backup into (created if missing)")->required();
  add_timeout(cmd, b.c.timeout_ms);
  add_d1_flags(cmd, b.d1, b.config,
               "\nsqlite:PATH gives DIR/<name>-YYYY-MM-DD.db, made with SQLite's backup API while others keep writing.\n"
               "d1 gives DIR/d1-<id>-YYYY-MM-DD/ with tables/*.json (wrangler d1 execute --json's shape, exact values),\n"
               "dump.sql and manifest.json. A backup never overwrites another (-2, -3, ... are added).\n"
               "Examples:\n"
               "  tandem backup sqlite:.monotask/project.db --to .monotask/backups\n"
               "  tandem backup d1 --to backups");
}

void add_restore(CLI::App& app, restore_line& r) {
  r.cmd = app.add_subcommand("restore", "restore a backup (a .db file or a D1 backup folder) into SQLite or D1");
  auto* cmd = r.cmd;
  cmd->add_option("backup", r.c.from, "a .db file made by tandem backup (or any SQLite file), or a D1 backup folder")->required();
  cmd->add_option("--to", r.c.to, "sqlite:PATH, d1 or d1:ID")->required();
  cmd->add_flag("--force", r.c.force, "replace the target's content if it is not empty");
  cmd->add_flag("--no-validate", r.no_validate, "into D1: skip comparing every row afterwards");
  cmd->add_option("--progress", r.c.progress, "auto, bars, lines or none")->check(CLI::IsMember({"auto", "bars", "lines", "none"}))->capture_default_str();
  add_timeout(cmd, r.c.timeout_ms);
  add_d1_flags(cmd, r.d1, r.config,
               "\nA target that holds any table, view, index or trigger is refused unless --force.\n"
               "Examples:\n"
               "  tandem restore .monotask/backups/project-2026-12-01.db --to sqlite:.monotask/project.db --force\n"
               "  tandem restore backups/d1-<id>-2026-12-01 --to d1\n"
               "Exit status: 0 restored (and, into D1, validated), 1 refused or failed, 2 bad arguments.");
}

// Fills the command's D1 settings from its config file (flags win) and hands them over.
template <class Line>
void settle_d1(Line& line, const move_commands::config_loader& load_config) {
  if (!line.config.empty()) load_config(line.config, line.d1);
  line.c.d1 = line.d1;
}

int run_validate_line(validate_line& v) {
  auto& vc = v.c;
  if (v.positional.size() >= 1 && vc.first.empty()) vc.first = v.positional[0];
  if (v.positional.size() >= 2 && vc.second.empty()) vc.second = v.positional[1];
  if (vc.first.empty() || vc.second.empty()) {
    std::fprintf(stderr, "tandem validate: name two databases, e.g. tandem validate sqlite:var/app.db d1\n");
    return 2;
  }
  if (static_cast<int>(v.quick) + static_cast<int>(v.full) + static_cast<int>(v.sample.has_value()) > 1) {
    std::fprintf(stderr, "tandem validate: choose one of --quick, --sample N and --full\n");
    return 2;
  }
  if (v.quick) vc.options.how = validate_options::mode::quick;
  if (v.sample) {
    vc.options.how = validate_options::mode::sample;
    vc.options.sample = *v.sample;
  }
  vc.options.check_json = !v.no_json_check;
  if (vc.options.chunk_rows == 0) vc.options.chunk_rows = 1;
  return run_validate(vc);
}

}  // namespace

struct move_commands::state {
  migrate_line migrate;
  validate_line validate;
  backup_line backup;
  restore_line restore;
};

move_commands::move_commands() : s_(std::make_unique<state>()) {}
move_commands::~move_commands() = default;

void move_commands::add(CLI::App& app) {
  add_migrate(app, s_->migrate);
  add_validate(app, s_->validate);
  add_backup(app, s_->backup);
  add_restore(app, s_->restore);
}

std::optional<int> move_commands::run(const config_loader& load_config) {
  auto& s = *s_;
  if (s.migrate.cmd->parsed()) {
    settle_d1(s.migrate, load_config);
    return run_migrate(s.migrate.c);
  }
  if (s.backup.cmd->parsed()) {
    settle_d1(s.backup, load_config);
    return run_backup(s.backup.c);
  }
  if (s.restore.cmd->parsed()) {
    settle_d1(s.restore, load_config);
    s.restore.c.validate = !s.restore.no_validate;
    return run_restore(s.restore.c);
  }
  if (s.validate.cmd->parsed()) {
    settle_d1(s.validate, load_config);
    return run_validate_line(s.validate);
  }
  return std::nullopt;
}

}  // namespace tandem::tools
