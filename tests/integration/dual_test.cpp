// Dual writes against real parts: a SQLite file and the real local D1, through a real server.
// Every test ends by comparing the two stores table by table, row by row.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "backends/journal.hpp"
#include "proxy/router.hpp"
#include "tests/support/d1_support.hpp"
#include "tests/support/eventually.hpp"

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

  // A client whose hello carries `at` (a position from an earlier connection).
  std::unique_ptr<protocol::client> client_at(const protocol::position& at, const std::string& routing_key = {}) {
    auto o = srv_->client_options();
    o.routing_key = routing_key;
    o.min_seq = at;
    auto c = protocol::client::connect(o);
    EXPECT_TRUE(c);
    return c ? std::move(*c) : nullptr;
  }

  // Sends `sql` as a query with this min_seq ("leader", a token, or any text as it is).
  static protocol::response query_with(protocol::client& c, const std::string& sql, const std::string& min_seq) {
    protocol::request req;
    req.kind = protocol::op::query;
    req.statements.push_back({sql, {}});
    if (min_seq == "leader") req.min_seq_leader = true;
    else if (auto p = protocol::parse_position(min_seq)) req.min_seq = *p;
    EXPECT_TRUE(c.send(req));
    auto r = c.receive();
    EXPECT_TRUE(r);
    return r ? *r : protocol::response{};
  }
  static const protocol::query_result& result_of(const protocol::response& r) {
    static const protocol::query_result none;
    const auto* s = std::get_if<protocol::success>(&r.body);
    const auto* q = s ? std::get_if<protocol::query_result>(s) : nullptr;
    EXPECT_TRUE(q) << (r.ok() ? "not a query result" : std::get<protocol::error>(r.body).message);
    return q ? *q : none;
  }
  std::uint64_t counter(const char* name) { return route().metrics().snapshot().at(name).as_uint64(); }

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
  // A key's bucket is fixed (a hash of the key, the same in every build and after a restart), so
  // a user stays on the store the split gave it.
  EXPECT_EQ(proxy::router::bucket_of("user-42"), 49);
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
  std::atomic<int> written{0};
  // A writer keeps going through both switches (and is stopped and joined on any early return).
  std::jthread writer([&](std::stop_token stop) {
    auto w = client();
    while (w && !stop.stop_requested()) {
      auto r = w->query("INSERT INTO seqs(leader) VALUES (?)", {{value{std::string("x")}}, {}, false});
      if (r) ++written;
      else ADD_FAILURE() << r.error().message;
    }
  });
  ASSERT_TRUE(eventually("20 writes acknowledged before the switch", [&] { return written >= 20; }, k_eventually_bound, 1ms));
  auto to_d1 = route().switch_primary(60s);
  ASSERT_TRUE(to_d1) << to_d1.error().message;
  EXPECT_EQ(route().current_mode(), proxy::mode::dual_d1);
  const int at_switch = written;
  ASSERT_TRUE(eventually("20 writes acknowledged with D1 leading", [&] { return written >= at_switch + 20; }, k_eventually_bound, 1ms));
  EXPECT_EQ(ok(*c, "INSERT INTO seqs(leader) VALUES ('d1')").meta.served_by, "d1");
  // D1 leads: what SQLite alone could not reproduce is refused.
  auto r = c->query("INSERT INTO seqs(leader) VALUES (random())");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsupported);
  auto back = route().switch_primary(60s);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(route().current_mode(), proxy::mode::dual_sqlite);
  const int at_back = written;
  ASSERT_TRUE(eventually("20 writes acknowledged with SQLite leading again", [&] { return written >= at_back + 20; },
                         k_eventually_bound, 1ms));
  writer.request_stop();
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
  EXPECT_TRUE(eventually("a shadow mismatch counted (the shadow read runs after the answer)", shadowed));
  const auto m = route().metrics().snapshot();
  EXPECT_EQ(m.at("verificationFailures").as_uint64(), 1u);
  EXPECT_GE(m.at("shadowMismatches").as_uint64(), 1u);
  EXPECT_GE(m.at("shadowReads").as_uint64(), 2u);
}

TEST_F(Dual, ShadowReadsDoNotCountALaggingFollowerAsAMismatch) {
  proxy::router_options ro;
  ro.shadow_read_percent = 100;
  ro.read_your_writes_wait = 200ms;
  start(proxy::mode::dual_sqlite, ro);
  auto c = client();
  ok(*c, "CREATE TABLE t(id INTEGER PRIMARY KEY)");
  caught_up();
  route().pause_replication();
  ok(*c, "INSERT INTO t VALUES (1)");
  ok(*c, "SELECT count(*) FROM t");  // SQLite has 1 row, D1 none yet: not comparable
  ASSERT_TRUE(eventually("the shadow read skipped as not comparable", [&] { return route().metrics().shadow_skipped.load() > 0; }));
  route().resume_replication();
  caught_up();
  const auto compared = route().metrics().shadow_reads.load();
  ok(*c, "SELECT count(*) FROM t");  // both at the same position: compared, and equal
  EXPECT_EQ(route().metrics().shadow_reads.load(), compared + 1);
  EXPECT_EQ(route().metrics().shadow_mismatches.load(), 0u);
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
  EXPECT_TRUE(eventually("every applied journal entry pruned", [&] { return journal_rows() == 0; })) << journal_rows() << " left";
  EXPECT_EQ(route().metrics().snapshot().at("journalPruned").as_uint64(), 21u);
  // Sequence numbers go on after pruning; nothing is replayed twice.
  ok(*c, "INSERT INTO t VALUES (100)");
  caught_up();
  expect_equal_stores(*sqlite_, *d1_);
}

// Read-your-writes beyond one TCP connection (PROTOCOL.md §15), with the follower held back so
// that D1 visibly lacks the write: the same client after a reconnect, a position handed to a new
// connection, and a second connection of the same routing key all read it.
TEST_F(Dual, ReadYourWritesAcrossReconnectsAndConnections) {
  proxy::router_options ro;
  ro.read_percent = 100;  // every key reads from D1
  ro.read_your_writes_wait = 50ms;
  start(proxy::mode::dual_sqlite, ro);
  auto a = client();  // no routing key: the connection is the key
  ok(*a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  caught_up();
  route().pause_replication();
  const auto w = ok(*a, "INSERT INTO t VALUES (1, 'mine')");
  ASSERT_EQ(w.meta.at.journal, "sqlite");
  EXPECT_GT(w.meta.at.seq, 0);
  EXPECT_EQ(a->position(), w.meta.at);
  // What this is about: a connection that knows nothing reads D1 as it stands, without the row.
  auto stranger = client();
  auto r = ok(*stranger, "SELECT v FROM t WHERE id = 1");
  EXPECT_EQ(r.meta.served_by, "d1");
  EXPECT_TRUE(r.rows.empty());
  EXPECT_EQ(r.meta.at.journal, "sqlite");  // reads carry a position too: what they saw
  // 1. The same client after a reconnect: its hello carries its position.
  ASSERT_TRUE(a->reconnect());
  r = ok(*a, "SELECT v FROM t WHERE id = 1");
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.meta.served_by, "sqlite");
  EXPECT_GE(r.meta.at.seq, w.meta.at.seq);
  // 2. The position given to a new connection's hello, and per request on an unrelated one.
  auto b = client_at(w.meta.at);
  EXPECT_EQ(ok(*b, "SELECT v FROM t WHERE id = 1").rows.size(), 1u);
  auto resent = query_with(*stranger, "SELECT v FROM t WHERE id = 1", protocol::to_string(w.meta.at));
  EXPECT_EQ(result_of(resent).rows.size(), 1u);
  // 3. A second connection with the same routing key, without any help from the client.
  auto k1 = client("user-1");
  ok(*k1, "INSERT INTO t VALUES (2, 'by key')");
  auto k2 = client("user-1");
  ASSERT_TRUE(k2->position().empty());
  r = ok(*k2, "SELECT v FROM t WHERE id = 2");
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.meta.served_by, "sqlite");
  EXPECT_EQ(ok(*client("user-2"), "SELECT v FROM t WHERE id = 2").rows.size(), 0u) << "another key has nothing to wait for";
  EXPECT_EQ(route().metrics().snapshot().at("rememberedKeys").as_int64(), 2);  // user-1 and user-2
  // Once the follower has the writes, the same reads are served by D1 again.
  route().resume_replication();
  caught_up();
  r = ok(*a, "SELECT count(*) FROM t");
  EXPECT_EQ(r.meta.served_by, "d1");
  EXPECT_EQ(r.rows.at(0).at(0), value{std::int64_t{2}});
  EXPECT_EQ(ok(*k2, "SELECT count(*) FROM t").meta.served_by, "d1");
  expect_equal_stores(*sqlite_, *d1_);
}

// A tandem restart forgets every session and every remembered key; the client's position is
// what is left, and it is enough.
TEST_F(Dual, APositionFromBeforeARestartStillReadsItsWrite) {
  proxy::router_options ro;
  ro.read_percent = 100;
  ro.read_your_writes_wait = 50ms;
  start(proxy::mode::dual_sqlite, ro);
  protocol::position at;
  {
    auto c = client();
    ok(*c, "CREATE TABLE t(id INTEGER PRIMARY KEY)");
    caught_up();
    route().pause_replication();
    at = ok(*c, "INSERT INTO t VALUES (1)").meta.at;
  }
  srv_->stop();
  srv_.reset();
  start(proxy::mode::dual_sqlite, ro);  // same file, same D1 database; replication runs again
  auto c = client_at(at);
  // Either D1 has caught up by now, or the read goes to SQLite: never an answer without the row.
  EXPECT_EQ(ok(*c, "SELECT id FROM t").rows.size(), 1u);
  caught_up();
  expect_equal_stores(*sqlite_, *d1_);
}

// Monotonic reads: a key that read from the leader and is then moved to the follower by a
// higher split does not see older data than it already saw, on the same connection or another.
TEST_F(Dual, MonotonicReadsWhenTheSplitMovesAKeyToTheFollower) {
  proxy::router_options ro;
  ro.read_percent = 0;  // every key reads from SQLite
  ro.read_your_writes_wait = 50ms;
  start(proxy::mode::dual_sqlite, ro);
  auto w = client("writer");
  ok(*w, "CREATE TABLE t(id INTEGER PRIMARY KEY)");
  caught_up();
  route().pause_replication();
  ok(*w, "INSERT INTO t VALUES (1)");
  auto u = client("user-9");
  auto plain = client();  // no routing key
  for (auto* c : {u.get(), plain.get()}) {
    auto r = ok(*c, "SELECT count(*) FROM t");
    EXPECT_EQ(r.meta.served_by, "sqlite");
    EXPECT_EQ(r.rows.at(0).at(0), value{std::int64_t{1}});
  }
  route().set_read_percent(100);  // the keys move to D1, which lacks the row
  auto fresh = client("user-10");
  EXPECT_EQ(ok(*fresh, "SELECT count(*) FROM t").rows.at(0).at(0), value{std::int64_t{0}}) << "D1 lags: a key that saw nothing may read it";
  auto u2 = client("user-9");
  for (auto* c : {u.get(), plain.get(), u2.get()}) {
    auto r = ok(*c, "SELECT count(*) FROM t");
    EXPECT_EQ(r.rows.at(0).at(0), value{std::int64_t{1}}) << "went back in time";
    EXPECT_EQ(r.meta.served_by, "sqlite");
  }
  route().resume_replication();
  caught_up();
  EXPECT_EQ(ok(*u, "SELECT count(*) FROM t").meta.served_by, "d1");
}

// A position tandem cannot place is not waited for and not believed: the read goes to the leader
// at once. The wait bound is long here, so a read that did wait would show in the counter.
TEST_F(Dual, PositionsAheadOfTheJournalOrOfAnotherJournalNeitherHangNorAreTrusted) {
  proxy::router_options ro;
  ro.read_percent = 100;
  ro.read_your_writes_wait = 30s;
  start(proxy::mode::dual_sqlite, ro);
  auto c = client();
  ok(*c, "CREATE TABLE t(id INTEGER PRIMARY KEY)");
  caught_up();
  route().pause_replication();
  const auto end = ok(*c, "INSERT INTO t VALUES (1)").meta.at;
  auto s = client();
  const auto unknown_before = counter("readPositionsUnknown");
  for (const std::string& future : std::vector<std::string>{"sqlite:" + std::to_string(end.seq + 1000), "elsewhere:1"}) {
    const auto r = result_of(query_with(*s, "SELECT count(*) FROM t", future));
    EXPECT_EQ(r.meta.served_by, "sqlite") << future;
    EXPECT_EQ(r.rows.at(0).at(0), value{std::int64_t{1}}) << future;
    EXPECT_EQ(r.meta.at, end) << "the answer's position is the journal's, not the one given";
  }
  EXPECT_EQ(counter("readPositionsUnknown"), unknown_before + 2);
  // "leader": D1's first-primary.
  EXPECT_EQ(result_of(query_with(*s, "SELECT count(*) FROM t", "leader")).meta.served_by, "sqlite");
  // The journal of the store that does not lead: a switch-primary drained it into both stores,
  // so there is nothing to wait for, and the read goes where the split sends it. (A connection
  // of its own: `s` has read the leader's state, and its reads do not go back from there.)
  EXPECT_EQ(result_of(query_with(*client(), "SELECT count(*) FROM t", "d1:5")).meta.served_by, "d1");
  EXPECT_EQ(counter("readYourWritesWaits"), 0u);
  // (Text that is not a position at all is BAD_REQUEST: codec_test, DecodeRequest.MinSeq.)
  route().resume_replication();
  caught_up();
}

// After a switch-primary the positions of the old leader's journal are not compared with the
// new journal's numbers, and new writes carry the new journal's positions.
TEST_F(Dual, PositionsNameTheirJournalAcrossASwitchPrimary) {
  proxy::router_options ro;
  ro.read_percent = 0;  // reads go to SQLite: the leader, then the follower
  ro.read_your_writes_wait = 50ms;
  start(proxy::mode::dual_sqlite, ro);
  auto c = client();
  ok(*c, "CREATE TABLE t(id INTEGER PRIMARY KEY)");
  for (int i = 0; i < 5; ++i) ok(*c, "INSERT INTO t VALUES (?)", {value{std::int64_t{i}}});
  const auto before = c->position();
  ASSERT_EQ(before.journal, "sqlite");
  ASSERT_TRUE(route().switch_primary(60s));
  ASSERT_EQ(route().current_mode(), proxy::mode::dual_d1);
  // SQLite now follows D1; sqlite:6 is no number of D1's journal, and SQLite holds all of it.
  auto r = ok(*c, "SELECT count(*) FROM t");
  EXPECT_EQ(r.meta.served_by, "sqlite");
  EXPECT_EQ(r.rows.at(0).at(0), value{std::int64_t{5}});
  EXPECT_EQ(counter("readYourWritesWaits"), 0u);
  EXPECT_EQ(counter("readPositionsUnknown"), 0u);
  route().pause_replication();
  const auto w = ok(*c, "INSERT INTO t VALUES (100)");
  EXPECT_EQ(w.meta.served_by, "d1");
  EXPECT_EQ(w.meta.at.journal, "d1");
  EXPECT_EQ(c->position(), w.meta.at);
  // SQLite, the follower now, lacks it: the read waits, then D1 answers.
  r = ok(*c, "SELECT count(*) FROM t");
  EXPECT_EQ(r.rows.at(0).at(0), value{std::int64_t{6}});
  EXPECT_EQ(r.meta.served_by, "d1");
  EXPECT_EQ(counter("readYourWritesFallbacks"), 1u);
  route().resume_replication();
  caught_up();
  expect_equal_stores(*sqlite_, *d1_);
}

// In a single mode one store answers everything: no meta.seq, and min_seq has nothing to wait for.
TEST_F(Dual, SingleModesCarryNoPositionAndAcceptOne) {
  start(proxy::mode::sqlite_only);
  auto c = client();
  ok(*c, "CREATE TABLE t(id INTEGER PRIMARY KEY)");
  EXPECT_TRUE(ok(*c, "INSERT INTO t VALUES (1)").meta.at.empty());
  const auto r = result_of(query_with(*c, "SELECT count(*) FROM t", "sqlite:123456"));
  EXPECT_TRUE(r.meta.at.empty());
  EXPECT_EQ(r.rows.at(0).at(0), value{std::int64_t{1}});
}

}  // namespace
}  // namespace tandem::testing
