// Sameness: ordinary application writes through the dual modes leave D1 identical to SQLite
// (every cell's type and bytes, every rowid, the schema, AUTOINCREMENT counters), or are refused
// before the leader commits. One named test per write that once left the stores different or
// stopped replication. Real parts: a SQLite file, the real local D1, a real server and client.
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <thread>

#include "backends/journal.hpp"
#include "proxy/replicator.hpp"
#include "proxy/router.hpp"
#include "tests/support/d1_support.hpp"
#include "tests/support/eventually.hpp"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
using protocol::errc;
using protocol::value;

class Sameness : public ::testing::Test {
 protected:
  void start(proxy::mode m, proxy::router_options ro = {}, std::string d1_endpoint = {}) {
    ro.initial = m;
    auto made = make_dual_router(dir_, ro, {}, std::move(d1_endpoint));
    database_ = made.database;
    sqlite_ = made.sqlite;
    d1_ = made.d1;
    srv_ = std::make_unique<test_server>(test_server::default_options(), std::move(made.route));
    c_ = connect();
  }
  proxy::router& route() { return srv_->router(); }

  std::unique_ptr<protocol::client> connect() {
    auto c = protocol::client::connect(srv_->client_options());
    EXPECT_TRUE(c);
    return c ? std::move(*c) : nullptr;
  }

  protocol::query_result ok(const std::string& sql, std::vector<value> params = {}) {
    protocol::params p;
    p.positional = std::move(params);
    auto r = c_->query(sql, p);
    EXPECT_TRUE(r) << sql << ": " << (r ? "" : r.error().message);
    return r ? *r : protocol::query_result{};
  }

  std::vector<protocol::query_result> ok_batch(std::vector<protocol::statement> sts) {
    auto r = c_->batch(std::move(sts));
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? *r : std::vector<protocol::query_result>{};
  }

  // Caught up, nothing stuck, and identical.
  void expect_identical() {
    auto rep = route().replication();
    ASSERT_TRUE(rep);
    ASSERT_TRUE(rep->wait_caught_up(backends::clock::now() + 120s)) << rep->last_error();
    EXPECT_EQ(rep->last_error(), "");
    EXPECT_TRUE(expect_identical_stores(*sqlite_, *d1_));
  }

  // The follower applies later than the leader committed, on another second of the clock.
  void later_on_the_follower(const std::function<void()>& writes) {
    route().pause_replication();
    const auto t0 = std::time(nullptr);
    writes();
    EXPECT_TRUE(eventually("the wall clock two seconds on", [&] { return std::time(nullptr) >= t0 + 2; }, k_eventually_bound, 50ms));
    route().resume_replication();
  }

  static protocol::statement st(std::string sql, std::vector<value> params = {}) {
    protocol::statement s{std::move(sql), {}};
    s.params.positional = std::move(params);
    return s;
  }

  temp_dir dir_;
  std::string database_;
  backends::sqlite_store* sqlite_ = nullptr;
  backends::d1_store* d1_ = nullptr;
  std::unique_ptr<test_server> srv_;
  std::unique_ptr<protocol::client> c_;
};

TEST_F(Sameness, AnIntegerBoundIntoATextColumnStaysTextOfItsDigits) {
  start(proxy::mode::dual_sqlite);
  ok("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b, c REAL, d NUMERIC)");
  // A boolean arrives as the integer 1 or 0 (the codec), and travels the same way.
  ok("INSERT INTO t(a, b, c, d) VALUES (?, ?, ?, ?)", {value{std::int64_t{42}}, value{std::int64_t{42}}, value{std::int64_t{7}}, value{std::int64_t{1}}});
  ok("INSERT INTO t(a, b, c, d) VALUES (?, ?, ?, ?)",
     {value{std::int64_t{9007199254740993}}, value{std::numeric_limits<std::int64_t>::min()}, value{2.0}, value{-0.0}});
  expect_identical();
  backends::exec_options o;
  o.internal = true;
  auto r = proxy::run_batch(*d1_, {{"SELECT typeof(a), a, typeof(b), typeof(c), typeof(d) FROM t WHERE id = 1", {}}}, o);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->at(0).rows.at(0), (std::vector<value>{value{std::string("text")}, value{std::string("42")}, value{std::string("integer")},
                                                     value{std::string("real")}, value{std::string("integer")}}));
  // An integer compared with a TEXT column: the same rows match on both (the literal D1 gets has
  // no affinity, as a bound value has none).
  ok("INSERT INTO t(a) VALUES ('42.0'), (' 42'), ('42e0')");
  expect_identical();
  for (backends::store* s : {static_cast<backends::store*>(sqlite_), static_cast<backends::store*>(d1_)}) {
    protocol::statement q{"SELECT count(*) FROM t WHERE a = ? AND a IN (?, 7) ORDER BY ?", {}};
    q.params.positional = {value{std::int64_t{42}}, value{std::int64_t{42}}, value{std::int64_t{2}}};
    auto n = proxy::run_batch(*s, {q}, backends::exec_options{});
    ASSERT_TRUE(n) << s->name() << ": " << n.error().message;
    EXPECT_EQ(n->at(0).rows.at(0).at(0), value{std::int64_t{1}}) << s->name();
  }
}

// JSON's true and false, bound as a client sends them, are the integers 1 and 0 on both stores.
TEST_F(Sameness, BooleansBoundAsJsonArriveAsIntegersOnBoth) {
  start(proxy::mode::dual_sqlite);
  ok("CREATE TABLE flags(id INTEGER PRIMARY KEY, a TEXT, b, c INTEGER, d REAL)");
  raw_connection conn(srv_->port());
  conn.send("{\"id\":1,\"op\":\"query\",\"sql\":\"INSERT INTO flags(a, b, c, d) VALUES (?, ?, ?, ?)\","
            "\"params\":[true, false, true, false]}\n");
  const auto line = conn.read_line();
  ASSERT_TRUE(line);
  EXPECT_EQ(code_of(*line), "OK") << *line;
  expect_identical();
  backends::exec_options o;
  o.internal = true;
  auto r = proxy::run_batch(*d1_, {{"SELECT typeof(a), a, typeof(b), b, typeof(c), typeof(d) FROM flags", {}}}, o);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->at(0).rows.at(0), (std::vector<value>{value{std::string("text")}, value{std::string("1")}, value{std::string("integer")},
                                                     value{std::int64_t{0}}, value{std::string("integer")}, value{std::string("real")}}));
}

TEST_F(Sameness, DirectD1WritesKeepIntegerTypes) {
  start(proxy::mode::dual_d1);
  ok("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b)");
  ok("INSERT INTO t(a, b) VALUES (?, ?)", {value{std::int64_t{42}}, value{std::int64_t{1}}});
  expect_identical();
  backends::exec_options o;
  o.internal = true;
  auto r = proxy::run_batch(*d1_, {{"SELECT typeof(a), a, typeof(b) FROM t", {}}}, o);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->at(0).rows[0], (std::vector<value>{value{std::string("text")}, value{std::string("42")}, value{std::string("integer")}}));
}

TEST_F(Sameness, TimeDefaultsTakeTheLeadersClockNotTheFollowers) {
  start(proxy::mode::dual_sqlite);
  ok("CREATE TABLE ev(id INTEGER PRIMARY KEY, v, a INTEGER DEFAULT (unixepoch()), b TEXT DEFAULT (strftime('%s')), "
     "c TEXT DEFAULT CURRENT_TIMESTAMP, d REAL DEFAULT (julianday('now')), e TEXT DEFAULT (date()), f TEXT DEFAULT (time()))");
  later_on_the_follower([&] {
    ok("INSERT INTO ev(v) VALUES (1)");
    ok("INSERT INTO ev(v) VALUES (?)", {value{std::string("two")}});
  });
  expect_identical();
}

TEST_F(Sameness, AnUpdatedAtTriggerReplicatesTheLeadersTimeAndRunsOnce) {
  start(proxy::mode::dual_sqlite);
  ok("CREATE TABLE doc(id INTEGER PRIMARY KEY, body TEXT, updated_at TEXT, edits INTEGER DEFAULT 0)");
  ok("CREATE TABLE audit(n INTEGER PRIMARY KEY AUTOINCREMENT, doc INTEGER, at TEXT)");
  ok("CREATE TRIGGER doc_touch AFTER UPDATE OF body ON doc BEGIN "
     "UPDATE doc SET updated_at = datetime('now'), edits = edits + 1 WHERE id = new.id; "
     "INSERT INTO audit(doc, at) VALUES (new.id, datetime('now')); END");
  ok("INSERT INTO doc(id, body) VALUES (1, 'a'), (2, 'b')");
  later_on_the_follower([&] {
    ok("UPDATE doc SET body = body || '!'");  // no parameters, no time function of its own
    ok("UPDATE doc SET body = 'c' WHERE id = 2");
  });
  expect_identical();
  EXPECT_EQ(rows_of(*d1_, "audit").size(), 3u);
  // The trigger is still there on D1 (dropped and created again around the rows).
  ok("UPDATE doc SET body = 'd' WHERE id = 1");
  expect_identical();
  EXPECT_EQ(rows_of(*d1_, "audit").size(), 4u);
}

TEST_F(Sameness, AnOrmInsertWith120ParametersReplicates) {
  start(proxy::mode::dual_sqlite);
  ok("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, score REAL, born INTEGER)");
  std::string sql = "INSERT INTO users(name, score, born) VALUES ";
  std::vector<value> params;
  for (int i = 0; i < 40; ++i) {
    sql += i ? ", (?, ?, ?)" : "(?, ?, ?)";
    params.emplace_back(std::string("user's name ") + std::to_string(i));
    params.emplace_back(i + 0.5);
    params.emplace_back(std::int64_t{1700000000} + i);
  }
  ok(sql, params);
  expect_identical();
  EXPECT_EQ(rows_of(*d1_, "users").size(), 40u);
}

TEST_F(Sameness, ABatchLargerThanD1TakesIsRefusedBeforeTheLeaderCommits) {
  start(proxy::mode::dual_sqlite);
  ok("CREATE TABLE t(id INTEGER PRIMARY KEY, v)");
  std::vector<protocol::statement> big;
  for (int i = 0; i < 1200; ++i) big.push_back(st("INSERT INTO t(v) VALUES (?)", {value{std::int64_t{i}}}));
  auto r = c_->batch(big);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsupported);
  EXPECT_NE(r.error().message.find("1200"), std::string::npos) << r.error().message;
  big.resize(900);
  ok_batch(big);
  expect_identical();
  EXPECT_EQ(rows_of(*sqlite_, "t").size(), 900u);
}

TEST_F(Sameness, LargeBlobsReplicateInPiecesAndTooLargeOnesAreRefused) {
  start(proxy::mode::dual_sqlite);
  ok("CREATE TABLE files(id INTEGER PRIMARY KEY, name TEXT, data BLOB)");
  std::string bytes(60000, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7 + 3);
  ok("INSERT INTO files(name, data) VALUES (?, ?)", {value{std::string("60k")}, value{protocol::blob{bytes}}});
  std::string big(1500000, 'x');
  big[0] = '\0';
  ok("INSERT INTO files(name, data) VALUES (?, ?)", {value{std::string("1.5M")}, value{protocol::blob{big}}});
  ok("UPDATE files SET data = ? WHERE name = '60k'", {value{protocol::blob{bytes + bytes}}});
  // A UNIQUE blob column that already holds an empty blob: a large one must arrive whole, never
  // through an empty or partial value (which would collide).
  ok("CREATE TABLE ub(id INTEGER PRIMARY KEY, b BLOB UNIQUE, at TEXT)");
  ok("INSERT INTO ub(b) VALUES (X'')");
  ok("INSERT INTO ub(b, at) VALUES (?, datetime('now'))", {value{protocol::blob{bytes}}});
  ok("UPDATE ub SET b = ?, at = datetime('now') WHERE id = 2", {value{protocol::blob{bytes + "x"}}});
  auto r = c_->query("INSERT INTO files(name, data) VALUES ('too big', ?)", {{value{protocol::blob{std::string(2000001, 'y')}}}, {}, false});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsupported);
  // D1's 2 MB is per row too: two values that fit alone, in one row, do not.
  r = c_->query("INSERT INTO files(name, data) VALUES (?, ?)",
                {{value{std::string(1100000, 'n')}, value{protocol::blob{std::string(1100000, 'z')}}}, {}, false});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsupported) << r.error().message;
  EXPECT_NE(r.error().message.find("per row"), std::string::npos) << r.error().message;
  r = c_->query("UPDATE files SET name = ? WHERE name = '1.5M'", {{value{std::string(600000, 'n')}}, {}, false});
  ASSERT_FALSE(r) << "1.5 MB of data and 0.6 MB of name in one row";
  EXPECT_EQ(r.error().code, errc::unsupported) << r.error().message;
  expect_identical();
  EXPECT_EQ(rows_of(*sqlite_, "files").size(), 2u);
}

TEST_F(Sameness, AUniqueValueMovedToANewRowInOneBatch) {
  start(proxy::mode::dual_sqlite);
  ok("CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL, seen TEXT)");
  ok("INSERT INTO users(id, email) VALUES (1, 'a@x'), (2, 'b@x'), (3, 'c@x')");
  ok_batch({st("DELETE FROM users WHERE id = 2"), st("INSERT INTO users(id, email, seen) VALUES (10, 'b@x', datetime('now'))"),
            st("UPDATE users SET email = 'b2@x' WHERE id = 10"), st("UPDATE users SET email = 'b@x', seen = datetime('now') WHERE id = 3"),
            st("UPDATE users SET email = 'c@x' WHERE id = 10")});
  expect_identical();
}

TEST_F(Sameness, AParentInsertedAfterItsChildsUpdateInOneBatch) {
  start(proxy::mode::dual_sqlite);
  ok("CREATE TABLE parent(id INTEGER PRIMARY KEY, created TEXT)");
  ok("CREATE TABLE child(id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id) ON DELETE CASCADE, note TEXT)");
  ok("INSERT INTO parent(id, created) VALUES (1, 'then')");
  ok("INSERT INTO child(id, parent) VALUES (1, 1)");
  ok_batch({st("UPDATE child SET note = 'moved' WHERE id = 1"), st("INSERT INTO parent(id, created) VALUES (2, datetime('now'))"),
            st("INSERT INTO child(id, parent, note) VALUES (2, 2, 'new')"), st("UPDATE child SET parent = 2 WHERE id = 1")});
  ok_batch({st("DELETE FROM parent WHERE id = 2"), st("INSERT INTO parent(id, created) VALUES (3, datetime('now'))")});
  expect_identical();
  EXPECT_EQ(rows_of(*d1_, "child").size(), 0u) << "the cascade ran once, on both";
}

// A table whose rows reference each other and themselves, written as row images (the time
// function) in one batch, then cascaded away.
TEST_F(Sameness, SelfReferencingRowsReplicateAsRowsAndCascade) {
  start(proxy::mode::dual_sqlite);
  ok("CREATE TABLE node(id INTEGER PRIMARY KEY, parent INTEGER REFERENCES node(id) ON DELETE CASCADE, at TEXT)");
  ok_batch({st("INSERT INTO node(id, parent, at) VALUES (1, NULL, datetime('now'))"),
            st("INSERT INTO node(id, parent, at) VALUES (2, 1, datetime('now')), (3, 2, datetime('now'))"),
            st("INSERT INTO node(id, parent, at) VALUES (5, 5, datetime('now'))"),
            st("UPDATE node SET parent = 3, at = datetime('now') WHERE id = 5")});
  expect_identical();
  ok("DELETE FROM node WHERE id = 1 AND at <= datetime('now')");  // the cascade takes 2, 3 and 5
  expect_identical();
  EXPECT_EQ(rows_of(*d1_, "node").size(), 0u);
}

TEST_F(Sameness, WithoutRowidStrictAndGeneratedColumnsReplicateAsRows) {
  start(proxy::mode::dual_sqlite);
  ok("CREATE TABLE kv(k TEXT PRIMARY KEY, v ANY, at INTEGER) STRICT, WITHOUT ROWID");
  ok("CREATE TABLE g(id INTEGER PRIMARY KEY, a INTEGER, twice INTEGER GENERATED ALWAYS AS (a * 2) STORED, "
     "half REAL GENERATED ALWAYS AS (a / 2.0) VIRTUAL, at TEXT)");
  ok("INSERT INTO kv VALUES ('x', 1, unixepoch()), ('y', 'text', unixepoch())");
  ok("UPDATE kv SET k = 'z', at = unixepoch() WHERE k = 'x'");
  ok("INSERT INTO g(a, at) VALUES (21, datetime('now'))");
  ok("UPDATE g SET a = a + 1, at = datetime('now')");
  ok("INSERT INTO kv VALUES ('y', 2, unixepoch()) ON CONFLICT(k) DO UPDATE SET v = excluded.v, at = excluded.at");
  ok("INSERT OR REPLACE INTO g(id, a, at) VALUES (1, 5, datetime('now'))");
  auto r = ok("DELETE FROM kv WHERE at <= unixepoch() RETURNING k");
  EXPECT_EQ(r.rows.size(), 2u);
  expect_identical();
}

// verify_writes compares each statement's changes on both stores: a trigger's own rows (and a
// cascade's) are not counted on either, so they raise no false alarm.
class SamenessBothWays : public Sameness, public ::testing::WithParamInterface<proxy::mode> {};

TEST_P(SamenessBothWays, TriggersAndCascadesRaiseNoFalseVerificationFailures) {
  start(GetParam());
  ok("CREATE TABLE p(id INTEGER PRIMARY KEY, v TEXT)");
  ok("CREATE TABLE ch(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id) ON DELETE CASCADE)");
  ok("CREATE TABLE audit(n INTEGER PRIMARY KEY, what TEXT)");
  ok("CREATE TRIGGER p_ins AFTER INSERT ON p BEGIN INSERT INTO audit(what) VALUES ('ins ' || new.id); INSERT INTO audit(what) VALUES ('again'); END");
  ok("INSERT INTO p(id, v) VALUES (1, 'a'), (2, 'b')");
  ok("INSERT INTO ch(id, p) VALUES (1, 1), (2, 1), (3, 2)");
  ok("DELETE FROM p WHERE id = 1");
  ok("UPDATE p SET v = v || '!'");
  expect_identical();
  EXPECT_EQ(route().metrics().verification_failures.load(), 0u);
}

TEST_P(SamenessBothWays, SelfReferencingRowsReplicateAsStatements) {
  start(GetParam());
  ok("CREATE TABLE node(id INTEGER PRIMARY KEY, parent INTEGER REFERENCES node(id) ON DELETE CASCADE)");
  ok_batch({st("INSERT INTO node VALUES (1, NULL), (2, 1), (3, 2)"), st("INSERT INTO node VALUES (5, 5)"),
            st("UPDATE node SET parent = 3 WHERE id = 5")});
  ok("DELETE FROM node WHERE id = 2");
  expect_identical();
  EXPECT_EQ(rows_of(*d1_, "node").size(), 1u);
}

// D1 reserves names starting with _cf_: refused before either store runs anything, in both modes
// (in dual-sqlite it used to commit on SQLite and stop replication).
TEST_P(SamenessBothWays, ANameD1ReservesIsRefusedBeforeAnythingCommits) {
  start(GetParam());
  ok("CREATE TABLE t(id INTEGER PRIMARY KEY)");
  for (const char* sql : {"CREATE TABLE _cf_x(a)", "CREATE INDEX _cf_i ON t(id)", "ALTER TABLE t RENAME TO _cf_t"}) {
    auto r = c_->query(sql);
    ASSERT_FALSE(r) << sql;
    EXPECT_EQ(r.error().code, errc::unsupported) << sql << ": " << r.error().message;
    EXPECT_NE(r.error().message.find("_cf_"), std::string::npos) << r.error().message;
  }
  ok("INSERT INTO t VALUES (1)");
  expect_identical();
}

INSTANTIATE_TEST_SUITE_P(BothDualModes, SamenessBothWays, ::testing::Values(proxy::mode::dual_sqlite, proxy::mode::dual_d1),
                         [](const auto& info) { return info.param == proxy::mode::dual_sqlite ? std::string("dual_sqlite") : std::string("dual_d1"); });

// verify_writes compares what a row-image entry did too: after each batch the rows the write
// changed are read back from the follower and compared, type and bytes, with the leader's. A row
// the follower lacks (deleted behind tandem's back), or one whose other column was changed behind
// its back, is a verification failure, not silence; the rows that match count none.
TEST_F(Sameness, ARowImageWhoseRowDiffersOnTheFollowerFailsVerification) {
  start(proxy::mode::dual_sqlite);
  ok("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, w)");
  ok("INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)");
  expect_identical();
  backends::exec_options o;
  o.internal = true;
  ASSERT_TRUE(proxy::run_batch(*d1_, {{"DELETE FROM t WHERE id = 1", {}}, {"UPDATE t SET w = 2.0 WHERE id = 3", {}}}, o));
  ok("UPDATE t SET v = datetime('now') WHERE id = 2");  // row images, and the follower has the row as it is
  auto rep = route().replication();
  // A row inserted and deleted by two entries of one batch is compared as the last one left it.
  rep->pause();
  ok("INSERT INTO t VALUES (10, datetime('now'), 10)");
  ok("DELETE FROM t WHERE id = 10 AND random() IS NOT NULL");
  rep->resume();
  ASSERT_TRUE(rep->wait_caught_up(backends::clock::now() + 120s)) << rep->last_error();
  EXPECT_EQ(route().metrics().verification_failures.load(), 0u);
  ok("UPDATE t SET v = datetime('now') WHERE id = 1");  // the follower lacks the row
  ASSERT_TRUE(rep->wait_caught_up(backends::clock::now() + 120s)) << rep->last_error();
  EXPECT_EQ(route().metrics().verification_failures.load(), 1u);
  ok("UPDATE t SET v = datetime('now') WHERE id = 3");  // w is 3 on SQLite, 3.0 on D1
  ASSERT_TRUE(rep->wait_caught_up(backends::clock::now() + 120s)) << rep->last_error();
  EXPECT_EQ(route().metrics().verification_failures.load(), 2u);
}

// While D1 leads, a batch's entry records each statement's changed-row count too (a bookkeeping
// statement after each one), so a SQLite follower that changes another number of rows is a
// verification failure; reads and schema changes in the batch record none and compare nothing.
TEST_F(Sameness, AD1LedBatchIsVerifiedStatementByStatement) {
  start(proxy::mode::dual_d1);
  ok("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)");
  ok_batch({st("INSERT INTO t VALUES (1, 0), (2, 0), (3, 0)"), st("SELECT count(*) FROM t"), st("CREATE INDEX t_v ON t(v)"),
            st("UPDATE t SET v = v + 1 WHERE id >= ?", {value{std::int64_t{2}}})});
  expect_identical();
  EXPECT_EQ(route().metrics().verification_failures.load(), 0u);
  backends::exec_options o;
  o.internal = true;
  ASSERT_TRUE(proxy::run_batch(*sqlite_, {{"DELETE FROM t WHERE id = 3", {}}}, o));  // behind tandem's back
  ok_batch({st("UPDATE t SET v = v + 1"), st("SELECT 1")});  // 3 rows on D1, 2 on SQLite
  auto rep = route().replication();
  ASSERT_TRUE(rep->wait_caught_up(backends::clock::now() + 120s)) << rep->last_error();
  EXPECT_EQ(route().metrics().verification_failures.load(), 1u);
}

// While D1 leads, SQLite (3.40 here) replays what D1 ran: a write using a function or syntax only
// D1's newer SQLite knows is refused before D1 runs it, not discovered by the follower.
TEST_F(Sameness, ADualD1WriteTheSqliteFollowerCouldNotRunIsRefusedUpFront) {
  start(proxy::mode::dual_d1);
  ok("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)");
  auto r = c_->query("INSERT INTO t(b) VALUES (unhex('41'))");  // unhex() is SQLite 3.41's
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsupported) << r.error().message;
  EXPECT_NE(r.error().message.find("no such function"), std::string::npos) << r.error().message;
  // A batch that creates a table and writes to it at once is still D1's to judge, and runs.
  ok_batch({st("CREATE TABLE made(id INTEGER PRIMARY KEY, v)"), st("INSERT INTO made(v) VALUES (?)", {value{std::int64_t{7}}})});
  expect_identical();
  EXPECT_EQ(rows_of(*sqlite_, "t").size(), 0u);
  EXPECT_EQ(rows_of(*sqlite_, "made").size(), 1u);
}

TEST_F(Sameness, ABatchThatCommitsLateIsNotAppliedTwice) {
  proxy::router_options ro;
  ro.replication.request_timeout = 500ms;
  start(proxy::mode::dual_sqlite, ro);
  ok("CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)");
  ok("INSERT INTO c VALUES (1, 0)");
  expect_identical();
  auto& d1 = local_d1::instance();
  const int finished = d1.faulted_requests_finished(database_);
  // The next request D1 gets waits 2.5 s and then runs: tandem stops waiting at 0.5 s, reads the
  // position (unchanged) and sends the same entry again. Whichever copy runs second must change
  // nothing.
  d1.inject_fault(database_, R"({"count":1,"delay_ms":2500,"fail":false})");
  ok("UPDATE c SET n = n + 1");
  ASSERT_TRUE(eventually("the local D1 to finish the delayed request", [&] { return d1.faulted_requests_finished(database_) > finished; },
                         k_eventually_bound, 50ms));
  expect_identical();
  EXPECT_EQ(rows_of(*d1_, "c").at(0).at(1), value{std::int64_t{1}});
  EXPECT_GE(route().metrics().secondary_failures.load(), 1u) << "the first copy did time out";
}

}  // namespace
}  // namespace tandem::testing
