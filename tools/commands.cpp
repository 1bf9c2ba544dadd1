#include "tools/commands.hpp"

#include <CLI/CLI.hpp>

#include "tools/backup.hpp"
#include "tools/move/database.hpp"
#include "tools/migrate.hpp"
#include "tools/validate.hpp"

namespace tandem::tools {

struct move_commands::state {
  CLI::App* migrate = nullptr;
  CLI::App* validate = nullptr;
  CLI::App* backup = nullptr;
  CLI::App* restore = nullptr;
  backup_command bc;
  restore_command rc;
  d1_settings backup_d1, restore_d1;
  std::string backup_config, restore_config;
  bool restore_no_validate = false;

  // One set of D1 settings per command, so that each --help lists its own flags.
  d1_settings migrate_d1, validate_d1;
  std::string migrate_config, validate_config;

  migrate_command mc;
  validate_command vc;
  std::vector<std::string> validate_positional;
  bool quick = false, full = false;
  std::optional<std::size_t> sample;
  bool no_json_check = false;
};

namespace {

void add_d1_flags(CLI::App* cmd, d1_settings& d1, std::string& config) {
  cmd->add_option("-c,--config", config, "tandem config file: its \"d1\" section says how to reach D1")->check(CLI::ExistingFile);
  cmd->add_option("--d1-transport", d1.transport, "rest (D1's REST API) or bridge (tandem's bridge Worker) (default $TANDEM_D1_TRANSPORT, else rest)")
      ->check(CLI::IsMember({"rest", "bridge"}));
  cmd->add_option("--d1-endpoint", d1.endpoint, "D1's REST API, or the bridge Worker's URL (default $TANDEM_D1_ENDPOINT, else https://api.cloudflare.com)");
  cmd->add_option("--d1-account", d1.account_id, "Cloudflare account id (default $CLOUDFLARE_ACCOUNT_ID)");
  cmd->add_option("--d1-database", d1.database_id, "D1 database id, a UUID (default $TANDEM_D1_DATABASE_ID; or write d1:ID)");
  cmd->add_option("--d1-token-env", d1.token_env, "environment variable holding the API token")->capture_default_str();
  cmd->add_option("--d1-ca-file", d1.ca_file, "extra CA certificate to trust");
}

constexpr const char* k_d1_footer =
    "Databases: sqlite:PATH, d1 (the D1 database from --d1-database, the config or the environment), d1:DATABASE_ID.\n"
    "D1 is reached over its REST API with the token in $CLOUDFLARE_API_TOKEN (or --d1-token-env).";

}  // namespace

move_commands::move_commands() : s_(std::make_unique<state>()) {}
move_commands::~move_commands() = default;

void move_commands::add(CLI::App& app) {
  auto& s = *s_;

  // migrate
  s.migrate = app.add_subcommand("migrate", "copy a database's schema and rows from SQLite to D1, or back (the rollback)");
  auto* m = s.migrate;
  auto& mc = s.mc;
  m->add_option("--from", mc.from, "the source: sqlite:PATH or d1")->required();
  m->add_option("--to", mc.to, "the target: d1 or sqlite:PATH")->required();
  m->add_option("--batch-size", mc.batch_size, "rows per committed batch (env MIGRATION_BATCH_SIZE, default 1000)");
  m->add_flag_callback("--validate", [&mc] { mc.validate = true; }, "compare every row afterwards (env MIGRATION_VALIDATE, default true)");
  m->add_flag_callback("--no-validate", [&mc] { mc.validate = false; }, "skip the validation");
  m->add_flag_callback("--continue-on-error", [&mc] { mc.continue_on_error = true; },
                       "a failing table does not stop the others (env MIGRATION_CONTINUE_ON_ERROR, default false)");
  m->add_flag_callback("--dry-run", [&mc] { mc.dry_run = true; },
                       "read everything and check every limit, write nothing (env MIGRATION_DRY_RUN, default false)");
  m->add_option("--parallel-tables", mc.parallel_tables, "tables copied at once (env MIGRATION_PARALLEL_TABLES, default 1)");
  m->add_option("--timeout", mc.timeout_ms, "ms one batch may take, retries included, before the run stops (env MIGRATION_TIMEOUT, default 60000)");
  m->add_flag("--schema-only", mc.schema_only, "create tables, indexes, views and triggers; copy no rows");
  m->add_flag("--data-only", mc.data_only, "copy rows into tables that already exist");
  m->add_flag("--resume", mc.resume, "continue an interrupted migration from the checkpoint in the target");
  m->add_option("--via-control", mc.via_control,
                "live backfill: the control socket of a tandem running dual-sqlite on --from; writes during the copy are neither lost nor applied twice");
  m->add_option("--tables", mc.tables, "only these tables (comma-separated)")->delimiter(',');
  m->add_option("--progress", mc.progress, "auto (bars on a terminal, lines otherwise), bars, lines or none")
      ->check(CLI::IsMember({"auto", "bars", "lines", "none"}))
      ->capture_default_str();
  add_d1_flags(m, s.migrate_d1, s.migrate_config);
  m->footer(std::string(k_d1_footer) +
            "\nExamples:\n"
            "  tandem migrate --from sqlite:var/app.db --to d1 --dry-run\n"
            "  tandem migrate --from sqlite:var/app.db --to d1 --batch-size 5000\n"
            "  tandem migrate --from sqlite:var/app.db --to d1 --resume      # after an interruption\n"
            "  tandem migrate --from d1 --to sqlite:var/rollback.db           # the rollback\n"
            "  tandem migrate --from sqlite:var/tandem.db --to d1 --via-control var/tandem.sock   # live, tandem in dual-sqlite\n"
            "Exit status: 0 migrated and validated, 1 failed (see the summary), 2 bad arguments or unreachable database.");

  // validate
  s.validate = app.add_subcommand("validate", "compare two databases (SQLite and D1): row counts, sampled rows, or every row");
  auto* v = s.validate;
  auto& vc = s.vc;
  v->add_option("databases", s.validate_positional, "the two databases, e.g. sqlite:var/app.db d1")->expected(0, 2);
  v->add_option("--from", vc.first, "the first database (where chunks are cut and samples picked)");
  v->add_option("--to", vc.second, "the second database");
  v->add_flag("--quick", s.quick, "row counts per table only");
  v->add_option("--sample", s.sample, "N random rows per table, compared by primary key");
  v->add_flag("--full", s.full, "every row, by checksums over primary-key chunks (the default)");
  v->add_option("--chunk-rows", vc.options.chunk_rows, "rows per checksum chunk with --full")->capture_default_str();
  v->add_option("--parallel", vc.options.parallel, "tables compared at once")->capture_default_str();
  v->add_option("--tables", vc.tables, "only these tables (comma-separated)")->delimiter(',');
  v->add_flag("--no-json-check", s.no_json_check, "do not check that JSON columns parse");
  v->add_flag("--json", vc.json, "print one JSON object instead of the readable report");
  v->add_option("--timeout", vc.timeout_ms, "ms each request to D1 may take")->capture_default_str();
  add_d1_flags(v, s.validate_d1, s.validate_config);
  v->footer(std::string(k_d1_footer) +
            "\nExamples:\n"
            "  tandem validate sqlite:var/app.db d1 --quick\n"
            "  tandem validate --from sqlite:var/app.db --to d1 --full --json\n"
            "Exit status: 0 equal, 1 different (each differing key is named), 2 could not compare.");

  // backup
  s.backup = app.add_subcommand("backup", "copy a SQLite file (online, consistent) or a D1 database (JSON and SQL) into a folder");
  auto* bk = s.backup;
  bk->add_option("database", s.bc.from, "sqlite:PATH, d1 or d1:ID")->required();
  bk->add_option("--to", s.bc.dir, "the folder to write the backup into (created if missing)")->required();
  bk->add_option("--timeout", s.bc.timeout_ms, "ms each request to D1 may take")->capture_default_str();
  add_d1_flags(bk, s.backup_d1, s.backup_config);
  bk->footer(std::string(k_d1_footer) +
             "\nsqlite:PATH gives DIR/<name>-YYYY-MM-DD.db, made with SQLite's backup API while others keep writing.\n"
             "d1 gives DIR/d1-<id>-YYYY-MM-DD/ with tables/*.json (wrangler d1 execute --json's shape, exact values),\n"
             "dump.sql and manifest.json. A backup never overwrites another (-2, -3, ... are added).\n"
             "Examples:\n"
             "  tandem backup sqlite:.monotask/project.db --to .monotask/backups\n"
             "  tandem backup d1 --to backups");

  // restore
  s.restore = app.add_subcommand("restore", "restore a backup (a .db file or a D1 backup folder) into SQLite or D1");
  auto* rs = s.restore;
  rs->add_option("backup", s.rc.from, "a .db file made by tandem backup (or any SQLite file), or a D1 backup folder")->required();
  rs->add_option("--to", s.rc.to, "sqlite:PATH, d1 or d1:ID")->required();
  rs->add_flag("--force", s.rc.force, "replace the target's content if it is not empty");
  rs->add_flag("--no-validate", s.restore_no_validate, "into D1: skip comparing every row afterwards");
  rs->add_option("--progress", s.rc.progress, "auto, bars, lines or none")->check(CLI::IsMember({"auto", "bars", "lines", "none"}))->capture_default_str();
  rs->add_option("--timeout", s.rc.timeout_ms, "ms each request to D1 may take")->capture_default_str();
  add_d1_flags(rs, s.restore_d1, s.restore_config);
  rs->footer(std::string(k_d1_footer) +
             "\nA target that holds any table, view, index or trigger is refused unless --force.\n"
             "Examples:\n"
             "  tandem restore .monotask/backups/project-2026-12-01.db --to sqlite:.monotask/project.db --force\n"
             "  tandem restore backups/d1-<id>-2026-12-01 --to d1\n"
             "Exit status: 0 restored (and, into D1, validated), 1 refused or failed, 2 bad arguments.");
}

std::optional<int> move_commands::run(const config_loader& load_config) {
  auto& s = *s_;
  if (s.migrate->parsed()) {
    if (!s.migrate_config.empty()) load_config(s.migrate_config, s.migrate_d1);
    s.mc.d1 = s.migrate_d1;
    return run_migrate(s.mc);
  }
  if (s.backup->parsed()) {
    if (!s.backup_config.empty()) load_config(s.backup_config, s.backup_d1);
    s.bc.d1 = s.backup_d1;
    return run_backup(s.bc);
  }
  if (s.restore->parsed()) {
    if (!s.restore_config.empty()) load_config(s.restore_config, s.restore_d1);
    s.rc.d1 = s.restore_d1;
    s.rc.validate = !s.restore_no_validate;
    return run_restore(s.rc);
  }
  if (s.validate->parsed()) {
    if (!s.validate_config.empty()) load_config(s.validate_config, s.validate_d1);
    auto& vc = s.vc;
    vc.d1 = s.validate_d1;
    if (s.validate_positional.size() >= 1 && vc.first.empty()) vc.first = s.validate_positional[0];
    if (s.validate_positional.size() >= 2 && vc.second.empty()) vc.second = s.validate_positional[1];
    if (vc.first.empty() || vc.second.empty()) {
      std::fprintf(stderr, "tandem validate: name two databases, e.g. tandem validate sqlite:var/app.db d1\n");
      return 2;
    }
    if (static_cast<int>(s.quick) + static_cast<int>(s.full) + static_cast<int>(s.sample.has_value()) > 1) {
      std::fprintf(stderr, "tandem validate: choose one of --quick, --sample N and --full\n");
      return 2;
    }
    if (s.quick) vc.options.how = validate_options::mode::quick;
    if (s.sample) {
      vc.options.how = validate_options::mode::sample;
      vc.options.sample = *s.sample;
    }
    vc.options.check_json = !s.no_json_check;
    if (vc.options.chunk_rows == 0) vc.options.chunk_rows = 1;
    return run_validate(vc);
  }
  return std::nullopt;
}

}  // namespace tandem::tools
