// The staged rollout against a real dual-mode tandem (SQLite file + the real local D1): stages
// advance when held, and a breached guard, caused by a real fault (the local D1 stopped), moves
// reads back to the last stage that held, by itself, with an event naming the guard.
#include <gtest/gtest.h>

#include "proxy/rollout.hpp"
#include "tests/support/d1_support.hpp"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;

class Rollout : public ::testing::Test {
 protected:
  void SetUp() override { start(); }
  // D1 reached at `d1_endpoint` (the local D1's own URL when empty).
  void start(const std::string& d1_endpoint = {}) {
    proxy::router_options ro;
    ro.initial = proxy::mode::dual_sqlite;
    srv_.reset();
    srv_ = std::make_unique<test_server>(test_server::default_options(), make_dual_router(dir_, ro, {}, d1_endpoint).route);
  }
  std::unique_ptr<proxy::rollout> make(std::vector<proxy::rollout_stage> stages, bool auto_advance,
                                       proxy::rollout_guards guards = {}) {
    proxy::rollout_options o;
    o.stages = std::move(stages);
    o.auto_advance = auto_advance;
    o.guards = guards;
    o.guards.min_reads = 3;
    return std::make_unique<proxy::rollout>(srv_->router(), o, -1, false,
                                            [this](const std::string& what, boost::json::object details) {
                                              events_.emplace_back(what, std::move(details));
                                            });
  }

  temp_dir dir_;
  std::unique_ptr<test_server> srv_;
  std::vector<std::pair<std::string, boost::json::object>> events_;
};

TEST_F(Rollout, StagesAdvanceWhenHeldAndTheOperatorCanStepAndFallBack) {
  auto r = make({{5, 0ms}, {25, 0ms}, {100, 0ms}}, true);
  EXPECT_EQ(r->stage(), -1);
  r->evaluate();  // auto-advance never starts the rollout by itself
  EXPECT_EQ(r->stage(), -1);
  EXPECT_EQ(r->next(), "");
  EXPECT_EQ(srv_->router().read_percent(), 5);
  r->evaluate();
  EXPECT_EQ(srv_->router().read_percent(), 25);
  r->evaluate();
  EXPECT_EQ(srv_->router().read_percent(), 100);
  EXPECT_NE(r->next(), "");  // already at the last stage: refused
  ASSERT_EQ(events_.size(), 2u);
  EXPECT_EQ(events_[0].first, "advanced");
  r->hold();
  EXPECT_EQ(r->prev(), "");
  r->evaluate();  // held: stays
  EXPECT_EQ(srv_->router().read_percent(), 25);
  r->fallback();
  EXPECT_EQ(srv_->router().read_percent(), 0);
  EXPECT_TRUE(r->held());
  EXPECT_EQ(srv_->router().metrics().snapshot().at("rolloutStage").as_int64(), -1);
}

TEST_F(Rollout, ABreachedGuardFallsBackToTheLastStageThatHeld) {
  auto r = make({{25, 0ms}, {50, std::chrono::hours(1)}}, false);
  ASSERT_EQ(r->next(), "");  // stage 0: 25%
  ASSERT_EQ(r->next(), "");  // stage 0 held (its hold is 0): stage 1, 50%
  EXPECT_EQ(srv_->router().read_percent(), 50);
  // A user whose reads move to D1 at 50% but not at 25%.
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    const auto b = proxy::router::bucket_of("user-" + std::to_string(i));
    if (b >= 25 && b < 50) key = "user-" + std::to_string(i);
  }
  auto o = srv_->client_options();
  o.routing_key = key;
  auto c = protocol::client::connect(o);
  ASSERT_TRUE(c);
  ASSERT_TRUE((*c)->query("CREATE TABLE t(id INTEGER PRIMARY KEY)"));
  ASSERT_TRUE(srv_->router().replication()->wait_caught_up(backends::clock::now() + 60s));
  auto fine = (*c)->query("SELECT count(*) FROM t");
  ASSERT_TRUE(fine);
  EXPECT_EQ(fine->meta.served_by, "d1");

  local_d1::instance().stop();  // the fault
  for (int i = 0; i < 3; ++i) {
    auto r2 = (*c)->query("SELECT count(*) FROM t");
    ASSERT_FALSE(r2);
    EXPECT_EQ(r2.error().code, protocol::errc::unavailable);
  }
  r->evaluate();
  local_d1::instance().start();
  EXPECT_EQ(r->stage(), 0);
  EXPECT_TRUE(r->held());
  EXPECT_EQ(srv_->router().read_percent(), 25);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].first, "guard breached");
  EXPECT_EQ(events_[0].second.at("guard").as_string(), "d1_error_rate");
  EXPECT_DOUBLE_EQ(events_[0].second.at("figure").as_double(), 0.75);  // 3 of the 4 D1 reads failed
  EXPECT_EQ(srv_->router().metrics().snapshot().at("rolloutFallbacks").as_uint64(), 1u);
  // The same user now reads from SQLite, on the same connection.
  auto after = (*c)->query("SELECT count(*) FROM t");
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(after->meta.served_by, "sqlite");
}

TEST_F(Rollout, ASlowD1BreachesTheLatencyGuard) {
  slow_http_proxy slow(local_d1::instance().url());
  start(slow.url());
  auto c = srv_->connect();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->query("CREATE TABLE t(id INTEGER PRIMARY KEY)"));
  ASSERT_TRUE(c->query("INSERT INTO t VALUES (1)"));
  ASSERT_TRUE(srv_->router().replication()->wait_caught_up(backends::clock::now() + 60s));
  proxy::rollout_guards g;
  g.max_d1_read_p99_ms = 200;
  auto r = make({{25, 0ms}, {100, 0ms}}, false, g);
  ASSERT_EQ(r->next(), "");
  ASSERT_EQ(r->next(), "");  // stage 0 held (no hold time), so it is where a breach returns to
  ASSERT_EQ(srv_->router().read_percent(), 100);

  slow.set_delay(400ms);  // the fault: every D1 answer now takes 400 ms more
  for (int i = 0; i < 4; ++i) {
    auto read = c->query("SELECT count(*) FROM t");
    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(read->meta.served_by, "d1");
  }
  r->evaluate();
  slow.set_delay(0ms);
  EXPECT_EQ(r->stage(), 0);
  EXPECT_TRUE(r->held());
  EXPECT_EQ(srv_->router().read_percent(), 25);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].second.at("guard").as_string(), "d1_read_p99_ms");
  EXPECT_GT(events_[0].second.at("figure").as_double(), 200.0);
}

TEST_F(Rollout, AStoppedD1BreachesTheReplicationLagGuard) {
  auto c = srv_->connect();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->query("CREATE TABLE t(id INTEGER PRIMARY KEY)"));
  // The follower's position known first: the lag counts from it.
  ASSERT_TRUE(srv_->router().replication()->wait_caught_up(backends::clock::now() + 60s));
  proxy::rollout_guards g;
  g.max_lag_entries = 3;
  auto r = make({{5, 0ms}, {25, 0ms}}, false, g);
  ASSERT_EQ(r->next(), "");
  ASSERT_EQ(r->next(), "");
  local_d1::instance().stop();  // the follower is gone; SQLite keeps taking writes
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(c->query("INSERT INTO t VALUES (" + std::to_string(i) + ")"));
  r->evaluate();
  local_d1::instance().start();
  EXPECT_EQ(r->stage(), 0);
  EXPECT_EQ(srv_->router().read_percent(), 5);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].second.at("guard").as_string(), "replication_lag_entries");
  EXPECT_GE(events_[0].second.at("figure").as_double(), 4.0);
  ASSERT_TRUE(srv_->router().replication()->wait_caught_up(backends::clock::now() + 60s));
  expect_equal_stores(*srv_->router().sqlite(), *srv_->router().d1());
}

}  // namespace
}  // namespace tandem::testing
