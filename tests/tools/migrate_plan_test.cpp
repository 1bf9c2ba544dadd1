// The migration's plan (tools/move/migrate.hpp) from two schemas, with no D1 and no writes: what
// is created before and after the rows, what is kept, what conflicts, what is set aside, and how
// the rows are cut into batches.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>

#include "backends/sqlite_connection.hpp"
#include "tests/support/test_support.hpp"
#include "tools/move/migrate.hpp"

namespace tandem::testing {
namespace {

constexpr const char* k_source =
    "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL);"
    "CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), body TEXT);"
    "CREATE INDEX posts_user ON posts(user_id);"
    "CREATE VIEW names AS SELECT name FROM users;"
    "CREATE TRIGGER posts_touch AFTER INSERT ON posts BEGIN SELECT 1; END;"
    "INSERT INTO users(name) VALUES ('a'), ('b');";

// A SQLite file made by `sql`, and the reader the migration would read it with.
std::unique_ptr<tools::sqlite_reader> database(const temp_dir& dir, const std::string& name, const std::string& sql) {
  const std::string path = dir.file(name);
  {
    auto db = backends::open_sqlite(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    EXPECT_TRUE(db) << db.error().message;
    auto made = backends::sqlite_check(db->get(), sqlite3_exec(db->get(), sql.c_str(), nullptr, nullptr, nullptr), "making " + name);
    EXPECT_TRUE(made) << made.error().message;
  }
  auto r = tools::sqlite_reader::open(path);
  EXPECT_TRUE(r) << r.error().message;
  return std::move(*r);
}

// The schema of a SQLite source as migrate reads it (_cf_ objects included: D1 is to refuse them).
tools::database_schema source_schema(const temp_dir& dir, const std::string& sql = k_source) {
  static int n = 0;
  auto r = database(dir, "source" + std::to_string(++n) + ".db", sql);
  tools::schema_filter filter;
  filter.include_cf = true;
  auto s = tools::read_schema(*r, filter);
  EXPECT_TRUE(s) << s.error().message;
  return *s;
}

tools::target_schema target_schema(const temp_dir& dir, const std::string& sql) {
  auto r = database(dir, "target.db", sql);
  auto t = tools::read_target_schema(*r);
  EXPECT_TRUE(t) << t.error().message;
  return *t;
}

std::vector<std::string> sqls(const std::vector<protocol::statement>& sts) {
  std::vector<std::string> out;
  for (const auto& st : sts) out.push_back(st.sql);
  return out;
}

bool mentions(const std::vector<std::string>& lines, const std::string& text) {
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(text) != std::string::npos; });
}

TEST(MigratePlan, AnEmptyTargetGetsTheWholeSchemaWithTriggersAfterTheRows) {
  temp_dir dir;
  const auto plan = tools::plan_migration(source_schema(dir), {}, {}, true, "sqlite:source.db");
  EXPECT_FALSE(plan.refused());
  EXPECT_EQ(plan.new_tables, 2u);
  EXPECT_EQ(plan.new_others, 2u);  // the index and the view
  EXPECT_EQ(plan.kept, 0u);
  const auto creates = sqls(plan.creates);
  ASSERT_EQ(creates.size(), 4u);
  EXPECT_NE(creates[0].find("CREATE TABLE users"), std::string::npos) << "parents before children";
  EXPECT_NE(creates[1].find("CREATE TABLE posts"), std::string::npos);
  EXPECT_FALSE(mentions(creates, "CREATE TRIGGER")) << "a trigger would fire for every copied row";
  EXPECT_EQ(plan.trigger_names, std::vector<std::string>{"posts_touch"});
  ASSERT_EQ(plan.triggers.size(), 1u);
  EXPECT_TRUE(plan.set_aside.empty());
  EXPECT_TRUE(plan.set_aside_names.empty());
  // users' AUTOINCREMENT counter: an UPDATE, and an INSERT when the target has no row for it.
  ASSERT_EQ(plan.sequences.size(), 2u);
  EXPECT_NE(plan.sequences[0].sql.find("SET seq = 2"), std::string::npos);
  EXPECT_EQ(plan.copy.source_id, "sqlite:source.db");
}

TEST(MigratePlan, IdenticalObjectsAreKeptWhateverTheirLayout) {
  temp_dir dir;
  const auto target = target_schema(dir, "CREATE TABLE   users (id INTEGER PRIMARY KEY AUTOINCREMENT,\n  name TEXT NOT NULL);");
  const auto plan = tools::plan_migration(source_schema(dir), target, {}, true, "s");
  EXPECT_FALSE(plan.refused());
  EXPECT_EQ(plan.kept, 1u);
  EXPECT_EQ(plan.new_tables, 1u);
  EXPECT_FALSE(mentions(sqls(plan.creates), "CREATE TABLE users"));
}

TEST(MigratePlan, AnObjectWithAnotherDefinitionIsAConflictNamingBoth) {
  temp_dir dir;
  const auto target = target_schema(dir, "CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT);");
  const auto plan = tools::plan_migration(source_schema(dir), target, {}, true, "s");
  ASSERT_TRUE(plan.refused());
  ASSERT_EQ(plan.conflicts.size(), 1u);
  EXPECT_NE(plan.conflicts[0].find("table posts"), std::string::npos);
  EXPECT_NE(plan.conflicts[0].find("title TEXT"), std::string::npos) << "the target's definition";
  EXPECT_NE(plan.conflicts[0].find("body TEXT"), std::string::npos) << "the source's definition";
}

TEST(MigratePlan, DataOnlyCreatesNothingAndNamesTheTablesTheTargetLacks) {
  temp_dir dir;
  tools::migrate_settings s;
  s.data_only = true;
  const auto target = target_schema(dir, "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL);");
  const auto plan = tools::plan_migration(source_schema(dir), target, s, true, "s");
  EXPECT_TRUE(plan.creates.empty());
  EXPECT_TRUE(plan.triggers.empty());
  EXPECT_EQ(plan.missing, std::vector<std::string>{"posts"});
  EXPECT_TRUE(plan.refused());
}

TEST(MigratePlan, TheTargetsTriggersOnCopiedTablesAreSetAsideAndKept) {
  temp_dir dir;
  const auto target = target_schema(dir,
                                    "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL);"
                                    "CREATE TABLE other (x);"
                                    "CREATE TRIGGER audit AFTER INSERT ON users BEGIN SELECT 1; END;"
                                    "CREATE TRIGGER elsewhere AFTER INSERT ON other BEGIN SELECT 1; END;");
  const auto plan = tools::plan_migration(source_schema(dir), target, {}, true, "s");
  EXPECT_FALSE(plan.refused());
  EXPECT_EQ(plan.set_aside_names, std::vector<std::string>{"audit"}) << "only triggers on tables rows go into";
  const auto aside = sqls(plan.set_aside);
  EXPECT_TRUE(mentions(aside, "CREATE TABLE IF NOT EXISTS _tandem_migrate_triggers"));
  EXPECT_TRUE(mentions(aside, "INSERT OR REPLACE INTO _tandem_migrate_triggers")) << "kept by the batch that drops it";
  EXPECT_TRUE(mentions(aside, "DROP TRIGGER IF EXISTS \"audit\""));
  EXPECT_FALSE(mentions(aside, "elsewhere"));

  tools::migrate_settings schema_only;
  schema_only.schema_only = true;
  const auto no_rows = tools::plan_migration(source_schema(dir), target, schema_only, true, "s");
  EXPECT_TRUE(no_rows.set_aside.empty()) << "no rows are copied: nothing fires";
  EXPECT_TRUE(no_rows.sequences.empty());
}

TEST(MigratePlan, WhatATargetCannotTakeIsAProblemBeforeAnythingElse) {
  temp_dir dir;
  const auto source = source_schema(dir, std::string(k_source) + "CREATE TABLE _cf_x (a);");
  const auto into_d1 = tools::plan_migration(source, {}, {}, true, "s");
  ASSERT_TRUE(into_d1.refused());
  EXPECT_TRUE(mentions(into_d1.problems, "_cf_x"));
  EXPECT_TRUE(into_d1.creates.empty()) << "nothing is planned for a schema the target refuses";
  EXPECT_TRUE(tools::schema_problems(source_schema(dir), false).empty());
}

TEST(MigratePlan, BatchesFollowTheSettingsAndTheTargetsLimits) {
  temp_dir dir;
  tools::migrate_settings s;
  s.batch_size = 250;
  s.parallel_tables = 3;
  s.timeout_ms = 1234;
  s.resume = true;
  s.dry_run = true;
  s.continue_on_error = true;
  const auto d1 = tools::plan_migration(source_schema(dir), {}, s, true, "s").copy;
  EXPECT_EQ(d1.batch_rows, 250u);
  EXPECT_EQ(d1.parallel_tables, 3);
  EXPECT_EQ(d1.timeout, std::chrono::milliseconds(1234));
  EXPECT_TRUE(d1.resume);
  EXPECT_TRUE(d1.dry_run);
  EXPECT_TRUE(d1.continue_on_error);
  EXPECT_TRUE(d1.limits.d1);
  EXPECT_EQ(d1.limits.max_params, tools::insert_limits::for_d1().max_params);
  const auto sqlite = tools::plan_migration(source_schema(dir), {}, s, false, "s").copy;
  EXPECT_FALSE(sqlite.limits.d1);
  EXPECT_EQ(sqlite.limits.max_params, tools::insert_limits::for_sqlite().max_params);
}

}  // namespace
}  // namespace tandem::testing
