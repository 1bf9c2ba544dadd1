// The rollout's decisions on a fake clock and a plain target: hold times, auto-advance, the
// guards' sliding window and where a breach goes back to. No stores, no threads, no waiting.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proxy/rollout.hpp"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

struct fake_target final : proxy::rollout_target {
  proxy::mode m = proxy::mode::dual_sqlite;
  int percent = 0;
  proxy::dual_metrics counters;
  proxy::mode current_mode() const override { return m; }
  int read_percent() const override { return percent; }
  void set_read_percent(int p) override { percent = p; }
  proxy::dual_metrics& metrics() override { return counters; }
};

class RolloutOnAFakeClock : public ::testing::Test {
 protected:
  // Stages 5% (1 h), 25% (1 h), 50% (2 h), 100%; guards over a 5-minute window.
  std::unique_ptr<proxy::rollout> make(int stage = 0, bool held = false, bool auto_advance = true) {
    proxy::rollout_options o;
    o.stages = {{5, 1h}, {25, 1h}, {50, 2h}, {100, 24h}};
    o.auto_advance = auto_advance;
    o.guards.window = 5min;
    o.guards.min_reads = 20;
    o.guards.max_d1_error_rate = 0.01;
    return std::make_unique<proxy::rollout>(
        target_, o, stage, held, [this](const std::string& what, boost::json::object) { events_.push_back(what); },
        [this] { return now_; });
  }
  void d1_reads(std::uint64_t reads, std::uint64_t errors) {
    target_.counters.reads_d1 += reads;
    target_.counters.read_errors_d1 += errors;
  }

  fake_target target_;
  steady::time_point now_ = steady::time_point{} + 1000h;
  std::vector<std::string> events_;
};

TEST_F(RolloutOnAFakeClock, AStageAdvancesOnlyOnceItsWholeHoldHasPassed) {
  auto r = make();
  EXPECT_EQ(target_.percent, 5);
  now_ += 59min + 59s;
  r->evaluate();
  EXPECT_EQ(r->stage(), 0) << "a second short of the hold";
  now_ += 1s;
  r->evaluate();
  EXPECT_EQ(r->stage(), 1);
  EXPECT_EQ(target_.percent, 25);
  EXPECT_EQ(events_, std::vector<std::string>{"advanced"});
  // The next stage's hold counts from its own start.
  now_ += 30min;
  r->evaluate();
  EXPECT_EQ(r->stage(), 1);
  EXPECT_EQ(r->status().at("secondsInStage").as_int64(), 1800);
}

TEST_F(RolloutOnAFakeClock, AHeldRolloutStaysAndAReleaseLetsItGoOn) {
  auto r = make(0, true);
  now_ += 3h;
  r->evaluate();
  EXPECT_EQ(r->stage(), 0);
  r->release();
  r->evaluate();
  EXPECT_EQ(r->stage(), 1) << "the time held so far counts";
}

TEST_F(RolloutOnAFakeClock, WithoutAutoAdvanceOnlyTheOperatorMovesIt) {
  auto r = make(0, false, false);
  now_ += 10h;
  r->evaluate();
  EXPECT_EQ(r->stage(), 0);
  EXPECT_EQ(r->next(), "");
  EXPECT_EQ(target_.percent, 25);
  EXPECT_EQ(r->prev(), "");
  EXPECT_EQ(target_.percent, 5);
  EXPECT_EQ(r->prev(), "");
  EXPECT_EQ(target_.percent, 0);
  EXPECT_NE(r->prev(), "") << "already before the first stage";
}

TEST_F(RolloutOnAFakeClock, ABreachGoesBackToTheLastStageThatHeldAndHolds) {
  auto r = make();
  now_ += 1h;
  r->evaluate();  // stage 0 held; now at stage 1
  ASSERT_EQ(r->stage(), 1);
  now_ += 10min;
  d1_reads(100, 5);  // 5% of D1's reads failed
  r->evaluate();
  EXPECT_EQ(r->stage(), 0);
  EXPECT_EQ(target_.percent, 5);
  EXPECT_TRUE(r->held());
  EXPECT_EQ(events_.back(), "guard breached");
  EXPECT_NE(std::string(r->status().at("lastBreach").as_string()).find("d1_error_rate"), std::string::npos);
  EXPECT_EQ(target_.counters.rollout_fallbacks.load(), 1u);
}

TEST_F(RolloutOnAFakeClock, ABreachBeforeAnyStageHeldGoesBackToNoReadsOnD1) {
  auto r = make();
  now_ += 1min;
  d1_reads(50, 10);
  r->evaluate();
  EXPECT_EQ(r->stage(), -1);
  EXPECT_EQ(target_.percent, 0);
}

TEST_F(RolloutOnAFakeClock, ErrorsOlderThanTheWindowNoLongerCount) {
  auto r = make(0, true);
  now_ += 1min;
  d1_reads(100, 0);
  r->evaluate();
  now_ += 6min;  // the window has passed over the quiet reads
  r->evaluate();
  now_ += 1min;
  d1_reads(100, 1);  // 1% in the window: at the limit, not over it
  r->evaluate();
  EXPECT_EQ(r->stage(), 0);
  EXPECT_TRUE(events_.empty());
  now_ += 6min;  // that error left the window too
  d1_reads(20, 0);
  r->evaluate();
  EXPECT_EQ(r->stage(), 0);
  now_ += 1min;
  d1_reads(20, 1);  // 1 of 40 in the window: 2.5%
  r->evaluate();
  EXPECT_EQ(r->stage(), -1);
}

TEST_F(RolloutOnAFakeClock, TooFewReadsGiveNoErrorRateVerdict) {
  auto r = make(0, true);
  now_ += 1min;
  d1_reads(19, 19);
  r->evaluate();
  EXPECT_EQ(r->stage(), 0) << "19 reads are under min_reads";
  d1_reads(1, 1);
  r->evaluate();
  EXPECT_EQ(r->stage(), -1);
}

TEST_F(RolloutOnAFakeClock, GuardsJudgeOnlyTheDualModesAndEachStageOnItsOwnTraffic) {
  auto r = make(1, true);
  target_.m = proxy::mode::sqlite_only;
  d1_reads(100, 100);
  r->evaluate();
  EXPECT_EQ(r->stage(), 1) << "no D1 reads to judge in sqlite-only";
  target_.m = proxy::mode::dual_sqlite;
  EXPECT_EQ(r->next(), "");  // a new stage starts a new window: the old errors are not its own
  r->evaluate();
  EXPECT_EQ(r->stage(), 2);
  target_.counters.lag_entries = 20000;
  r->evaluate();
  EXPECT_EQ(r->stage(), 0) << "back to stage 0, the last that held (stage 1 was left before its hour)";
  EXPECT_NE(std::string(r->status().at("lastBreach").as_string()).find("replication_lag_entries"), std::string::npos);
}

TEST_F(RolloutOnAFakeClock, NextMarksAStageHeldOnlyAfterItsHold) {
  auto r = make(0, false, false);
  now_ += 30min;
  EXPECT_EQ(r->next(), "");  // stage 0 left early: not held
  d1_reads(100, 50);
  r->evaluate();
  EXPECT_EQ(r->stage(), -1) << "nothing held: back to 0% of reads on D1";
  EXPECT_EQ(r->next(), "");
  now_ += 1h;
  EXPECT_EQ(r->next(), "");  // stage 0 held for its hour
  d1_reads(100, 50);
  r->evaluate();
  EXPECT_EQ(r->stage(), 0);
}

}  // namespace
}  // namespace tandem::testing
