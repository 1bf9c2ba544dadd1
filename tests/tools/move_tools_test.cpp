// The move tools' parts that need no D1: statements cut to D1's limits, keys, settings from the
// environment, schema order, and migrate/validate/backup/restore between SQLite files.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "backends/d1_statement.hpp"
#include "backends/sqlite_store.hpp"
#include "tests/support/test_support.hpp"
#include "tools/backup.hpp"
#include "tools/move/copy_engine.hpp"
#include "tools/bench/guide_db.hpp"
#include "tools/migrate.hpp"
#include "tools/validate.hpp"

namespace tandem::testing {
namespace {

using protocol::value;
using tools::row;

template <class F>
std::pair<int, std::string> capture(F&& f) {
  std::ostringstream out, err;
  auto* old_out = std::cout.rdbuf(out.rdbuf());
  auto* old_err = std::cerr.rdbuf(err.rdbuf());
  const int status = f();
  std::cout.rdbuf(old_out);
  std::cerr.rdbuf(old_err);
  return {status, out.str() + err.str()};
}

tools::table_info table(std::vector<std::string> columns) {
  tools::table_info t;
  t.name = "t";
  for (const auto& c : columns) t.columns.push_back({c, "", 0, false, false});
  t.copy_columns = columns;
  t.key = {0};
  return t;
}

TEST(InsertBuilder, StatementsStayWithinD1Limits) {
  auto t = table({"id", "name", "score", "data", "n"});
  std::vector<row> rows;
  for (std::int64_t i = 0; i < 500; ++i) {
    rows.push_back({value{i + (std::int64_t{1} << 60)}, value{std::string(i % 7 == 0 ? 3000 : 10, 'x') + "'; COMMIT;"}, value{i * 0.25 + 0.125},
                    value{protocol::blob{std::string(static_cast<std::size_t>(i % 50), '\0')}}, value{}});
  }
  const auto limits = tools::insert_limits::for_d1();
  auto sts = tools::build_inserts(t, rows, limits);
  ASSERT_TRUE(sts) << sts.error().message;
  EXPECT_LE(sts->size(), 10u) << "multi-row statements";
  std::size_t bound_rows = 0;
  for (const auto& st : *sts) {
    auto d1 = backends::to_d1_statement(st);
    ASSERT_TRUE(d1) << d1.error().message;
    EXPECT_LE(d1->bound, 100u);
    EXPECT_LE(d1->sql.size(), 100000u);
    bound_rows += st.params.positional.size();  // only the float is bound; the rest are literals
  }
  EXPECT_EQ(bound_rows, rows.size());
  EXPECT_NE((*sts)[0].sql.find("(1152921504606846977, 'xxxxxxxxxx''; COMMIT;', ?, X'00', NULL)"), std::string::npos)
      << (*sts)[0].sql.substr(0, 200);
}

TEST(InsertBuilder, ALargeBlobIsAppendedInPieces) {
  auto t = table({"id", "data"});
  std::string big(250000, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  auto sts = tools::build_inserts(t, {{value{std::int64_t{1}}, value{std::string("small")}}, {value{std::int64_t{2}}, value{protocol::blob{big}}}},
                                  tools::insert_limits::for_d1());
  ASSERT_TRUE(sts) << sts.error().message;
  ASSERT_GE(sts->size(), 2u + 5u);
  EXPECT_EQ((*sts)[1].sql, "INSERT INTO \"t\" (\"id\", \"data\") VALUES (2, X'')");
  for (std::size_t i = 2; i < sts->size(); ++i) {
    EXPECT_EQ((*sts)[i].sql.rfind("UPDATE \"t\" SET \"data\" = CAST(\"data\" || X'", 0), 0u);
    EXPECT_LE((*sts)[i].sql.size(), 100000u);
  }
  // Replayed on SQLite, the pieces make the blob again.
  temp_dir dir;
  backends::sqlite_store_options o;
  o.db.path = dir.file("b.db");
  auto s = backends::sqlite_store::open(o);
  ASSERT_TRUE(s);
  ASSERT_TRUE(tools::run_sync(**s, {{"CREATE TABLE t (id INTEGER PRIMARY KEY, data)", {}}}));
  ASSERT_TRUE(tools::run_sync(**s, *sts));
  auto back = tools::run_sync(**s, {{"SELECT data FROM t WHERE id = 2", {}}});
  ASSERT_TRUE(back);
  EXPECT_EQ(std::get<protocol::blob>(back->at(0).rows.at(0).at(0)).bytes, big);

  auto over = tools::build_inserts(t, {{value{std::int64_t{3}}, value{std::string(2000001, 'x')}}}, tools::insert_limits::for_d1());
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().message, "table t, row id=3, column data: 2000001 bytes, over D1's limit of 2000000 bytes per value");
}

TEST(Keys, EncodeDecodeExactly) {
  const row key{value{std::numeric_limits<std::int64_t>::min()}, value{0.1}, value{3.0}, value{std::string("é'\"")},
                value{protocol::blob{std::string("\0\xff", 2)}}, value{}};
  auto back = tools::decode_key(tools::encode_key(key));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, key);
  EXPECT_FALSE(tools::decode_key("[{\"x\":1}]"));
}

TEST(MigrateSettings, FlagsWinOverTheGuidesVariablesOverDefaults) {
  tools::migrate_command c;
  auto d = tools::resolve_settings(c);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->batch_size, 1000u);
  EXPECT_TRUE(d->validate);
  EXPECT_FALSE(d->continue_on_error);
  EXPECT_FALSE(d->dry_run);
  EXPECT_EQ(d->parallel_tables, 1);
  EXPECT_EQ(d->timeout_ms, 60000);
  ::setenv("MIGRATION_BATCH_SIZE", "5000", 1);
  ::setenv("MIGRATION_VALIDATE", "false", 1);
  ::setenv("MIGRATION_PARALLEL_TABLES", "4", 1);
  ::setenv("MIGRATION_TIMEOUT", "300000", 1);
  ::setenv("MIGRATION_CONTINUE_ON_ERROR", "yes", 1);
  c.batch_size = 250;
  auto e = tools::resolve_settings(c);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->batch_size, 250u);
  EXPECT_FALSE(e->validate);
  EXPECT_EQ(e->parallel_tables, 4);
  EXPECT_EQ(e->timeout_ms, 300000);
  EXPECT_TRUE(e->continue_on_error);
  ::setenv("MIGRATION_DRY_RUN", "perhaps", 1);
  auto bad = tools::resolve_settings(c);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "MIGRATION_DRY_RUN must be true or false, not 'perhaps'");
  for (const char* v : {"MIGRATION_BATCH_SIZE", "MIGRATION_VALIDATE", "MIGRATION_PARALLEL_TABLES", "MIGRATION_TIMEOUT",
                        "MIGRATION_CONTINUE_ON_ERROR", "MIGRATION_DRY_RUN"})
    ::unsetenv(v);
}

TEST(Schema, TablesComeParentsFirstWithTheirKeys) {
  temp_dir dir;
  tools::guide_db_options o;
  o.tables = 14;
  o.rows = 1000;
  tools::generate_guide_database(dir.file("g.db"), o);
  auto r = tools::sqlite_reader::open(dir.file("g.db"));
  ASSERT_TRUE(r);
  auto s = tools::read_schema(**r);
  ASSERT_TRUE(s) << s.error().message;
  auto position = [&](const std::string& name) {
    for (std::size_t i = 0; i < s->tables.size(); ++i)
      if (s->tables[i].name == name) return i;
    return s->tables.size();
  };
  EXPECT_LT(position("users"), position("projects"));
  EXPECT_LT(position("projects"), position("tasks"));
  EXPECT_LT(position("tasks"), position("comments"));
  EXPECT_LT(position("labels"), position("task_labels"));
  EXPECT_EQ(s->find("task_labels")->key_names(), (std::vector<std::string>{"task_id", "label"}));
  EXPECT_TRUE(s->find("task_labels")->without_rowid);
  EXPECT_EQ(s->find("audit_log")->key_names(), (std::vector<std::string>{"rowid"}));
  EXPECT_EQ(s->find("tasks")->key_names(), (std::vector<std::string>{"id"}));
  EXPECT_EQ(s->find("attachments")->copy_columns, (std::vector<std::string>{"id", "task_id", "name", "mime", "content"}))
      << "the generated column is not copied";
  EXPECT_EQ(s->triggers.size(), 1u);
  EXPECT_EQ(s->views.size(), 1u);
  EXPECT_EQ(s->sequences.size(), 2u);
  EXPECT_TRUE(tools::d1_problems(*s).empty());
}

TEST(MoveBetweenSqliteFiles, MigrateValidateBackupRestore) {
  temp_dir dir;
  tools::guide_db_options o;
  o.tables = 16;
  o.rows = 2000;
  o.large_blobs = true;
  const std::string a = dir.file("a.db"), b = dir.file("b.db");
  tools::generate_guide_database(a, o);
  tools::migrate_command c;
  c.from = "sqlite:" + a;
  c.to = "sqlite:" + b;
  c.progress = "none";
  auto m = capture([&] { return tools::run_migrate(c); });
  ASSERT_EQ(m.first, 0) << m.second;
  EXPECT_NE(m.second.find("Migrated rows: 2,000"), std::string::npos) << m.second;

  // Change, delete and add one row each in the copy: validate names all three.
  {
    backends::sqlite_store_options so;
    so.db.path = b;
    auto s = backends::sqlite_store::open(so);
    ASSERT_TRUE(s);
    ASSERT_TRUE(tools::run_sync(**s, {{"UPDATE numbers SET r = 0.10000000000000002 WHERE id = 2", {}},
                                      {"DELETE FROM texts WHERE id = 3", {}},
                                      {"INSERT INTO settings_kv (key, scope, value) VALUES ('new', 'global', '{}')", {}}}));
  }
  tools::validate_command v;
  v.first = "sqlite:" + a;
  v.second = "sqlite:" + b;
  auto out = capture([&] { return tools::run_validate(v); });
  EXPECT_EQ(out.first, 1) << out.second;
  EXPECT_NE(out.second.find("row id=2 differs: r = 0.1 in sqlite:" + a + ", 0.10000000000000002 in sqlite:" + b), std::string::npos) << out.second;
  EXPECT_NE(out.second.find("row id=3 is missing in sqlite:" + b), std::string::npos) << out.second;
  EXPECT_NE(out.second.find("row (scope, key)=('global', 'new') is only in sqlite:" + b), std::string::npos) << out.second;

  // Backup of the source, restored over the copy with --force: equal again.
  tools::backup_command bc;
  bc.from = "sqlite:" + a;
  bc.dir = dir.file("backups");
  ASSERT_EQ(capture([&] { return tools::run_backup(bc); }).first, 0);
  const std::string file = dir.file("backups/" + tools::backup_file_name(a));
  ASSERT_EQ(capture([&] { return tools::run_backup(bc); }).first, 0);
  EXPECT_TRUE(std::filesystem::exists(dir.file("backups/" + std::filesystem::path(file).stem().string() + "-2.db"))) << "never overwrites";
  tools::restore_command rc;
  rc.from = file;
  rc.to = "sqlite:" + b;
  auto refused = capture([&] { return tools::run_restore(rc); });
  EXPECT_EQ(refused.first, 1);
  EXPECT_NE(refused.second.find("is not empty"), std::string::npos) << refused.second;
  rc.force = true;
  ASSERT_EQ(capture([&] { return tools::run_restore(rc); }).first, 0);
  EXPECT_EQ(capture([&] { return tools::run_validate(v); }).first, 0);
}

}  // namespace
}  // namespace tandem::testing

namespace tandem::tools {
namespace {

// --config's d1 section reaches the move tools whole: its timeouts and attempts are kept, while
// the settings still say where D1 is (and win over the config's place).
TEST(D1Settings, TheConfigsTimeoutsAndAttemptsAreKept) {
  ::setenv("TANDEM_TEST_D1_TOKEN", "t", 1);
  d1_settings s;
  s.account_id = "acc";
  s.database_id = "db";
  s.token_env = "TANDEM_TEST_D1_TOKEN";
  backends::d1_options tuned;
  tuned.request_timeout = std::chrono::milliseconds(1234);
  tuned.max_attempts = 7;
  tuned.account_id = "from-config";
  s.tuning = tuned;
  auto o = resolve(s);
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->request_timeout, std::chrono::milliseconds(1234));
  EXPECT_EQ(o->max_attempts, 7);
  EXPECT_EQ(o->account_id, "acc");
  EXPECT_EQ(o->api_token, "t");
  s.tuning.reset();
  auto plain = resolve(s);
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->max_attempts, backends::d1_options{}.max_attempts);
}

}  // namespace
}  // namespace tandem::tools
