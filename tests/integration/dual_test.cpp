// Dual writes against real parts: a SQLite file and the real local D1, through a real server.
// Every test ends by comparing the two stores table by table, row by row.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "backends/journal.hpp"
#include "proxy/router.hpp"
#include "tests/support/d1_support.hpp"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
using protocol::errc;
using protocol::value;

class Dual : public ::testing::Test {
 protected:
  // Starts tandem in `m` over a fresh SQLite file and a fresh local D1 database.
  void start(proxy::mode m, proxy::router_options ro = {}) {
    ro.initial = m;
    auto made = make_dual_router(dir_, ro, database_);
    database_ = made.database;
    sqlite_ = made.sqlite;
    d1_ = made.d1;
    srv_ = std::make_unique<test_server>(test_server::default_options(), std::move(made.route));
  }
  proxy::router& route() { return srv_->router(); }

  std::unique_ptr<protocol::client> client(const std::string& routing_key = {}) {
    auto o = srv_->client_options();
    o.routing_key = routing_key;
    auto c = protocol::client::connect(o);
    EXPECT_TRUE(c);
    return c ? std::move(*c) : nullptr;
  }

  static protocol::query_result ok(protocol::client& c, const std::string& sql, std::vector<value> params = {}) {
    protocol::params p;
    p.positional = std::move(params);
    auto r = c.query(sql, p);
    EXPECT_TRUE(r) << sql << ": " << (r ? "" : r.error().message);
    return r ? *r : protocol::query_result{};
  }

  void caught_up() {
    auto rep = route().replication();
    ASSERT_TRUE(rep);
    ASSERT_TRUE(rep->wait_caught_up(backends::clock::now() + 120s)) << rep->last_error();
  }

  temp_dir dir_;
  std::string database_;
  backends::sqlite_store* sqlite_ = nullptr;
  backends::d1_store* d1_ = nullptr;
  std::unique_ptr<test_server> srv_;
};

TEST_F(Dual, WritesReachD1InOrderAndTheStoresAreEqual) {
  start(proxy::mode::dual_sqlite);
  auto c = client();
  ok(*c, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, price REAL, data BLOB)");
  for (int i = 0; i < 50; ++i) {
    ok(*c, "INSERT INTO items(name, qty, price, data) VALUES (?, ?, ?, ?)",
       {value{"item " + std::to_string(i) + " ✓"}, value{std::int64_t{i} * 1000000007LL * 1000000}, value{i / 3.0},
        value{protocol::blob{std::string("\x00\xff", 2) + std::to_string(i)}}});
  }
  ok(*c, "UPDATE items SET qty = qty + 1 WHERE id % 3 = 0");
  ok(*c, "DELETE FROM items WHERE id % 7 = 0");
  ok(*c, "ALTER TABLE items ADD COLUMN note TEXT");
  auto b = c->batch({{"UPDATE items SET note = 'batched' WHERE id < 10", {}}, {"INSERT INTO items(id, name) VALUES (1000, NULL)", {}}});
  ASSERT_TRUE(b) << b.error().message;
  // A failing write leaves no journal entry and changes nothing anywhere.
  auto dup = c->query("INSERT INTO items(id) VALUES (1000)");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, errc::constraint);
  caught_up();
  expect_equal_stores(*sqlite_, *d1_);
  const auto m = route().metrics().snapshot();
  EXPECT_EQ(m.at("totalWrites").as_uint64(), 55u);  // 1 + 50 + 1 + 1 + 1 + 1 batch
  EXPECT_EQ(m.at("successfulDualWrites").as_uint64(), 55u);
  EXPECT_EQ(m.at("verificationFailures").as_uint64(), 0u);
}

TEST_F(Dual, NondeterministicWritesAreReplicatedExactly) {
  start(proxy::mode::dual_sqlite);
  auto c = client();
  ok(*c, "CREATE TABLE ev(id INTEGER PRIMARY KEY AUTOINCREMENT, r INTEGER, b BLOB, at TEXT, "
         "created TEXT DEFAULT CURRENT_TIMESTAMP, u TEXT DEFAULT (lower(hex(randomblob(16)))))");
  for (int i = 0; i < 10; ++i) {
    ok(*c, "INSERT INTO ev(r, b, at) VALUES (random(), randomblob(8), strftime('%Y-%m-%d %H:%M:%f', 'now'))");
    ok(*c, "INSERT INTO ev(r) VALUES (?)", {value{std::int64_t{i}}});  // only the DEFAULTs vary
  }
  ok(*c, "UPDATE ev SET r = abs(random()) % 1000 WHERE id % 2 = 0");
  ok(*c, "DELETE FROM ev WHERE id = (SELECT max(id) FROM ev)");
  ok(*c, "INSERT INTO ev(r) VALUES (changes())");
  caught_up();
  expect_equal_stores(*sqlite_, *d1_);
  // AUTOINCREMENT's counter moved the same way on both.
  backends::exec_options o;
  o.internal = true;
  for (backends::store* s : {static_cast<backends::store*>(sqlite_), static_cast<backends::store*>(d1_)}) {
    auto r = proxy::run_batch(*s, {{"INSERT INTO ev(r) VALUES (0) RETURNING id", {}}}, o);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->at(0).rows[0][0], value{std::int64_t{22}}) << s->name();
  }
}

TEST_F(Dual, TriggersAndTablesWithoutKeysReplicateExactly) {
  start(proxy::mode::dual_sqlite);
  auto c = client();
  ok(*c, "CREATE TABLE k(id INTEGER PRIMARY KEY, v)");
  ok(*c, "CREATE TABLE log(v, at)");
  ok(*c, "CREATE TABLE nokey(v)");
  ok(*c, "CREATE TRIGGER k_log AFTER INSERT ON k BEGIN INSERT INTO log VALUES (new.v, random()); END");
  ok(*c, "INSERT INTO k(v) VALUES (random())");   // row images; the trigger does not fire twice on D1
  ok(*c, "INSERT INTO k(v) VALUES (1)");          // the trigger's random(): row images too
  ok(*c, "INSERT INTO nokey VALUES (random())");  // no declared key: addressed by rowid
  ok(*c, "UPDATE nokey SET v = randomblob(4)");
  caught_up();
  expect_equal_stores(*sqlite_, *d1_);
  EXPECT_EQ(rows_of(*sqlite_, "log").size(), 2u);
  EXPECT_EQ(rows_of(*d1_, "log").size(), 2u);
}

TEST_F(Dual, WritesThatCannotBeMadeExactAreRefusedAndChangeNothing) {
  start(proxy::mode::dual_sqlite);
  auto c = client();
  ok(*c, "CREATE TABLE k(id INTEGER PRIMARY KEY, v)");
  struct bad {
    std::string sql;
    std::string why;
  };
  for (const auto& [sql, why] : std::vector<bad>{{"CREATE TABLE r AS SELECT random() AS x", "schema change"},
                                                  {"INSERT INTO _tandem_journal(kind, body, changes, created_ms) VALUES (0, '', '', 0)", "belongs to tandem"}}) {
    auto r = c->query(sql);
    ASSERT_FALSE(r) << sql;
    EXPECT_EQ(r.error().code, errc::unsupported) << sql;
    EXPECT_NE(r.error().message.find(why), std::string::npos) << r.error().message;
  }
  ok(*c, "INSERT INTO k(v) VALUES (1)");
  caught_up();
  expect_equal_stores(*sqlite_, *d1_);
}

TEST_F(Dual, AFollowerOutageLosesNothingAndReplaysExactlyOnce) {
  start(proxy::mode::dual_sqlite);
  auto c = client();
  ok(*c, "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)");
  ok(*c, "INSERT INTO counter VALUES (1, 0)");
  caught_up();
  local_d1::instance().stop();
  // The leader keeps taking writes; the journal grows. Increments are not idempotent: applying
  // one twice or losing one shows in n.
  for (int i = 0; i < 40; ++i) ok(*c, "UPDATE counter SET n = n + 1 WHERE id = 1");
  EXPECT_GE(route().metrics().snapshot().at("leaderSeq").as_int64(), 42);
  local_d1::instance().start();
  caught_up();
  expect_equal_stores(*sqlite_, *d1_);
  EXPECT_EQ(rows_of(*d1_, "counter").at(0).at(1), value{std::int64_t{40}});
  EXPECT_GT(route().metrics().snapshot().at("secondaryFailures").as_uint64(), 0u);
}

TEST_F(Dual, ARestartedProxyReplaysFromWhereTheFollowerStands) {
  start(proxy::mode::dual_sqlite);
  {
    auto c = client();
    ok(*c, "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)");
    ok(*c, "INSERT INTO counter VALUES (1, 0)");
    caught_up();
    route().pause_replication();
    for (int i = 0; i < 25; ++i) ok(*c, "UPDATE counter SET n = n + 1");
  }
  srv_->stop();
  srv_.reset();
  start(proxy::mode::dual_sqlite);  // same file, same D1 database
  caught_up();
  expect_equal_stores(*sqlite_, *d1_);
  EXPECT_EQ(rows_of(*d1_, "counter").at(0).at(1), value{std::int64_t{25}});
}

TEST_F(Dual, ReadsSplitByRoutingKeyAndNeverReadOlderThanOwnWrites) {
  proxy::router_options ro;
  ro.read_percent = 50;
  ro.read_your_writes_wait = 50ms;
  start(proxy::mode::dual_sqlite, ro);
  std::string on_d1, on_sqlite;
  for (int i = 0; on_d1.empty() || on_sqlite.empty(); ++i) {
    const std::string key = "user-" + std::to_string(i);
    (proxy::router::bucket_of(key) < 50 ? on_d1 : on_sqlite) = key;
  }
  auto a = client(on_d1);
  auto b = client(on_sqlite);
  ok(*a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  caught_up();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(ok(*a, "SELECT count(*) FROM t").meta.served_by, "d1");
    EXPECT_EQ(ok(*b, "SELECT count(*) FROM t").meta.served_by, "sqlite");
  }
  // A per-request routing key routes that request alone.
  protocol::request req;
  req.kind = protocol::op::query;
  req.statements.push_back({"SELECT count(*) FROM t", {}});
  req.routing_key = on_d1;
  ASSERT_TRUE(b->send(req));
  auto resp = b->receive();
  ASSERT_TRUE(resp && resp->ok());
  EXPECT_EQ(std::get<protocol::query_result>(std::get<protocol::success>(resp->body)).meta.served_by, "d1");
  EXPECT_EQ(ok(*b, "SELECT count(*) FROM t").meta.served_by, "sqlite");
  // With the follower held back, a D1-routed session still reads its own write: from the leader.
  route().pause_replication();
  ok(*a, "INSERT INTO t VALUES (1, 'mine')");
  auto r = ok(*a, "SELECT v FROM t WHERE id = 1");
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.meta.served_by, "sqlite");
  EXPECT_EQ(route().metrics().snapshot().at("readYourWritesFallbacks").as_uint64(), 1u);
  route().resume_replication();
  caught_up();
  r = ok(*a, "SELECT v FROM t WHERE id = 1");
  EXPECT_EQ(r.meta.served_by, "d1");
  ASSERT_EQ(r.rows.size(), 1u);
  // Raising the percent only adds keys: 50% keys stay on D1 at 100%.
  route().set_read_percent(100);
  EXPECT_EQ(ok(*a, "SELECT 1 FROM t").meta.served_by, "d1");
  EXPECT_EQ(ok(*b, "SELECT 1 FROM t").meta.served_by, "d1");
  EXPECT_EQ(proxy::router::bucket_of("user-42"), proxy::router::bucket_of("user-42"));
}

TEST_F(Dual, AckBothWaitsForTheFollowerOrSaysExactlyWhatHappened) {
  proxy::router_options ro;
  ro.ack_both = true;
  ro.ack_timeout = 2s;
  ro.continue_on_follower_failure = false;
  start(proxy::mode::dual_sqlite, ro);
  auto c = client();
  ok(*c, "CREATE TABLE t(id INTEGER PRIMARY KEY)");
  // Acknowledged only once D1 has it: D1 shows it at once.
  ok(*c, "INSERT INTO t VALUES (1)");
  EXPECT_EQ(rows_of(*d1_, "t").size(), 1u);
  route().pause_replication();
  auto r = c->query("INSERT INTO t VALUES (2)");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_NE(r.error().message.find("journaled"), std::string::npos) << r.error().message;
  EXPECT_EQ(rows_of(*sqlite_, "t").size(), 2u);  // committed on the leader, as the error says
  route().resume_replication();
  caught_up();
  expect_equal_stores(*sqlite_, *d1_);
}

TEST_F(Dual, SwitchPrimaryToD1AndBackLosesAndReordersNothing) {
  start(proxy::mode::dual_sqlite);
  auto c = client();
  ok(*c, "CREATE TABLE seqs(id INTEGER PRIMARY KEY, leader TEXT)");
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  // A writer keeps going through both switches.
  std::thread writer([&] {
    auto w = client();
    while (!stop) {
      auto r = w->query("INSERT INTO seqs(leader) VALUES (?)", {{value{std::string("x")}}, {}, false});
      if (r) ++written;
      else ADD_FAILURE() << r.error().message;
    }
  });
  while (written < 20) std::this_thread::sleep_for(1ms);
  auto to_d1 = route().switch_primary(60s);
  ASSERT_TRUE(to_d1) << to_d1.error().message;
  EXPECT_EQ(route().current_mode(), proxy::mode::dual_d1);
  const int at_switch = written;
  while (written < at_switch + 20) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(ok(*c, "INSERT INTO seqs(leader) VALUES ('d1')").meta.served_by, "d1");
  // D1 leads: what SQLite alone could not reproduce is refused.
  auto r = c->query("INSERT INTO seqs(leader) VALUES (random())");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsupported);
  auto back = route().switch_primary(60s);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(route().current_mode(), proxy::mode::dual_sqlite);
  const int at_back = written;
  while (written < at_back + 20) std::this_thread::sleep_for(1ms);
  stop = true;
  writer.join();
  caught_up();
  expect_equal_stores(*sqlite_, *d1_);
  EXPECT_EQ(rows_of(*sqlite_, "seqs").size(), static_cast<std::size_t>(written + 1));
}

TEST_F(Dual, DivergenceIsCaughtByVerificationAndShadowReads) {
  proxy::router_options ro;
  ro.shadow_read_percent = 100;
  start(proxy::mode::dual_sqlite, ro);
  auto c = client();
  ok(*c, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)");
  ok(*c, "INSERT INTO t VALUES (1, 0)");
  caught_up();
  EXPECT_EQ(ok(*c, "SELECT count(*) FROM t").rows.at(0).at(0), value{std::int64_t{1}});
  // Someone writes to D1 behind tandem's back: D1 now has a row SQLite does not.
  backends::exec_options o;
  ASSERT_TRUE(proxy::run_batch(*d1_, {{"INSERT INTO t VALUES (2, 0)", {}}}, o));
  ok(*c, "UPDATE t SET v = v + 1");  // 1 row on SQLite, 2 on D1
  caught_up();
  ok(*c, "SELECT count(*) FROM t");  // answered by SQLite, shadowed on D1
  auto shadowed = [&] { return route().metrics().snapshot().at("shadowMismatches").as_uint64() > 0; };
  for (int i = 0; i < 2000 && !shadowed(); ++i) std::this_thread::sleep_for(5ms);  // the shadow runs after the answer
  const auto m = route().metrics().snapshot();
  EXPECT_EQ(m.at("verificationFailures").as_uint64(), 1u);
  EXPECT_GE(m.at("shadowMismatches").as_uint64(), 1u);
  EXPECT_GE(m.at("shadowReads").as_uint64(), 2u);
}

TEST_F(Dual, AppliedEntriesArePrunedAfterTheRetention) {
  proxy::router_options ro;
  ro.replication.journal_retention = 0ms;
  start(proxy::mode::dual_sqlite, ro);
  auto c = client();
  ok(*c, "CREATE TABLE t(id INTEGER PRIMARY KEY)");
  for (int i = 0; i < 20; ++i) ok(*c, "INSERT INTO t VALUES (?)", {value{std::int64_t{i}}});
  caught_up();
  auto journal_rows = [&] { return rows_of(*sqlite_, "_tandem_journal").size(); };
  for (int i = 0; i < 2000 && journal_rows() > 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(journal_rows(), 0u);
  EXPECT_EQ(route().metrics().snapshot().at("journalPruned").as_uint64(), 21u);
  // Sequence numbers go on after pruning; nothing is replayed twice.
  ok(*c, "INSERT INTO t VALUES (100)");
  caught_up();
  expect_equal_stores(*sqlite_, *d1_);
}

}  // namespace
}  // namespace tandem::testing
