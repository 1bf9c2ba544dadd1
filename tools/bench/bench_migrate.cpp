#include "tools/bench/bench_migrate.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include "tools/bench/guide_db.hpp"
#include "tools/bench/local_d1.hpp"
#include "tools/migrate.hpp"
#include "tools/progress.hpp"
#include "tools/move/validate.hpp"

namespace tandem::tools {
namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

double since(steady::time_point t) { return std::chrono::duration<double>(steady::now() - t).count(); }

struct route {
  std::string name;
  double seconds = -1;
  std::string result;
};

// Opens the local D1 database `id` for reading and writing.
opened open_local(const d1_local_process& d1, const std::string& id) {
  ::setenv("TANDEM_BENCH_D1_TOKEN", d1_local_process::k_token, 1);
  d1_settings s;
  s.endpoint = d1.url();
  s.account_id = d1_local_process::k_account;
  s.database_id = id;
  s.token_env = "TANDEM_BENCH_D1_TOKEN";
  auto o = open_database(endpoint{endpoint::kind::d1, {}, id}, s, true);
  if (!o) throw std::runtime_error(o.error().message);
  return std::move(*o);
}

std::string validation_text(const validation_report& r) {
  if (r.equal()) return "validate --full: equal";
  std::string names;
  for (const auto& t : r.tables)
    if (!t.equal()) names += (names.empty() ? "" : ", ") + t.table;
  for (const auto& t : r.only_in_first) names += (names.empty() ? "" : ", ") + t + " (missing)";
  return "validate --full: " + progress::count(r.differences()) + " rows differ in " + names;
}

}  // namespace

// Long (~125 lines): a measurement script, route after route over one generated database.
int run_bench_migrate(const bench_migrate_options& o) {
  try {
    if (!o.generate.empty()) {
      const auto t0 = steady::now();
      guide_db_options g;
      g.tables = o.tables;
      g.rows = o.rows;
      g.large_blobs = o.large_blobs;
      g.sql_text_traps = o.sql_text_traps;
      const auto st = generate_guide_database(o.generate, g);
      std::printf("wrote %s: %d tables, %s rows in %.2f s\n", o.generate.c_str(), st.tables, progress::count(st.rows).c_str(), since(t0));
      return 0;
    }
    const fs::path dir = o.dir.empty() ? fs::temp_directory_path() / ("tandem-bench-migrate-" + std::to_string(::getpid())) : fs::path(o.dir);
    fs::create_directories(dir);
    const std::string db = (dir / "guide.db").string();
    fs::remove(db);
    fs::remove(db + "-wal");
    fs::remove(db + "-shm");
    auto t0 = steady::now();
    guide_db_options g;
    g.tables = o.tables;
    g.rows = o.rows;
    g.large_blobs = o.large_blobs;
    g.sql_text_traps = o.sql_text_traps;
    const auto st = generate_guide_database(db, g);
    const double gen_s = since(t0);
    const std::string binary = fs::read_symlink("/proc/self/exe").string();
    const std::string tools = o.d1_local.empty() ? default_d1_local_dir(binary) : o.d1_local;
    auto d1_owner = std::make_unique<d1_local_process>(tools, (dir / "d1-state").string());
    auto& d1 = *d1_owner;
    std::printf("tandem bench migrate: %d tables, %s rows (generated in %.2f s, %.1f MB); local D1 at %s; %u cores\n", st.tables,
                progress::count(st.rows).c_str(), gen_s, static_cast<double>(fs::file_size(db)) / 1e6, d1.url().c_str(),
                std::thread::hardware_concurrency());
    std::fflush(stdout);

    std::vector<route> routes;
    // tandem migrate, in process: the same code as the command.
    auto source = open_database(endpoint{endpoint::kind::sqlite, db, {}}, {}, false);
    if (!source) throw std::runtime_error(source.error().message);
    if (auto ok = dynamic_cast<sqlite_reader&>(*source->read).snapshot(); !ok) throw std::runtime_error(ok.error().message);
    auto target = open_local(d1, d1.fresh(1));
    migrate_settings ms;
    ms.batch_size = o.batch_size;
    ms.parallel_tables = o.parallel_tables;
    ms.validate = false;
    ms.progress = "none";
    std::ostringstream log;
    t0 = steady::now();
    const int rc = migrate_between(*source, target, ms, log);
    const double migrate_s = since(t0);
    if (rc != 0) {
      std::cerr << log.str();
      throw std::runtime_error("tandem migrate failed");
    }
    validate_options vo;
    database_schema schema = *read_schema(*source->read);
    t0 = steady::now();
    const auto report = validate_databases(*source->read, *target.read, schema, vo);
    const double validate_s = since(t0);
    char name[96];
    std::snprintf(name, sizeof name, "tandem migrate (batch %zu, %d table%s at once)", o.batch_size, o.parallel_tables, o.parallel_tables > 1 ? "s" : "");
    routes.push_back({name, migrate_s, validation_text(report)});
    routes.push_back({"tandem validate --full", validate_s, report.equal() ? "equal" : "differences found"});
    bool exact = report.equal();
    target.store->shutdown();

    if (o.wrangler) {
      // The usual route: a text dump, run by wrangler against a local D1 of its own.
      const std::string dump = (dir / "dump.sql").string();
      const std::string wstate = (dir / "wrangler-state").string();
      fs::remove_all(wstate);
      t0 = steady::now();
      std::string wrangler_error;
      try {
        shell_output("sqlite3 " + db + " .dump > " + dump);
        shell_output("cd " + tools + " && env WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false WRANGLER_HIDE_BANNER=true " +
                     "CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_LOG_PATH=" + wstate + "/logs NO_COLOR=1 node node_modules/wrangler/bin/wrangler.js " +
                     "d1 execute d1-local-01 --local --persist-to " + wstate + " --config wrangler.jsonc --file " + dump + " --yes 2>&1");
      } catch (const std::exception& e) {
        wrangler_error = e.what();
      }
      const double wrangler_s = since(t0);
      std::string result;
      if (!wrangler_error.empty()) {
        // wrangler's own words, without its colours and banner.
        std::string plain;
        for (std::size_t i = 0; i < wrangler_error.size(); ++i) {
          if (wrangler_error[i] == '\x1b') {
            while (i < wrangler_error.size() && wrangler_error[i] != 'm') ++i;
            continue;
          }
          plain += wrangler_error[i] == '\n' ? ' ' : wrangler_error[i];
        }
        const auto cut = plain.find("[ERROR]");
        result = "failed: " + plain.substr(cut == std::string::npos ? 0 : cut, 140);
      } else {
        d1_local_process wd1(tools, wstate);
        auto w = open_local(wd1, "00000000-0000-4000-8000-000000000001");
        result = validation_text(validate_databases(*source->read, *w.read, schema, vo));
        w.store->shutdown();
      }
      routes.push_back({"sqlite3 .dump | wrangler d1 execute --local --file", wrangler_s, result});
    }

    std::printf("%-56s %9s %10s   %s\n", "route", "time", "rows/s", "result");
    std::printf("%s\n", std::string(110, '-').c_str());
    for (const auto& r : routes) {
      std::printf("%-56s %8.2fs %10s   %s\n", r.name.c_str(), r.seconds, progress::count(static_cast<std::int64_t>(static_cast<double>(st.rows) / r.seconds)).c_str(),
                  r.result.c_str());
    }
    std::printf("%-56s %8.2fs %10s   %s\n", "the guide's migration script (as the guide reports it)", 45.23, progress::count(static_cast<std::int64_t>(150000 / 45.23)).c_str(),
                "150,000 rows, 95 tables");
    std::fflush(stdout);
    target.store.reset();
    source->store.reset();
    d1_owner.reset();  // stopped before its folder goes
    if (o.dir.empty()) fs::remove_all(dir);
    return exact ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "bench migrate failed: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace tandem::tools
