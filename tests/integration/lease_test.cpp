// The D1 replication lease against the real local D1: in this process (two leases on one
// database, an outage in front of one of them), and with real `tandem serve` processes (a second
// dual instance refused, d1-only instances sharing D1, a killed owner's lease taken by its
// restart, a stopped owner whose lease expires and is taken over by its successor, which it then
// finds and stops replicating, a deploy that waits for the old one).
// Leases are short (a few seconds); every wait is for a condition, with a bound.
#include <gtest/gtest.h>

#include <signal.h>

#include <fstream>
#include <thread>

#include <boost/json/serialize.hpp>

#include "proxy/d1_lease.hpp"
#include "tests/support/d1_support.hpp"
#include "tests/support/eventually.hpp"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
using backends::clock;
using proxy::d1_lease;
using proxy::owner_identity;

std::unique_ptr<d1_lease> make_lease(const std::string& database, std::chrono::milliseconds duration, std::string endpoint = {}) {
  auto o = local_d1::instance().options(database, endpoint);
  o.max_attempts = 1;
  auto d = backends::d1_store::open(o);
  if (!d) throw std::runtime_error(d.error().message);
  proxy::d1_lease_options lo;
  lo.duration = duration;
  lo.database = "D1 database " + database;
  auto self = owner_identity::self();
  self.id += ":" + std::to_string(reinterpret_cast<std::uintptr_t>(d->get()));  // two in one process
  return std::make_unique<d1_lease>(std::move(*d), self, lo);
}

std::string id_of(const d1_lease& l) { return std::string(l.status().at("self").as_string()); }

TEST(D1Lease, OneHolderAtATimeTakenOverOnlyOnceExpired) {
  const auto database = local_d1::instance().fresh_database();
  // Long enough that a's renewals (every 500 ms) outlast a stall of the machine under a parallel
  // test run: the lease lapsing under a live holder is a different test (the outage below).
  auto a = make_lease(database, 5000ms);
  auto b = make_lease(database, 5000ms);
  ASSERT_TRUE(a->acquire(clock::now()));
  EXPECT_TRUE(a->held());
  EXPECT_EQ(a->status().at("state").as_string(), "held");

  auto refused = b->acquire(clock::now());
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("another tandem holds the replication lease"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("pid " + std::to_string(::getpid())), std::string::npos) << refused.error().message;
  EXPECT_FALSE(b->held());
  EXPECT_EQ(b->status().at("state").as_string(), "released");  // refused: it does not keep trying

  // a renews it for as long as it runs: several lease durations later, b still cannot take it.
  const std::string a_id = id_of(*a);
  // Renewed: the expiry D1 records (by its own clock, to the second; renewals are 1.7 s apart)
  // moves on. Not expiresInMs, which counts from when a renewal was sent: read just after a quick
  // renewal, it is larger than it is after every slower one.
  for (int i = 0; i < 3; ++i) {
    const std::string before(a->status().at("expiresAt").as_string());
    ASSERT_TRUE(eventually("lease a renewed (D1's expiry moved on from " + before + ")",
                           [&] { return std::string(a->status().at("expiresAt").as_string()) > before; }));
  }
  EXPECT_FALSE(b->acquire(clock::now()));

  // a dies without releasing (its destructor, like kill -9, leaves the row): b waits for the
  // expiry, then takes it, and says from whom.
  a.reset();
  bool told = false;
  ASSERT_TRUE(b->acquire(clock::now() + 60s, [&](const owner_identity& holder, std::chrono::milliseconds) {
    told = true;
    EXPECT_EQ(holder.id, a_id);
  }));
  EXPECT_TRUE(told);
  EXPECT_TRUE(b->held());
  EXPECT_EQ(b->status().at("tookOverFrom").at("id").as_string(), a_id);
  b->release();
  EXPECT_FALSE(b->held());
}

TEST(D1Lease, ReleasedAtACleanStopAndTakenAtOnce) {
  const auto database = local_d1::instance().fresh_database();
  auto a = make_lease(database, 30000ms);
  auto b = make_lease(database, 30000ms);
  ASSERT_TRUE(a->acquire(clock::now()));
  a->release();
  ASSERT_TRUE(b->acquire(clock::now()));  // no wait: the row is gone
  EXPECT_TRUE(b->status().at("tookOverFrom").is_null());
  b->release();
}

TEST(D1Lease, FenceFailsABatchUnlessItsHolderStillHoldsIt) {
  const auto database = local_d1::instance().fresh_database();
  auto a = make_lease(database, 30000ms);
  auto b = make_lease(database, 30000ms);
  ASSERT_TRUE(a->acquire(clock::now()));
  EXPECT_FALSE(a->fence("sqlite"));  // the SQLite file has its own lock
  auto d = backends::d1_store::open(local_d1::instance().options(database));
  ASSERT_TRUE(d);
  backends::exec_options o;
  o.internal = true;
  protocol::statement write{"CREATE TABLE IF NOT EXISTS fenced(x)", {}};
  auto as_a = proxy::run_batch(**d, {write, *a->fence("d1")}, o);
  EXPECT_TRUE(as_a) << as_a.error().message;
  auto as_b = proxy::run_batch(**d, {{"INSERT INTO fenced VALUES (1)", {}}, *b->fence("d1")}, o);
  ASSERT_FALSE(as_b);
  EXPECT_NE(as_b.error().message.find(proxy::k_permit_fence_failed), std::string::npos) << as_b.error().message;
  EXPECT_TRUE(rows_of(**d, "fenced").empty());  // the batch failed whole
  a->release();
}

TEST(D1Lease, AnOutageLongerThanTheLeaseDoesNotLoseItUnlessAnotherTakesIt) {
  const auto database = local_d1::instance().fresh_database();
  slow_http_proxy slow(local_d1::instance().url());
  auto a = make_lease(database, 3000ms, slow.url());
  ASSERT_TRUE(a->acquire(clock::now()));

  // D1 out of a's reach for longer than the lease: a stops
  // counting itself the holder, and holds replication back, but keeps trying.
  slow.set_unreachable(true);
  ASSERT_TRUE(eventually("lease a reporting an error while D1 is out of reach", [&] { return !a->status().at("lastError").as_string().empty(); }));
  ASSERT_TRUE(eventually("lease a no longer counting itself the holder", [&] { return !a->held(); }));
  EXPECT_NE(a->hold_back().find("not"), std::string::npos) << a->hold_back();
  // Nobody took it meanwhile: once D1 answers again, a renews its own lease, not a loss.
  slow.set_unreachable(false);
  ASSERT_TRUE(eventually("lease a holding again once D1 answers", [&] { return a->held(); }));
  EXPECT_EQ(a->status().at("losses").as_int64(), 0);

  // Again, but this time another instance takes it after it expired: a lost it, replication
  // stays stopped here, and the status names the new holder.
  slow.set_unreachable(true);
  ASSERT_TRUE(eventually("lease a no longer counting itself the holder", [&] { return !a->held(); }));
  auto b = make_lease(database, 3000ms);
  ASSERT_TRUE(b->acquire(clock::now() + 60s));
  ASSERT_TRUE(b->held());
  slow.set_unreachable(false);
  ASSERT_TRUE(eventually("lease a seeing it \"held elsewhere\"", [&] { return a->status().at("state").as_string() == "held elsewhere"; }))
      << json::serialize(a->status());
  EXPECT_EQ(a->status().at("losses").as_int64(), 1);
  EXPECT_EQ(a->status().at("holder").at("id").as_string(), id_of(*b));
  EXPECT_FALSE(a->held());
  EXPECT_TRUE(b->held());
  b->release();
  a->release();
}

// ---- real processes -----------------------------------------------------------------------------

class LeaseProcesses : public ::testing::Test {
 protected:
  struct instance {
    std::string config, socket;
    std::uint16_t port = 0;
  };
  // A config for `mode` on SQLite file `db` and this test's D1 database, with a short lease.
  instance config(const std::string& name, const std::string& mode, const std::string& db) {
    instance i;
    i.config = dir_.file(name + ".json");
    i.socket = dir_.file(name + ".sock");
    i.port = free_port();
    std::ofstream f(i.config);
    f << "{\"mode\": \"" << mode << "\", \"listen\": {\"port\": " << i.port << "}, \"admin\": {\"port\": 0},"
      << "\"control\": {\"socket\": \"" << i.socket << "\", \"state_file\": \"" << dir_.file(name + ".state.json") << "\"},"
      << "\"sqlite\": {\"path\": \"" << dir_.file(db) << "\"},"
      << "\"d1\": {" << local_d1::instance().config_members(database_, "TANDEM_LEASE_D1_TOKEN") << ", \"max_attempts\": 2,"
      << " \"backoff_base_ms\": 20, \"backoff_max_ms\": 100, \"request_timeout_ms\": 5000},"
      << "\"dual\": {\"retry_min_ms\": 20, \"retry_max_ms\": 200}, \"ownership\": {\"lease_ms\": " << lease_ms_ << "}}";
    return i;
  }
  void SetUp() override { ::setenv("TANDEM_LEASE_D1_TOKEN", k_d1_token, 1); }
  std::string serve_and_exit(const instance& i) {
    auto r = run_shell(std::string(TANDEM_BINARY) + " serve --config " + i.config + " --wait-for-owner 0 2>&1");
    EXPECT_EQ(r.status, 3) << r.output;
    return r.output;
  }
  static std::unique_ptr<protocol::client> connect(const instance& i) {
    protocol::client_options co;
    co.port = i.port;
    co.timeout = 20s;
    auto c = protocol::client::connect(co);
    EXPECT_TRUE(c);
    return c ? std::move(*c) : nullptr;
  }
  json::object lease_of(const instance& i) {
    auto s = control_ask(i.socket, "status");
    return s.contains("lease") ? s.at("lease").as_object() : json::object{};
  }
  bool d1_has(const std::string& table, std::size_t rows) {
    auto d = backends::d1_store::open(local_d1::instance().options(database_));
    backends::exec_options o;
    o.internal = true;
    auto r = proxy::run_batch(**d, {{"SELECT count(*) FROM " + table, {}}}, o);
    return r && std::get<std::int64_t>(r->at(0).rows.at(0).at(0)) == static_cast<std::int64_t>(rows);
  }

  temp_dir dir_;
  std::string database_ = local_d1::instance().fresh_database();
  int lease_ms_ = 2000;
};

TEST_F(LeaseProcesses, ASecondDualInstanceIsRefusedAndD1OnlyInstancesShareD1) {
  lease_ms_ = 30000;
  auto a = config("a", "dual-sqlite", "a.db");
  proxy_process first(TANDEM_BINARY, a.config);
  first.start();
  ASSERT_TRUE(first.started());
  // The listen address is written into the lease once known, right after listening.
  const std::string listen = "127.0.0.1:" + std::to_string(a.port);
  EXPECT_TRUE(eventually("the lease naming the listen address " + listen, [&] { return lease_of(a).at("holder").at("listen").as_string() == listen; }))
      << json::serialize(lease_of(a));
  auto st = lease_of(a);
  EXPECT_EQ(st.at("state").as_string(), "held") << json::serialize(st);
  EXPECT_EQ(st.at("holder").at("pid").as_int64(), first.pid());

  // Another SQLite file, the same D1 database: it would replicate a second journal into it.
  auto out = serve_and_exit(config("b", "dual-d1", "b.db"));
  EXPECT_NE(out.find("another tandem holds the replication lease"), std::string::npos) << out;
  EXPECT_NE(out.find("pid " + std::to_string(first.pid())), std::string::npos) << out;
  EXPECT_NE(out.find("listening on 127.0.0.1:" + std::to_string(a.port)), std::string::npos) << out;

  // An instance that could start replicating at runtime is refused then, not at start.
  auto c = config("c", "sqlite-only", "c.db");
  proxy_process third(TANDEM_BINARY, c.config);
  third.start();
  ASSERT_TRUE(third.started());
  auto refused = control_ask(c.socket, "mode dual-sqlite");
  EXPECT_FALSE(refused.at("ok").as_bool());
  EXPECT_NE(refused.at("error").as_string().find("pid " + std::to_string(first.pid())), json::string::npos) << json::serialize(refused);
  EXPECT_EQ(control_ask(c.socket, "status").at("state").at("mode").as_string(), "sqlite-only");

  // d1-only instances behind a load balancer: no lease, both serve.
  auto d = config("d", "d1-only", "unused.db");
  auto e = config("e", "d1-only", "unused.db");
  proxy_process fourth(TANDEM_BINARY, d.config), fifth(TANDEM_BINARY, e.config);
  fourth.start();
  fifth.start();
  ASSERT_TRUE(fourth.started());
  ASSERT_TRUE(fifth.started());
  EXPECT_TRUE(connect(d)->query("SELECT 1"));
  EXPECT_TRUE(connect(e)->query("SELECT 1"));
  fourth.stop();
  fifth.stop();
  third.stop();

  // A clean stop releases it: the refused configuration starts now.
  first.stop();
  proxy_process second(TANDEM_BINARY, config("b2", "dual-sqlite", "b.db").config, {"--wait-for-owner", "0"});
  second.start();
  EXPECT_TRUE(second.started());
  second.stop();
}

TEST_F(LeaseProcesses, AKilledOwnersRestartTakesItsLeaseWithoutWaitingForTheExpiry) {
  lease_ms_ = 600000;  // ten minutes: the restart must not wait for it
  auto a = config("a", "dual-sqlite", "app.db");
  proxy_process old_one(TANDEM_BINARY, a.config);
  old_one.start();
  ASSERT_TRUE(old_one.started());
  const auto old_pid = old_one.pid();
  ASSERT_TRUE(connect(a)->query("CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)"));
  ASSERT_TRUE(eventually("table t replicated to D1", [&] { return d1_has("t", 0); }));
  old_one.kill9();  // the file lock goes with it; the lease stays in D1

  // The same config again, on the same host: the holder's pid is gone, so it takes over at once.
  const std::string log = dir_.file("new.log");
  proxy_process new_one(TANDEM_BINARY, a.config, {"--wait-for-owner", "0"});
  new_one.set_stderr(log);
  new_one.start();
  ASSERT_TRUE(new_one.started()) << read_file(log);
  EXPECT_NE(read_file(log).find("that process is gone from this host"), std::string::npos) << read_file(log);
  auto st = lease_of(a);
  EXPECT_EQ(st.at("state").as_string(), "held") << json::serialize(st);
  EXPECT_EQ(st.at("tookOverFrom").at("pid").as_int64(), old_pid) << json::serialize(st);
  ASSERT_TRUE(connect(a)->query("INSERT INTO t(x) VALUES ('after')"));
  EXPECT_TRUE(eventually("the new owner replicating the row written after the takeover", [&] { return d1_has("t", 1); }));
  new_one.stop();
}

TEST_F(LeaseProcesses, AStoppedOwnerLosesTheLeaseToItsSuccessorAndStopsReplicating) {
  auto a = config("a", "dual-sqlite", "a.db");
  proxy_process paused(TANDEM_BINARY, a.config);
  paused.start();
  ASSERT_TRUE(paused.started());
  ASSERT_TRUE(connect(a)->query("CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)"));
  ASSERT_TRUE(eventually("table t replicated to D1", [&] { return d1_has("t", 0); }));

  // A long pause (SIGSTOP): its file lock stays, so the successor runs on another host's file.
  paused.signal(SIGSTOP);
  auto b = config("b", "dual-sqlite", "b.db");
  proxy_process successor(TANDEM_BINARY, b.config, {"--wait-for-owner", "120"});
  successor.start();
  ASSERT_TRUE(successor.started());
  EXPECT_EQ(lease_of(b).at("state").as_string(), "held");

  // Back from the pause: it finds the lease taken and stops replicating.
  paused.signal(SIGCONT);
  ASSERT_TRUE(eventually("the paused owner seeing its lease \"held elsewhere\"", [&] { return lease_of(a).at("state").as_string() == "held elsewhere"; }))
      << json::serialize(lease_of(a));
  // The successor took the lease before it listened; its record gets its address at its next
  // renewal (a third of the lease later), and the paused one reads it at its next attempt.
  const std::string successor_listen = "127.0.0.1:" + std::to_string(b.port);
  EXPECT_TRUE(eventually("the paused owner naming its successor with the address it listens on",
                         [&] { return lease_of(a).at("holder").at("listen").as_string() == successor_listen; }))
      << json::serialize(lease_of(a));
  auto st = lease_of(a);
  EXPECT_EQ(st.at("losses").as_int64(), 1);
  auto status = control_ask(a.socket, "status");
  EXPECT_EQ(status.at("metrics").at("replicationLeaseHeld").as_int64(), 0);
  EXPECT_EQ(status.at("metrics").at("replicationLeaseLosses").to_number<std::int64_t>(), 1);
  ASSERT_TRUE(connect(a)->query("INSERT INTO t(x) VALUES ('not replicated')"));
  ASSERT_TRUE(eventually("replication's last error naming the lease", [&] {
    return control_ask(a.socket, "status").at("replication").at("lastError").as_string().find("lease") != json::string::npos;
  }));
  EXPECT_TRUE(d1_has("t", 0));
  paused.stop();
  successor.stop();
}

TEST_F(LeaseProcesses, ADeployWaitsForTheOldInstanceThenTakesTheReleasedLease) {
  lease_ms_ = 30000;  // a clean stop releases it: nothing waits for an expiry
  auto a = config("a", "dual-sqlite", "app.db");
  proxy_process old_one(TANDEM_BINARY, a.config);
  old_one.start();
  ASSERT_TRUE(old_one.started());

  const std::string log = dir_.file("new.log");
  proxy_process new_one(TANDEM_BINARY, a.config, {"--wait-for-owner", "120"});
  new_one.set_stderr(log);
  std::thread starting([&] { new_one.start(); });
  EXPECT_TRUE(eventually("the new instance saying it is \"waiting up to\"", [&] { return read_file(log).find("waiting up to") != std::string::npos; }))
      << read_file(log);
  old_one.stop();
  starting.join();
  ASSERT_TRUE(new_one.started()) << read_file(log);
  auto st = lease_of(a);
  EXPECT_EQ(st.at("state").as_string(), "held") << json::serialize(st);
  EXPECT_EQ(st.at("holder").at("pid").as_int64(), new_one.pid());
  EXPECT_TRUE(st.at("tookOverFrom").is_null()) << json::serialize(st);
  new_one.stop();
}

}  // namespace
}  // namespace tandem::testing
