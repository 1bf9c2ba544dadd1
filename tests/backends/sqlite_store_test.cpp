#include "backends/sqlite_store.hpp"
#include "backends/journal.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cmath>
#include <future>
#include <optional>
#include <set>
#include <thread>
#include <limits>

#include "tests/support/test_support.hpp"

namespace tandem::backends {
namespace {

using protocol::errc;
using protocol::query_result;
using protocol::statement;
using protocol::value;

class SqliteStore : public ::testing::Test {
 protected:
  void SetUp() override { open(); }

  void open(sqlite_store_options o = {}) {
    o.db.path = dir_.file("store.db");
    auto s = sqlite_store::open(o);
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
  }

  std::future<outcome<query_result>> submit(std::string sql, std::vector<value> params = {},
                                            exec_options opts = {}) {
    auto p = std::make_shared<std::promise<outcome<query_result>>>();
    auto f = p->get_future();
    statement st{std::move(sql), {}};
    st.params.positional = std::move(params);
    store_->execute(std::move(st), opts, [p](outcome<query_result> r) { p->set_value(std::move(r)); });
    return f;
  }

  outcome<query_result> run(std::string sql, std::vector<value> params = {}, exec_options opts = {}) {
    return submit(std::move(sql), std::move(params), opts).get();
  }

  query_result ok(std::string sql, std::vector<value> params = {}) {
    auto r = run(sql, std::move(params));
    EXPECT_TRUE(r) << sql << ": " << (r ? "" : r.error().message);
    return r ? *r : query_result{};
  }

  outcome<std::vector<query_result>> batch(std::vector<statement> sts) {
    std::promise<outcome<std::vector<query_result>>> p;
    auto f = p.get_future();
    store_->execute_batch(std::move(sts), {}, [&p](auto r) { p.set_value(std::move(r)); });
    return f.get();
  }

  std::int64_t count(const std::string& table) {
    auto r = ok("SELECT count(*) FROM " + table);
    return std::get<std::int64_t>(r.rows.at(0).at(0));
  }

  testing::temp_dir dir_;
  std::unique_ptr<sqlite_store> store_;
};

TEST_F(SqliteStore, ValuesSurviveExactly) {
  ok("CREATE TABLE v(x)");
  const std::vector<value> values = {
      value{},
      value{std::numeric_limits<std::int64_t>::max()},
      value{std::numeric_limits<std::int64_t>::min()},
      value{std::int64_t{9007199254740993}},
      value{0.1},
      value{-0.0},
      value{std::string("h\xc3\xa9llo \xf0\x9f\x98\x80 \"quoted\"")},
      value{std::string("with\0nul", 8)},
      value{protocol::blob{std::string("\x00\x01\xff", 3)}},
      value{protocol::blob{}},
  };
  for (const auto& v : values) ok("INSERT INTO v VALUES (?)", {v});
  auto r = ok("SELECT x FROM v ORDER BY rowid");
  ASSERT_EQ(r.rows.size(), values.size());
  for (std::size_t i = 0; i < values.size(); ++i) EXPECT_EQ(r.rows[i][0], values[i]) << i;
}

TEST_F(SqliteStore, MetaReportsChangesAndRowid) {
  ok("CREATE TABLE t(id INTEGER PRIMARY KEY, v)");
  auto r = ok("INSERT INTO t(v) VALUES (1), (2), (3)");
  EXPECT_EQ(r.meta.changes, 3);
  EXPECT_EQ(r.meta.last_row_id, 3);
  EXPECT_EQ(r.meta.served_by, "sqlite");
  r = ok("CREATE INDEX t_v ON t(v)");
  EXPECT_EQ(r.meta.changes, 0);  // DDL changes nothing, whatever ran before
  r = ok("SELECT v FROM t");
  EXPECT_EQ(r.meta.rows_read, 3);
}

TEST_F(SqliteStore, ClassifiesWithSqliteItself) {
  ok("CREATE TABLE t(id INTEGER PRIMARY KEY, v)");
  EXPECT_EQ(store_->classify("SELECT * FROM t"), statement_kind::read);
  EXPECT_EQ(store_->classify("WITH x AS (SELECT 1) SELECT * FROM x"), statement_kind::read);
  EXPECT_EQ(store_->classify("PRAGMA table_info(t)"), statement_kind::read);
  EXPECT_EQ(store_->classify("  /* lead */ select 1"), statement_kind::read);
  EXPECT_EQ(store_->classify("INSERT INTO t(v) VALUES (1)"), statement_kind::write);
  EXPECT_EQ(store_->classify("WITH x AS (SELECT 1) INSERT INTO t(v) SELECT * FROM x"), statement_kind::write);
  EXPECT_EQ(store_->classify("UPDATE t SET v = 2"), statement_kind::write);
  EXPECT_EQ(store_->classify("CREATE TABLE u(x)"), statement_kind::write);
  EXPECT_EQ(store_->classify("SELECT * FROM missing"), std::nullopt);
}

TEST_F(SqliteStore, RefusesWhatD1Refuses) {
  ok("CREATE TABLE t(x)");
  for (const char* sql : {"BEGIN", "BEGIN IMMEDIATE", "COMMIT", "END", "ROLLBACK", "SAVEPOINT a", "RELEASE a",
                          "ROLLBACK TO a", "ATTACH DATABASE 'x.db' AS x", "DETACH DATABASE x", "VACUUM",
                          "VACUUM INTO '/tmp/copy.db'", "  vacuum", "PRAGMA foreign_keys = OFF",
                          "PRAGMA journal_mode=DELETE", "PRAGMA synchronous(0)", "PRAGMA optimize",
                          "SELECT load_extension('x')", "CREATE TEMP TABLE tt(x)", "CREATE TEMPORARY VIEW tv AS SELECT 1"}) {
    auto r = run(sql);
    ASSERT_FALSE(r) << sql;
    EXPECT_EQ(r.error().code, errc::unsupported) << sql << ": " << r.error().message;
    EXPECT_FALSE(r.error().message.empty());
  }
  // Reading pragmas are fine.
  for (const char* sql : {"PRAGMA table_info(t)", "PRAGMA foreign_keys", "PRAGMA user_version", "PRAGMA index_list(t)"}) {
    EXPECT_TRUE(run(sql)) << sql;
  }
  auto r = run("BEGIN");
  EXPECT_NE(r.error().message.find("batch"), std::string::npos) << "the message says what to use instead";
}

TEST_F(SqliteStore, RefusesNamesD1ReservesBeforeAnythingCommits) {
  ok("CREATE TABLE t(x)");
  for (const char* sql : {"CREATE TABLE _cf_x(a)", "CREATE TABLE \"_CF_Y\"(a)", "CREATE VIEW _cf_v AS SELECT 1",
                          "CREATE INDEX _cf_i ON t(x)", "CREATE TRIGGER _cf_tr AFTER INSERT ON t BEGIN SELECT 1; END",
                          "ALTER TABLE t RENAME TO _cf_t", "ALTER TABLE t RENAME TO \"_cf_t\"", "alter table t rename to [_Cf_t]"}) {
    auto r = run(sql);
    ASSERT_FALSE(r) << sql;
    EXPECT_EQ(r.error().code, errc::unsupported) << sql << ": " << r.error().message;
    EXPECT_NE(r.error().message.find("_cf_"), std::string::npos) << r.error().message;
  }
  EXPECT_EQ(count("t"), 0) << "t is still there, under its name";
  // Names that only look alike, and column renames, are the application's.
  for (const char* sql : {"CREATE TABLE cf_x(a)", "CREATE TABLE x_cf_(a)", "ALTER TABLE t RENAME x TO _cf_x",
                          "ALTER TABLE t RENAME COLUMN _cf_x TO y", "ALTER TABLE t RENAME TO renamed"}) {
    EXPECT_TRUE(run(sql)) << sql;
  }
}

TEST_F(SqliteStore, OneStatementPerQuery) {
  ok("CREATE TABLE t(x)");
  auto r = run("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::bad_request);
  EXPECT_EQ(count("t"), 0) << "nothing of a refused request runs";
  EXPECT_TRUE(run("SELECT 1;"));
  EXPECT_TRUE(run("SELECT 1; -- trailing comment"));
  EXPECT_TRUE(run("SELECT 1 /* c */ ;;  "));
  for (const char* empty : {"", "   ", "-- only a comment", "/* c */", ";"}) {
    auto e = run(empty);
    ASSERT_FALSE(e) << empty;
    EXPECT_EQ(e.error().code, errc::bad_request) << empty;
  }
}

TEST_F(SqliteStore, ParameterErrors) {
  ok("CREATE TABLE t(a, b)");
  auto r = run("INSERT INTO t VALUES (?, ?)", {value{std::int64_t{1}}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::bad_request);
  r = run("SELECT ?", {value{std::int64_t{1}}, value{std::int64_t{2}}});
  EXPECT_EQ(r.error().code, errc::bad_request);
  // ?NNN: the highest index decides how many values are needed.
  auto q = ok("SELECT ?2, ?1", {value{std::int64_t{1}}, value{std::int64_t{2}}});
  EXPECT_EQ(q.rows[0][0], value{std::int64_t{2}});

  auto named = [&](std::string sql, std::vector<std::pair<std::string, value>> params) {
    std::promise<outcome<query_result>> p;
    statement st{std::move(sql), {}};
    st.params.is_named = true;
    st.params.named = std::move(params);
    store_->execute(std::move(st), {}, [&p](auto res) { p.set_value(std::move(res)); });
    return p.get_future().get();
  };
  auto n = named("SELECT :a, @b, $c", {{"a", value{std::int64_t{1}}}, {"@b", value{std::int64_t{2}}}, {"c", value{std::int64_t{3}}}});
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(n->rows[0][2], value{std::int64_t{3}});
  n = named("SELECT :a", {});
  EXPECT_EQ(n.error().code, errc::bad_request);
  n = named("SELECT :a", {{"a", value{}}, {"typo", value{}}});
  EXPECT_EQ(n.error().code, errc::bad_request);
  EXPECT_NE(n.error().message.find("typo"), std::string::npos);
  n = named("SELECT ?", {{"a", value{}}});
  EXPECT_EQ(n.error().code, errc::bad_request);
}

TEST_F(SqliteStore, SqlAndConstraintErrors) {
  ok("CREATE TABLE t(id INTEGER PRIMARY KEY, v NOT NULL)");
  auto r = run("SELEC 1");
  EXPECT_EQ(r.error().code, errc::sql_error);
  r = run("SELECT * FROM nope");
  EXPECT_EQ(r.error().code, errc::sql_error);
  ok("INSERT INTO t VALUES (1, 1)");
  r = run("INSERT INTO t VALUES (1, 2)");
  EXPECT_EQ(r.error().code, errc::constraint);
  r = run("INSERT INTO t VALUES (2, NULL)");
  EXPECT_EQ(r.error().code, errc::constraint);
  EXPECT_EQ(r.error().store, "sqlite");
  EXPECT_EQ(count("t"), 1);
}

TEST_F(SqliteStore, BatchIsAtomicAndNamesTheFailingIndex) {
  ok("CREATE TABLE t(id INTEGER PRIMARY KEY)");
  auto r = batch({{"INSERT INTO t VALUES (1)", {}}, {"INSERT INTO t VALUES (2)", {}}, {"INSERT INTO t VALUES (1)", {}},
                  {"INSERT INTO t VALUES (3)", {}}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::constraint);
  EXPECT_EQ(r.error().index, 2u);
  EXPECT_EQ(count("t"), 0);
  r = batch({{"INSERT INTO t VALUES (1)", {}}, {"INSERT INTO t VALUES (2)", {}}, {"SELECT count(*) FROM t", {}}});
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ(r->at(2).rows[0][0], value{std::int64_t{2}}) << "a batch sees its own writes";
  r = batch({{"INSERT INTO t VALUES (9)", {}}, {"BEGIN", {}}});
  EXPECT_EQ(r.error().code, errc::unsupported);
  EXPECT_EQ(r.error().index, 1u);
  EXPECT_EQ(count("t"), 2);
}

// Holds SQLite's write lock from another connection so that writes queue up in the store, and
// the next group is everything submitted meanwhile.
class write_lock {
 public:
  explicit write_lock(const std::string& path) {
    sqlite3_open(path.c_str(), &db_);
    EXPECT_EQ(sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  }
  void release() {
    if (db_) {
      sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
      sqlite3_close(db_);
      db_ = nullptr;
    }
  }
  ~write_lock() { release(); }

 private:
  sqlite3* db_ = nullptr;
};

TEST_F(SqliteStore, GroupCommitGivesEachWriteItsOwnResult) {
  ok("CREATE TABLE t(id INTEGER PRIMARY KEY, v UNIQUE)");
  const auto before = store_->stats();
  std::vector<std::future<outcome<query_result>>> futures;
  {
    write_lock lock(dir_.file("store.db"));
    for (int i = 0; i < 100; ++i) {
      // Every tenth write collides with the one before it and must fail alone.
      const std::int64_t v = (i % 10 == 9) ? i - 1 : i;
      futures.push_back(submit("INSERT INTO t(v) VALUES (?)", {value{v}}));
    }
    lock.release();
  }
  std::set<std::int64_t> rowids;
  int failed = 0;
  for (int i = 0; i < 100; ++i) {
    auto r = futures[i].get();
    if (i % 10 == 9) {
      ASSERT_FALSE(r) << i;
      EXPECT_EQ(r.error().code, errc::constraint);
      ++failed;
    } else {
      ASSERT_TRUE(r) << i << ": " << r.error().message;
      EXPECT_EQ(r->meta.changes, 1);
      rowids.insert(r->meta.last_row_id);
    }
  }
  EXPECT_EQ(failed, 10);
  EXPECT_EQ(rowids.size(), 90u) << "every write got its own rowid";
  EXPECT_EQ(count("t"), 90);
  const auto after = store_->stats();
  EXPECT_LE(after.groups - before.groups, 2u) << "writes queued behind the lock commit together";
  EXPECT_EQ(after.group_jobs - before.group_jobs, 100u);
}

TEST_F(SqliteStore, QueryTimeoutInterruptsTheStatement) {
  exec_options opts;
  opts.deadline = clock::now() + std::chrono::milliseconds(50);
  auto r = run("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", {}, opts);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout);
  EXPECT_TRUE(run("SELECT 1")) << "the reader connection is still usable";
}

TEST_F(SqliteStore, TimedOutWriteInAGroupDoesNotTakeOthersDown) {
  ok("CREATE TABLE t(x)");
  std::vector<std::future<outcome<query_result>>> futures;
  {
    write_lock lock(dir_.file("store.db"));
    futures.push_back(submit("INSERT INTO t VALUES (1)"));
    exec_options expired;
    expired.deadline = clock::now();  // already passed: must not run at all
    futures.push_back(submit("INSERT INTO t VALUES (2)", {}, expired));
    futures.push_back(submit("INSERT INTO t VALUES (3)"));
    lock.release();
  }
  EXPECT_TRUE(futures[0].get());
  auto r = futures[1].get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout);
  EXPECT_TRUE(futures[2].get());
  EXPECT_EQ(count("t"), 2);
}

TEST_F(SqliteStore, WritesAreVisibleToTheNextRead) {
  ok("CREATE TABLE t(x)");
  for (int i = 0; i < 50; ++i) {
    ok("INSERT INTO t VALUES (?)", {value{std::int64_t{i}}});
    EXPECT_EQ(count("t"), i + 1);
  }
}

// A caller that allows it (an I/O thread) gets a short read run on its own thread, before
// execute() returns; a long read is run again on a reader and gives the same answer; writes and
// statements that do not prepare yet still go the usual way, in order.
TEST_F(SqliteStore, ShortReadsRunOnTheCallersThread) {
  ok("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)");
  exec_options inline_ok;
  inline_ok.may_run_inline = true;
  const auto caller = std::this_thread::get_id();
  auto on = [&](std::string sql, std::vector<value> params) {
    std::optional<outcome<query_result>> got;
    std::thread::id ran_on;
    std::promise<void> done;
    statement st{std::move(sql), {}};
    st.params.positional = std::move(params);
    store_->execute(std::move(st), inline_ok, [&](outcome<query_result> r) {
      ran_on = std::this_thread::get_id();
      got = std::move(r);
      done.set_value();
    });
    done.get_future().wait();
    return std::make_pair(ran_on == caller, std::move(*got));
  };
  auto [w_inline, w] = on("INSERT INTO t(name) VALUES (?)", {value{std::string("ada")}});
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_FALSE(w_inline) << "a write runs on the writer";
  EXPECT_EQ(w->meta.changes, 1);
  auto [r_inline, r] = on("SELECT name FROM t WHERE id = ?", {value{std::int64_t{1}}});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r_inline);
  ASSERT_EQ(r->rows.size(), 1u);
  EXPECT_EQ(std::get<std::string>(r->rows[0][0]), "ada");
  EXPECT_EQ(r->meta.served_by, "sqlite");
  // Past the budget: run again from the start on a reader, with the whole answer.
  auto [l_inline, l] = on("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) SELECT count(*) FROM c", {});
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_FALSE(l_inline);
  EXPECT_EQ(std::get<std::int64_t>(l->rows.at(0).at(0)), 100000);
  // The inline connection's errors are the statement's own.
  auto [e_inline, e] = on("SELECT nope FROM t", {});
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, errc::sql_error);
  auto [u_inline, u] = on("PRAGMA foreign_keys = OFF", {});
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, errc::unsupported);
  // A table created after the inline connection prepared its statements.
  ok("CREATE TABLE later(x)");
  ok("INSERT INTO later VALUES (7)");
  auto [n_inline, n] = on("SELECT x FROM later", {});
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(std::get<std::int64_t>(n->rows.at(0).at(0)), 7);
  // A timeout is the deadline's, inline or not.
  exec_options expired = inline_ok;
  expired.deadline = clock::now();
  auto t = run("SELECT 1", {}, expired);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, errc::timeout);
  store_->shutdown();
  auto [s_inline, s] = on("SELECT 1", {});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, errc::unavailable);
}

TEST_F(SqliteStore, AfterShutdownWorkIsRefused) {
  store_->shutdown();
  auto r = run("SELECT 1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unavailable);
}

TEST_F(SqliteStore, OpenErrors) {
  sqlite_store_options o;
  o.db.path = ":memory:";
  EXPECT_FALSE(sqlite_store::open(o));
  o.db.path = dir_.file("no/such/dir/x.db");
  auto s = sqlite_store::open(o);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, errc::unavailable);
  o.db.path = dir_.file("y.db");
  o.db.synchronous = "SOMETIMES";
  EXPECT_FALSE(sqlite_store::open(o));
}

}  // namespace
}  // namespace tandem::backends

namespace tandem::backends {
namespace {

// A journal body carries every value exactly, whatever its size or kind.
TEST(JournalBody, RoundTripsEveryValue) {
  using protocol::value;
  std::vector<protocol::statement> sts;
  protocol::statement st{"INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", {}};
  st.params.positional = {value{}, value{std::numeric_limits<std::int64_t>::min()}, value{-0.0}, value{std::numeric_limits<double>::infinity()},
                          value{-std::numeric_limits<double>::infinity()}, value{5e-324}, value{std::string(150000, 'w')},
                          value{std::string("ünï \"q\" \\ \n")}, value{protocol::blob{std::string(2000000, '\xff')}}, value{protocol::blob{}}};
  sts.push_back(st);
  auto back = decode_statements(encode_statements(sts));
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->size(), 1u);
  ASSERT_EQ(back->at(0).params.positional.size(), st.params.positional.size());
  for (std::size_t i = 0; i < st.params.positional.size(); ++i) {
    const auto& a = st.params.positional[i];
    const auto& b = back->at(0).params.positional[i];
    ASSERT_EQ(a.index(), b.index()) << i;
    if (const auto* d = std::get_if<double>(&a)) {
      EXPECT_EQ(std::signbit(*d), std::signbit(std::get<double>(b))) << i;
      EXPECT_EQ(*d, std::get<double>(b)) << i;
    } else {
      EXPECT_TRUE(a == b) << i;
    }
  }
}

}  // namespace
}  // namespace tandem::backends

namespace tandem::backends {
namespace {

// Row checks (what a follower must hold after a row-image entry) describe the leader's own rows:
// each one, read on the leader right after the write, is met; survives the journal's encoding;
// and notices a row that differs, is missing, or is still there.
class RowChecks : public ::testing::Test {
 protected:
  void SetUp() override {
    sqlite_options o;
    o.path = dir_.file("rows.db");
    auto c = sqlite_connection::open(o);
    ASSERT_TRUE(c) << c.error().message;
    conn_ = std::move(*c);
  }
  protocol::query_result run(const statement& st) {
    auto r = conn_->execute(st, clock::time_point::max(), true);
    EXPECT_TRUE(r) << st.sql << ": " << r.error().message;
    return r ? std::move(*r) : protocol::query_result{};
  }
  // The checks of one recorded write.
  std::vector<row_check> record(const statement& write) {
    auto rec = row_recorder::start(conn_->handle(), 10000);
    EXPECT_TRUE(rec);
    run(write);
    auto images = rec->finish(d1_limits{}, 10000);
    EXPECT_TRUE(images) << images.error().message;
    if (!images) return {};
    auto back = decode_checks(encode_checks(images->checks));
    EXPECT_EQ(back.size(), images->checks.size());
    return back;
  }
  void expect_met(const std::vector<row_check>& checks) {
    for (const auto& c : checks) EXPECT_EQ(judge_check(c, run(c.query)), "") << c.query.sql;
  }
  testing::temp_dir dir_;
  std::unique_ptr<sqlite_connection> conn_;
};

TEST_F(RowChecks, EveryChangedRowIsCheckedAsTheLeaderHoldsIt) {
  run({"CREATE TABLE t(id INTEGER PRIMARY KEY, a, b TEXT, c REAL, d BLOB UNIQUE, g AS (a || 'x'))", {}});
  run({"CREATE TABLE w(k TEXT, n INTEGER, v, PRIMARY KEY (k, n)) WITHOUT ROWID", {}});
  run({"CREATE TABLE plain(v)", {}});
  statement insert{"INSERT INTO t(id, a, b, c, d) VALUES (1, ?, ?, ?, ?), (2, ?, 'x', -0.0, NULL)", {}};
  insert.params.positional = {value{std::numeric_limits<std::int64_t>::max()}, value{std::string(5000, 'q')}, value{-0.0},
                              value{protocol::blob{std::string(70000, '\x01') + "end"}}, value{9007199254740993.0}};
  auto checks = record(insert);
  ASSERT_EQ(checks.size(), 2u);
  ASSERT_TRUE(checks[0].row);
  EXPECT_EQ(checks[0].row->size(), 5u);  // the generated column is the follower's to compute
  EXPECT_EQ(checks[0].address, "FROM \"t\" WHERE \"id\" = ?");
  expect_met(checks);
  // A raw text value (not UTF-8) and a moved rowid: the old address must be empty.
  statement raw{"UPDATE t SET id = 7, a = CAST(x'ff00' AS TEXT) WHERE id = 2", {}};
  checks = record(raw);
  ASSERT_EQ(checks.size(), 2u);
  EXPECT_FALSE(checks[0].row);
  ASSERT_TRUE(checks[1].row);
  EXPECT_NE(std::get<std::string>(checks[1].row->at(1)).find("text:2:FF00"), std::string::npos);
  expect_met(checks);
  run({"INSERT INTO w VALUES ('a', 1, 'v'), ('b', 2, 'v')", {}});
  checks = record({"UPDATE w SET n = n + 10 WHERE k = 'a'", {}});
  ASSERT_EQ(checks.size(), 2u);
  expect_met(checks);
  checks = record({"INSERT INTO plain VALUES (1), (2); ", {}});
  ASSERT_EQ(checks.size(), 2u);
  expect_met(checks);
  // A row deleted, then its key inserted again in the same write: one check, the new row.
  run({"CREATE TRIGGER again AFTER DELETE ON t WHEN old.id = 1 BEGIN INSERT INTO t(id, a) VALUES (1, 'again'); END", {}});
  checks = record({"DELETE FROM t WHERE id = 1", {}});
  ASSERT_EQ(checks.size(), 1u);
  ASSERT_TRUE(checks[0].row);
  EXPECT_TRUE(protocol::identical(checks[0].row->at(1), value{std::string("again")}));
  expect_met(checks);
}

TEST_F(RowChecks, ADifferentMissingOrLeftoverRowIsNamedWithoutItsValues) {
  run({"CREATE TABLE t(id INTEGER PRIMARY KEY, v, big BLOB)", {}});
  statement insert{"INSERT INTO t VALUES (1, 'secret', ?), (2, 2, NULL)", {}};
  insert.params.positional = {value{protocol::blob{std::string(3000, 'z')}}};
  const auto checks = record(insert);
  ASSERT_EQ(checks.size(), 2u);
  run({"UPDATE t SET v = 'other' WHERE id = 1", {}});
  const std::string differs = judge_check(checks[0], run(checks[0].query));
  EXPECT_NE(differs.find("column v differs: same type (TEXT)"), std::string::npos) << differs;
  EXPECT_EQ(differs.find("secret"), std::string::npos) << differs;
  run({"UPDATE t SET v = 2.0 WHERE id = 2", {}});
  EXPECT_NE(judge_check(checks[1], run(checks[1].query)).find("the leader holds INTEGER, the follower REAL"), std::string::npos);
  run({"UPDATE t SET v = 'secret', big = x'7a' WHERE id = 1", {}});  // the fingerprint tells a blob's length
  EXPECT_NE(judge_check(checks[0], run(checks[0].query)).find("column big differs"), std::string::npos);
  run({"DELETE FROM t WHERE id = 1", {}});
  EXPECT_EQ(judge_check(checks[0], run(checks[0].query)), "the follower lacks the row");
  const auto gone = record({"DELETE FROM t WHERE id = 2", {}});
  ASSERT_EQ(gone.size(), 1u);
  run({"INSERT INTO t VALUES (2, 2, NULL)", {}});
  EXPECT_EQ(judge_check(gone[0], run(gone[0].query)), "the leader deleted the row and the follower still has it");
  // Entries written before checks existed hold "[]": no checks, not garbage.
  EXPECT_TRUE(decode_checks("[]").empty());
}

}  // namespace
}  // namespace tandem::backends
