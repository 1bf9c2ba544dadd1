// The move tools against the real local D1: tandem migrate (both directions, interrupted by
// kill -9 and resumed), validate (naming changed, deleted and added rows), backup and restore,
// and bad input. The source is a generated guide-like database (tools/bench/guide_db.hpp) at a scale
// the ASan build copies in seconds; `tandem bench migrate` runs the guide's full scale.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "backends/d1_store.hpp"
#include "backends/sqlite_store.hpp"
#include "proxy/control.hpp"
#include "tests/support/d1_support.hpp"
#include "tests/support/eventually.hpp"
#include "tools/backup.hpp"
#include "tools/move/copy_engine.hpp"
#include "tools/bench/guide_db.hpp"
#include "tools/migrate.hpp"
#include "tools/validate.hpp"

namespace tandem::testing {
namespace {

namespace fs = std::filesystem;
using protocol::value;

struct captured {
  int status = -1;
  std::string out, err;
};

// Runs a tool's entry point in this process with std::cout and std::cerr captured.
template <class F>
captured capture(F&& f) {
  std::ostringstream out, err;
  auto* old_out = std::cout.rdbuf(out.rdbuf());
  auto* old_err = std::cerr.rdbuf(err.rdbuf());
  captured c;
  c.status = f();
  std::cout.rdbuf(old_out);
  std::cerr.rdbuf(old_err);
  c.out = out.str();
  c.err = err.str();
  return c;
}

// The environment every tandem child process and in-process command reads D1's settings from.
void point_at_local_d1() {
  auto& d1 = local_d1::instance();
  ::setenv("CLOUDFLARE_API_TOKEN", k_d1_token, 1);
  ::setenv("CLOUDFLARE_ACCOUNT_ID", k_d1_account, 1);
  ::setenv("TANDEM_D1_ENDPOINT", d1.tools_endpoint().c_str(), 1);
}

// `tandem ARGS...` as a real process; stdout and stderr go to files in `dir`.
class child {
 public:
  child(const temp_dir& dir, std::vector<std::string> args, std::vector<std::string> env = {}) : out_(dir.file("child.out")), err_(dir.file("child.err")) {
    point_at_local_d1();
    pid_ = ::fork();
    if (pid_ == 0) {
      const int o = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      const int e = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(o, 1);
      ::dup2(e, 2);
      for (auto& kv : env) ::putenv(kv.data());
      std::vector<char*> argv{const_cast<char*>(TANDEM_BINARY)};
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(TANDEM_BINARY, argv.data());
      ::_exit(127);
    }
  }
  ~child() { kill9(); }
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }
  // Waits until stderr holds `text` or the process ended; a failure unless stderr holds it.
  ::testing::AssertionResult wait_for_err(const std::string& text) {
    auto holds = [&] { return err().find(text) != std::string::npos; };
    auto ended = [&] {
      int status = 0;
      if (pid_ > 0 && ::waitpid(pid_, &status, WNOHANG) == pid_) pid_ = -1;
      return pid_ <= 0;
    };
    auto waited = eventually("tandem's stderr to hold \"" + text + "\"", [&] { return holds() || ended(); }, std::chrono::minutes(2));
    if (!waited || holds()) return waited;
    return ::testing::AssertionFailure() << "tandem exited before its stderr held \"" << text << "\"";
  }

 private:
  static std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::string out_, err_;
  pid_t pid_ = -1;
};

captured run_tandem(const temp_dir& dir, std::vector<std::string> args, std::vector<std::string> env = {}) {
  child c(dir, std::move(args), std::move(env));
  captured r;
  r.status = c.wait();
  r.out = c.out();
  r.err = c.err();
  return r;
}

// A generated guide-like database, one per (tables, rows) per test process.
const std::string& guide_db(int tables, std::int64_t rows) {
  static temp_dir dir;
  static std::map<std::pair<int, std::int64_t>, std::string> made;
  auto& path = made[{tables, rows}];
  if (path.empty()) {
    path = dir.file("guide-" + std::to_string(tables) + "-" + std::to_string(rows) + ".db");
    tools::guide_db_options o;
    o.tables = tables;
    o.rows = rows;
    o.large_blobs = true;
    tools::generate_guide_database(path, o);
  }
  return path;
}

std::unique_ptr<backends::sqlite_store> sqlite_at(const std::string& path, bool read_only = true) {
  backends::sqlite_store_options o;
  o.db.path = path;
  o.db.read_only = read_only;
  auto s = backends::sqlite_store::open(o);
  if (!s) throw std::runtime_error(s.error().message);
  return std::move(*s);
}

std::unique_ptr<backends::d1_store> d1_at(const std::string& id) {
  auto s = backends::d1_store::open(local_d1::instance().options(id));
  if (!s) throw std::runtime_error(s.error().message);
  return std::move(*s);
}

tools::migrate_command migrate(const std::string& from, const std::string& to) {
  point_at_local_d1();
  tools::migrate_command c;
  c.from = from;
  c.to = to;
  c.progress = "lines";
  return c;
}

void run_sql(backends::store& s, std::vector<std::string> sqls) {
  std::vector<protocol::statement> sts;
  for (auto& q : sqls) sts.push_back({std::move(q), {}});
  auto r = tools::run_sync(s, std::move(sts));
  ASSERT_TRUE(r) << r.error().message;
}

std::int64_t count_of(backends::store& s, const std::string& sql) {
  auto r = tools::run_sync(s, {{sql, {}}});
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  return r ? std::get<std::int64_t>(r->at(0).rows.at(0).at(0)) : -1;
}

TEST(Move, MigrateToD1CopiesEveryValueExactlyAndValidates) {
  const auto& db = guide_db(95, 12000);
  const auto id = local_d1::instance().fresh_database();
  auto r = capture([&] { return tools::run_migrate(migrate("sqlite:" + db, "d1:" + id)); });
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("📊 Found 95 tables to migrate"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("📦 Migrating table: users"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("🔍 Validating table: tasks\n✓ Row counts match: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Total tables: 95\nTotal rows: 12,000\nMigrated rows: 12,000\nFailed rows: 0\nValidation errors: 0\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("✓ Migration completed successfully"), std::string::npos) << r.out;

  auto source = sqlite_at(db);
  auto d1 = d1_at(id);
  expect_equal_stores(*source, *d1);  // row by row, cell by cell, through SQL of its own
  // The trigger was created after the data (else audit_log would hold every task twice), the
  // AUTOINCREMENT counters carried over, the checkpoint dropped.
  EXPECT_EQ(count_of(*d1, "SELECT count(*) FROM audit_log"), count_of(*d1, "SELECT count(*) FROM tasks"));
  EXPECT_EQ(count_of(*d1, "SELECT seq FROM sqlite_sequence WHERE name = 'tasks'"), count_of(*source, "SELECT seq FROM sqlite_sequence WHERE name = 'tasks'"));
  EXPECT_EQ(count_of(*d1, "SELECT count(*) FROM sqlite_schema WHERE name = '_tandem_migrate'"), 0);
  EXPECT_EQ(count_of(*d1, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'"), 1);
  EXPECT_EQ(count_of(*d1, "SELECT count(*) FROM sqlite_schema WHERE type = 'view'"), 1);

  // validate as a command: --full (the default) and --quick, exit 0 only when equal.
  temp_dir dir;
  auto full = run_tandem(dir, {"validate", "sqlite:" + db, "d1:" + id});
  EXPECT_EQ(full.status, 0) << full.out << full.err;
  EXPECT_NE(full.out.find("✓ The databases are equal"), std::string::npos) << full.out;
  auto quick = run_tandem(dir, {"validate", "--quick", "--json", "--from", "sqlite:" + db, "--to", "d1:" + id});
  EXPECT_EQ(quick.status, 0) << quick.out << quick.err;
  EXPECT_EQ(quick.out.rfind("{\"equal\":true,\"mode\":\"quick\"", 0), 0u) << quick.out;
}

TEST(Move, ValidateNamesEveryChangedDeletedAndAddedRow) {
  const auto& db = guide_db(20, 3000);
  const auto id = local_d1::instance().fresh_database();
  auto m = capture([&] {
    auto c = migrate("sqlite:" + db, "d1:" + id);
    c.validate = false;
    return tools::run_migrate(c);
  });
  ASSERT_EQ(m.status, 0) << m.out << m.err;
  auto d1 = d1_at(id);
  const auto last_comment = count_of(*d1, "SELECT max(id) FROM comments");
  // One value changed in the middle of a JSON text (same length), one row deleted, one added,
  // and a JSON value broken on D1 only.
  run_sql(*d1, {"UPDATE tasks SET payload = replace(payload, '\"x\"', '\"y\"') WHERE id = 5",
                "DELETE FROM comments WHERE id = " + std::to_string(last_comment),
                "INSERT INTO labels (name, color, weight) VALUES ('added on d1', '#000000', 0.5)",
                "UPDATE users SET settings = '{\"broken\": ' WHERE id = 2"});

  auto first = tools::sqlite_reader::open(db);
  ASSERT_TRUE(first);
  tools::d1_reader second(*d1, "d1", std::chrono::seconds(60));
  auto schema = tools::read_schema(**first);
  ASSERT_TRUE(schema);
  tools::validate_options o;
  const auto report = tools::validate_databases(**first, second, *schema, o);
  EXPECT_FALSE(report.equal());
  std::map<std::string, const tools::table_report*> by_table;
  for (const auto& t : report.tables) {
    if (!t.equal()) by_table[t.table] = &t;
  }
  ASSERT_EQ(by_table.size(), 4u) << tools::report_json(report);
  const auto* tasks = by_table.at("tasks");
  ASSERT_EQ(tasks->differences.size(), 1u);
  EXPECT_EQ(tasks->differences[0].what, tools::row_difference::kind::different);
  EXPECT_EQ(tasks->differences[0].key, (tools::row{value{std::int64_t{5}}}));
  EXPECT_EQ(tasks->differences[0].columns, (std::vector<std::string>{"payload"}));
  EXPECT_EQ(tasks->mismatched_chunks, 1u);
  const auto* comments = by_table.at("comments");
  ASSERT_EQ(comments->differences.size(), 1u);
  EXPECT_EQ(comments->differences[0].what, tools::row_difference::kind::missing_in_second);
  EXPECT_EQ(comments->differences[0].key, (tools::row{value{last_comment}}));
  const auto* labels = by_table.at("labels");
  ASSERT_EQ(labels->differences.size(), 1u);
  EXPECT_EQ(labels->differences[0].what, tools::row_difference::kind::missing_in_first);
  EXPECT_EQ(labels->key_names, (std::vector<std::string>{"name"}));
  EXPECT_EQ(labels->differences[0].key, (tools::row{value{std::string("added on d1")}}));
  const auto* users = by_table.at("users");
  ASSERT_EQ(users->invalid_json.size(), 1u);
  EXPECT_EQ(users->invalid_json[0].column, "settings");
  EXPECT_EQ(users->invalid_json[0].side, "d1");
  EXPECT_EQ(users->invalid_json[0].keys, (std::vector<tools::row>{{value{std::int64_t{2}}}}));

  // The command's readable report names them too, and exits 1.
  temp_dir dir;
  auto v = run_tandem(dir, {"validate", "sqlite:" + db, "d1:" + id});
  EXPECT_EQ(v.status, 1) << v.out << v.err;
  EXPECT_NE(v.out.find("row id=5 differs: payload = "), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("row id=" + std::to_string(last_comment) + " is missing in d1:" + id), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("row name='added on d1' is only in d1:" + id), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("column settings: 1 value(s) do not parse as JSON in d1:" + id + ": id=2"), std::string::npos) << v.out;
  // --sample over every row finds the same rows; --quick sees the counts.
  auto sample = run_tandem(dir, {"validate", "--sample", "100000", "--json", "sqlite:" + db, "d1:" + id});
  EXPECT_EQ(sample.status, 1);
  EXPECT_NE(sample.out.find("\"kind\":\"different\",\"key\":[5],\"columns\":[\"payload\"]"), std::string::npos) << sample.out;
  auto quick = run_tandem(dir, {"validate", "--quick", "--no-json-check", "sqlite:" + db, "d1:" + id});
  EXPECT_EQ(quick.status, 1);
  EXPECT_NE(quick.out.find("✗ comments\n    row counts differ"), std::string::npos) << quick.out;
}

TEST(Move, InterruptedByKill9ThenResumedEndsEqual) {
  const auto& db = guide_db(95, 12000);
  const auto id = local_d1::instance().fresh_database();
  temp_dir dir;
  {
    // Stalls with batch 6 sent (its outcome unknown to the process), then dies by SIGKILL.
    child c(dir, {"migrate", "--from", "sqlite:" + db, "--to", "d1:" + id, "--progress", "lines"},
            {"MIGRATION_BATCH_SIZE=500", "TANDEM_MIGRATE_STALL_AFTER=5"});
    ASSERT_TRUE(c.wait_for_err("stalling after 5 committed batches")) << c.out() << c.err();
    c.kill9();
  }
  auto d1 = d1_at(id);
  auto cp = tools::read_checkpoint(*d1);
  ASSERT_TRUE(cp) << cp.error().message;
  ASSERT_FALSE(cp->empty());
  std::int64_t copied = 0;
  for (const auto& c : *cp) copied += c.copied;
  EXPECT_GE(copied, 2500);  // five or six batches of 500 rows

  // Without --resume the leftover checkpoint is refused, and nothing changes.
  auto again = run_tandem(dir, {"migrate", "--from", "sqlite:" + db, "--to", "d1:" + id, "--progress", "none"});
  EXPECT_EQ(again.status, 1) << again.out << again.err;
  EXPECT_NE(again.out.find("run again with --resume"), std::string::npos) << again.out;

  auto resumed = run_tandem(dir, {"migrate", "--from", "sqlite:" + db, "--to", "d1:" + id, "--resume", "--progress", "lines"},
                            {"MIGRATION_BATCH_SIZE=700"});
  EXPECT_EQ(resumed.status, 0) << resumed.out << resumed.err;
  EXPECT_NE(resumed.out.find("copied before, resuming"), std::string::npos) << resumed.out;
  EXPECT_NE(resumed.out.find("Migrated rows: 12,000\nFailed rows: 0\nValidation errors: 0"), std::string::npos) << resumed.out;
  auto source = sqlite_at(db);
  expect_equal_stores(*source, *d1);
  EXPECT_EQ(count_of(*d1, "SELECT count(*) FROM audit_log"), count_of(*d1, "SELECT count(*) FROM tasks"));
}

// Injects faults through the local D1's /fault hook as batches commit (after the n-th progress
// report, a fault for the requests that follow).
class fault_injector final : public tools::copy_observer {
 public:
  fault_injector(std::string id, std::map<int, std::string> faults) : id_(std::move(id)), faults_(std::move(faults)) {}
  void progressed(const tools::table_copy&) override {
    auto it = faults_.find(++reports_);
    if (it == faults_.end()) return;
    local_d1::instance().inject_fault(id_, it->second);
  }

 private:
  std::string id_;
  std::map<int, std::string> faults_;
  int reports_ = 0;
};

TEST(Move, BatchesD1DidNotAnswerAreSentAgainButNeverAppliedTwice) {
  const auto& db = guide_db(20, 3000);
  const auto id = local_d1::instance().fresh_database();
  auto schema_only = capture([&] {
    auto c = migrate("sqlite:" + db, "d1:" + id);
    c.schema_only = true;
    return tools::run_migrate(c);
  });
  ASSERT_EQ(schema_only.status, 0) << schema_only.out;
  auto options = local_d1::instance().options(id);
  options.request_timeout = std::chrono::milliseconds(700);
  auto d1 = backends::d1_store::open(options);
  ASSERT_TRUE(d1);
  run_sql(**d1, {"DROP TRIGGER tasks_audit"});  // it would fire for the copied tasks

  auto source = tools::sqlite_reader::open(db);
  ASSERT_TRUE(source);
  ASSERT_TRUE((*source)->snapshot());
  auto schema = tools::read_schema(**source);
  ASSERT_TRUE(schema);
  tools::copy_options co;
  co.batch_rows = 300;
  co.source_id = "sqlite:" + db;
  co.timeout = std::chrono::seconds(60);
  co.limits = tools::insert_limits::for_d1();
  // First a batch D1 runs two seconds late, long after tandem gave up on it (and sent it again);
  // later two answers of 503, whose batches may or may not have been applied.
  fault_injector faults(id, {{3, R"({"count":1,"delay_ms":2000,"fail":false})"},
                             {12, R"({"count":2,"status":503,"code":7500,"message":"injected","fail":true})"}});
  const auto r = tools::copy_tables(**source, schema->tables, **d1, co, &faults);
  EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.copied_rows(), 3000);
  EXPECT_GE(r.resent, 2u);
  // The late copy of the first batch reaches D1 2 s after it was sent and fails its guard: nothing
  // in D1's rows shows it, so this waits until the local D1 says every faulted request (the late
  // batch and the two 503s) has finished before comparing.
  ASSERT_TRUE(eventually("the local D1 to finish the 3 faulted requests (the late batch included)",
                         [&] { return local_d1::instance().faulted_requests_finished(id) >= 3; }, k_eventually_bound,
                         std::chrono::milliseconds(50)));
  auto original = sqlite_at(db);
  expect_equal_stores(*original, **d1);
}

TEST(Move, SchemaFirstThenDataOnlySetsTheTargetsTriggersAside) {
  const auto& db = guide_db(20, 3000);
  const auto id = local_d1::instance().fresh_database();
  auto schema = capture([&] {
    auto c = migrate("sqlite:" + db, "d1:" + id);
    c.schema_only = true;
    return tools::run_migrate(c);
  });
  ASSERT_EQ(schema.status, 0) << schema.out;
  auto d1 = d1_at(id);
  EXPECT_EQ(count_of(*d1, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND name = 'tasks_audit'"), 1);
  auto data = capture([&] {
    auto c = migrate("sqlite:" + db, "d1:" + id);
    c.data_only = true;
    return tools::run_migrate(c);
  });
  ASSERT_EQ(data.status, 0) << data.out;
  EXPECT_NE(data.out.find("⏸ Set aside the target's triggers while rows are copied (they are put back after): tasks_audit"), std::string::npos)
      << data.out;
  EXPECT_NE(data.out.find("▶ Put back 1 trigger(s) of the target"), std::string::npos) << data.out;
  auto source = sqlite_at(db);
  expect_equal_stores(*source, *d1);  // audit_log as in the source: the trigger did not fire for copied tasks
  EXPECT_EQ(count_of(*d1, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND name = 'tasks_audit'"), 1);
  EXPECT_EQ(count_of(*d1, "SELECT count(*) FROM sqlite_schema WHERE name LIKE '\\_tandem\\_%' ESCAPE '\\'"), 0);
}

TEST(Move, ReverseMigrationFromD1EndsEqual) {
  const auto& db = guide_db(20, 3000);
  const auto id = local_d1::instance().fresh_database();
  auto to_d1 = capture([&] {
    auto c = migrate("sqlite:" + db, "d1:" + id);
    c.validate = false;
    return tools::run_migrate(c);
  });
  ASSERT_EQ(to_d1.status, 0) << to_d1.out;
  temp_dir dir;
  const std::string back = dir.file("rollback.db");
  auto r = capture([&] { return tools::run_migrate(migrate("d1:" + id, "sqlite:" + back)); });
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("🚀 Starting D1 to SQLite migration"), std::string::npos) << r.out;
  auto original = sqlite_at(db);
  auto restored = sqlite_at(back);
  auto d1 = d1_at(id);
  expect_equal_stores(*original, *restored);
  expect_equal_stores(*d1, *restored);
  EXPECT_EQ(count_of(*restored, "SELECT count(*) FROM audit_log"), count_of(*restored, "SELECT count(*) FROM tasks"));
}

// The move tools read D1 in the D1 store's exact typed form (backends/d1_exact): every value,
// -0.0 and the extremes included, goes to D1 and back to a new SQLite file bit for bit, and
// validate finds the stores equal.
TEST(Move, ExtremeValuesGoToD1AndBackBitForBit) {
  temp_dir dir;
  const std::string source = dir.file("extremes.db");
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<protocol::value> values = {
      protocol::value{-0.0}, protocol::value{0.0}, protocol::value{inf}, protocol::value{-inf}, protocol::value{1e300},
      protocol::value{-1e300}, protocol::value{5e-324}, protocol::value{9223372036854775808.0}, protocol::value{36893488147419103232.0},
      protocol::value{std::numeric_limits<std::int64_t>::max()}, protocol::value{std::numeric_limits<std::int64_t>::min()},
      protocol::value{std::int64_t{9007199254740993}}, protocol::value{2.0}, protocol::value{std::string("-0.0")},
      protocol::value{protocol::blob{std::string("\0\xff", 2)}}, protocol::value{}};
  {
    auto s = sqlite_at(source, false);
    run_sql(*s, {"CREATE TABLE t(id INTEGER PRIMARY KEY, v)"});
    std::vector<protocol::statement> sts;
    for (std::size_t i = 0; i < values.size(); ++i) {
      protocol::statement st{"INSERT INTO t VALUES (?, ?)", {}};
      st.params.positional = {protocol::value{static_cast<std::int64_t>(i)}, values[i]};
      sts.push_back(std::move(st));
    }
    ASSERT_TRUE(tools::run_sync(*s, std::move(sts)));
    s->shutdown();
  }
  const auto id = local_d1::instance().fresh_database();
  auto to_d1 = capture([&] { return tools::run_migrate(migrate("sqlite:" + source, "d1:" + id)); });
  ASSERT_EQ(to_d1.status, 0) << to_d1.out << to_d1.err;
  EXPECT_NE(to_d1.out.find("Validation errors: 0"), std::string::npos) << to_d1.out;
  const std::string back = dir.file("back.db");
  auto from_d1 = capture([&] { return tools::run_migrate(migrate("d1:" + id, "sqlite:" + back)); });
  ASSERT_EQ(from_d1.status, 0) << from_d1.out << from_d1.err;
  auto restored = sqlite_at(back);
  auto r = tools::run_sync(*restored, {{"SELECT v FROM t ORDER BY id", {}}});
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->at(0).rows.size(), values.size());
  for (std::size_t i = 0; i < values.size(); ++i) EXPECT_TRUE(protocol::identical(r->at(0).rows[i].at(0), values[i])) << "row " << i;
}

TEST(Move, BackupAndRestoreRoundTripThroughBothForms) {
  const auto& db = guide_db(20, 3000);
  temp_dir dir;
  // SQLite: an online backup named like the guide's, restored into D1 (refused while not empty).
  auto b = run_tandem(dir, {"backup", "sqlite:" + db, "--to", dir.file("backups")});
  ASSERT_EQ(b.status, 0) << b.out << b.err;
  const std::string file = dir.file("backups/" + tools::backup_file_name(db));
  ASSERT_TRUE(fs::exists(file)) << b.out;
  EXPECT_FALSE(fs::exists(file + "-wal"));
  const auto id = local_d1::instance().fresh_database();
  auto into_d1 = run_tandem(dir, {"restore", file, "--to", "d1:" + id, "--progress", "none"});
  ASSERT_EQ(into_d1.status, 0) << into_d1.out << into_d1.err;
  auto refused = run_tandem(dir, {"restore", file, "--to", "d1:" + id});
  EXPECT_EQ(refused.status, 1);
  EXPECT_NE(refused.err.find("is not empty"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("--force"), std::string::npos) << refused.err;
  auto original = sqlite_at(db);
  auto d1 = d1_at(id);
  expect_equal_stores(*original, *d1);

  // D1: every table as JSON plus a SQL dump; restored into SQLite and into another D1 database.
  auto j = run_tandem(dir, {"backup", "d1:" + id, "--to", dir.file("backups")});
  ASSERT_EQ(j.status, 0) << j.out << j.err;
  fs::path folder;
  for (const auto& e : fs::directory_iterator(dir.file("backups")))
    if (e.is_directory()) folder = e.path();
  ASSERT_TRUE(fs::exists(folder / "manifest.json")) << j.out;
  ASSERT_TRUE(fs::exists(folder / "dump.sql"));
  std::ifstream users(folder / "tables" / "000-users.json");
  std::string first_line;
  std::getline(users, first_line);
  EXPECT_EQ(first_line, "[");
  std::getline(users, first_line);
  EXPECT_EQ(first_line, "  {");
  std::getline(users, first_line);
  EXPECT_EQ(first_line, "    \"results\": [");

  const std::string back = dir.file("from-json.db");
  auto into_sqlite = run_tandem(dir, {"restore", folder.string(), "--to", "sqlite:" + back});
  ASSERT_EQ(into_sqlite.status, 0) << into_sqlite.out << into_sqlite.err;
  auto restored = sqlite_at(back);
  expect_equal_stores(*original, *restored);
  auto not_empty = run_tandem(dir, {"restore", folder.string(), "--to", "sqlite:" + back});
  EXPECT_EQ(not_empty.status, 1);

  const auto other = local_d1::instance().fresh_database();
  auto into_other = run_tandem(dir, {"restore", folder.string(), "--to", "d1:" + other, "--progress", "none"});
  ASSERT_EQ(into_other.status, 0) << into_other.out << into_other.err;
  auto d1b = d1_at(other);
  expect_equal_stores(*original, *d1b);
  // --force replaces what is there.
  run_sql(*d1b, {"CREATE TABLE stray (x)"});
  auto forced = run_tandem(dir, {"restore", file, "--to", "d1:" + other, "--force", "--no-validate", "--progress", "none"});
  ASSERT_EQ(forced.status, 0) << forced.out << forced.err;
  EXPECT_EQ(count_of(*d1b, "SELECT count(*) FROM sqlite_schema WHERE name = 'stray'"), 0);
  expect_equal_stores(*original, *d1b);
}

TEST(Move, DryRunReadsEverythingAndWritesNothing) {
  const auto& db = guide_db(20, 3000);
  const auto id = local_d1::instance().fresh_database();
  temp_dir dir;
  auto r = run_tandem(dir, {"migrate", "--from", "sqlite:" + db, "--to", "d1:" + id, "--progress", "none"}, {"MIGRATION_DRY_RUN=true"});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("🧪 Dry run: read 3,000 rows from 20 tables"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("within D1's limits. Nothing was written."), std::string::npos) << r.out;
  auto d1 = d1_at(id);
  EXPECT_TRUE(user_tables(*d1).empty());
  EXPECT_EQ(count_of(*d1, "SELECT count(*) FROM sqlite_schema WHERE name = '_tandem_migrate'"), 0);
}

TEST(Move, BadInputGivesOneClearErrorAndChangesNothing) {
  temp_dir dir;
  const auto id = local_d1::instance().fresh_database();
  auto missing = run_tandem(dir, {"migrate", "--from", "sqlite:" + dir.file("nope.db"), "--to", "d1:" + id});
  EXPECT_EQ(missing.status, 2);
  EXPECT_EQ(missing.err, "tandem migrate: no SQLite database at '" + dir.file("nope.db") + "' (no such file)\n");
  EXPECT_FALSE(fs::exists(dir.file("nope.db")));

  const auto& db = guide_db(20, 3000);
  auto unreachable = run_tandem(dir, {"migrate", "--from", "sqlite:" + db, "--to", "d1:" + id, "--d1-endpoint", "http://127.0.0.1:1"});
  EXPECT_EQ(unreachable.status, 2);
  EXPECT_EQ(unreachable.err.rfind("tandem migrate: cannot use D1 database " + id + " at http://127.0.0.1:1: ", 0), 0u) << unreachable.err;
  EXPECT_EQ(std::count(unreachable.err.begin(), unreachable.err.end(), '\n'), 1) << unreachable.err;

  auto no_token = run_tandem(dir, {"validate", "sqlite:" + db, "d1:" + id, "--d1-token-env", "TANDEM_TEST_NO_SUCH_VARIABLE"});
  EXPECT_EQ(no_token.status, 2);
  EXPECT_NE(no_token.err.find("TANDEM_TEST_NO_SUCH_VARIABLE is not set"), std::string::npos) << no_token.err;

  auto bad_env = run_tandem(dir, {"migrate", "--from", "sqlite:" + db, "--to", "d1:" + id}, {"MIGRATION_BATCH_SIZE=lots"});
  EXPECT_EQ(bad_env.status, 2);
  EXPECT_EQ(bad_env.err, "tandem migrate: MIGRATION_BATCH_SIZE must be a whole number from 1 to 100000, not 'lots'\n");

  // A name D1 reserves: refused before anything is written.
  const std::string reserved = dir.file("reserved.db");
  {
    auto s = sqlite_at(reserved, false);
    run_sql(*s, {"CREATE TABLE ok_table (id INTEGER PRIMARY KEY)", "CREATE TABLE _cf_settings (k TEXT PRIMARY KEY, v)",
                 "INSERT INTO _cf_settings VALUES ('a', 1)"});
  }
  auto refused = run_tandem(dir, {"migrate", "--from", "sqlite:" + reserved, "--to", "d1:" + id});
  EXPECT_EQ(refused.status, 1) << refused.out << refused.err;
  EXPECT_NE(refused.out.find("table _cf_settings: D1 reserves names starting with _cf_ (rename it before migrating)"), std::string::npos)
      << refused.out;
  auto d1 = d1_at(id);
  EXPECT_TRUE(user_tables(*d1).empty());
}

// The live backfill: tandem runs dual-sqlite over a SQLite file whose rows D1 has never seen, and
// clients keep writing (inserts and non-idempotent increments) while `tandem migrate
// --via-control` copies a snapshot; afterwards the stores are equal row by row: no write lost,
// none applied twice.
TEST(LiveBackfill, WritesDuringTheCopyAreNeitherLostNorAppliedTwice) {
  temp_dir dir;
  proxy::router_options ro;
  ro.initial = proxy::mode::sqlite_only;  // the data exists before D1 does
  auto dual = make_dual_router(dir, ro);
  test_server srv(test_server::default_options(), std::move(dual.route));
  boost::asio::io_context ioc;
  proxy::control_options co;
  co.socket_path = dir.file("tandem.sock");
  co.state_path = "";
  proxy::control_server control(ioc, co, srv.router());
  control.start();
  std::jthread control_thread([&] { ioc.run(); });
  // Stopped first on every way out (an ASSERT too), so that control_thread's run() returns.
  struct stop_on_exit {
    proxy::control_server& control;
    ~stop_on_exit() { control.stop(); }
  } stop_control{control};

  auto c = srv.connect();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->query("CREATE TABLE items(id INTEGER PRIMARY KEY, v TEXT, n INTEGER NOT NULL)"));
  ASSERT_TRUE(c->query("CREATE TABLE counters(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"));
  ASSERT_TRUE(c->query("INSERT INTO counters VALUES (1, 0)"));
  for (int b = 0; b < 20; ++b) {
    std::string sql = "INSERT INTO items(v, n) VALUES ";
    for (int i = 0; i < 200; ++i) sql += std::string(i ? "," : "") + "('row " + std::to_string(b * 200 + i) + " ✓', " + std::to_string(i) + ")";
    ASSERT_TRUE(c->query(sql));
  }
  ASSERT_TRUE(control_ask(co.socket_path, "mode dual-sqlite").at("ok").as_bool());

  std::atomic<int> acked{0};
  std::jthread writer([&](std::stop_token stop) {
    auto w = srv.connect();
    for (int i = 0; w && !stop.stop_requested(); ++i) {
      const bool ok = i % 2 ? bool(w->query("UPDATE counters SET n = n + 1 WHERE id = 1")) &&
                                  bool(w->query("UPDATE items SET n = n + 1 WHERE id = " + std::to_string(1 + i % 4000)))
                            : bool(w->query("INSERT INTO items(v, n) VALUES ('live " + std::to_string(i) + "', 0)"));
      if (ok) ++acked;
    }
  });
  // Some writes before the copy starts, the rest during it.
  ASSERT_TRUE(eventually("20 writes acknowledged before the copy", [&] { return acked >= 20; }));
  auto r = run_tandem(dir, {"migrate", "--from", "sqlite:" + dir.file("dual.db"), "--to", "d1:" + dual.database, "--via-control",
                            co.socket_path, "--batch-size", "500", "--progress", "lines"});
  const int during = acked.load();
  ASSERT_TRUE(eventually("20 more writes acknowledged after the copy", [&] { return acked >= during + 20; }));
  writer.request_stop();
  writer.join();
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("Live backfill done"), std::string::npos) << r.out << r.err;

  ASSERT_TRUE(srv.router().replication()->wait_caught_up(backends::clock::now() + std::chrono::seconds(120)))
      << srv.router().replication()->last_error();
  expect_equal_stores(*dual.sqlite, *dual.d1);
  EXPECT_GT(rows_of(*dual.d1, "items").size(), 4000u);
}

}  // namespace
}  // namespace tandem::testing
