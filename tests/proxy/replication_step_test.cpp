// The replicator's decisions (proxy/replication_step.hpp), case by case, without any store.
#include "proxy/replication_step.hpp"

#include <gtest/gtest.h>

namespace tandem::proxy {
namespace {

using protocol::errc;

TEST(ReplicationStep, StopAndPauseComeBeforeAnythingElse) {
  loop_state s;
  s.stop = true;
  s.paused = true;
  s.ready = true;
  EXPECT_EQ(next_step(s).action, loop_action::stop);
  s.stop = false;
  EXPECT_EQ(next_step(s).action, loop_action::wait);
  s.leader_journaling_stopped = true;  // paused still waits: nothing is judged while paused
  EXPECT_EQ(next_step(s).action, loop_action::wait);
}

TEST(ReplicationStep, AnUnknownPositionIsReadBeforeAnyEntry) {
  loop_state s;
  EXPECT_EQ(next_step(s).action, loop_action::prepare);
  s.leader_journaling_stopped = true;  // prepare() judges it, with the position in hand
  EXPECT_EQ(next_step(s).action, loop_action::prepare);
  s.ready = true;
  EXPECT_EQ(next_step(s).action, loop_action::refuse);
}

TEST(ReplicationStep, AFailureBeingIsolatedGoesOneEntryAtATime) {
  loop_state s;
  s.ready = true;
  s.applied = 10;
  s.batch_entries = 500;
  EXPECT_EQ(next_step(s).action, loop_action::fetch);
  EXPECT_EQ(next_step(s).max_entries, 500u);
  s.single_until = 14;
  EXPECT_EQ(next_step(s).max_entries, 1u);
  s.applied = 14;  // past the batch that failed: whole batches again
  EXPECT_EQ(next_step(s).max_entries, 500u);
}

// The retry schedule on a fake clock: full jitter between half the backoff and all of it, doubling
// up to the maximum; a waiter's deadline before the poll wakes the loop first.
TEST(ReplicationStep, BackoffDoublesWithJitterUpToItsMaximum) {
  using std::chrono::milliseconds;
  EXPECT_EQ(next_retry(milliseconds(100), milliseconds(10000), 0.0).wait, milliseconds(50));
  EXPECT_EQ(next_retry(milliseconds(100), milliseconds(10000), 0.999999).wait, milliseconds(100));
  const auto mid = next_retry(milliseconds(100), milliseconds(10000), 0.5).wait;
  EXPECT_GE(mid, milliseconds(50));
  EXPECT_LE(mid, milliseconds(100));
  auto b = milliseconds(100);
  for (int i = 0; i < 10; ++i) b = next_retry(b, milliseconds(10000), 0.3).next_backoff;
  EXPECT_EQ(b, milliseconds(10000));
  EXPECT_EQ(next_retry(milliseconds(8000), milliseconds(10000), 0.3).next_backoff, milliseconds(10000));
}

TEST(ReplicationStep, TheLoopWakesAtTheEarliestWaiterOrItsPoll) {
  const std::chrono::steady_clock::time_point t0{std::chrono::seconds(1000)};
  EXPECT_EQ(next_wake(t0, std::nullopt), t0 + std::chrono::milliseconds(200));
  EXPECT_EQ(next_wake(t0, t0 + std::chrono::milliseconds(30)), t0 + std::chrono::milliseconds(30));
  EXPECT_EQ(next_wake(t0, t0 + std::chrono::seconds(5)), t0 + std::chrono::milliseconds(200));
  EXPECT_EQ(next_wake(t0, t0 - std::chrono::milliseconds(1)), t0 - std::chrono::milliseconds(1));  // already due
}

protocol::error fail(errc code, std::string message, std::optional<std::size_t> index = std::nullopt) {
  return protocol::error{code, std::move(message), "d1", index};
}

TEST(ReplicationStep, AGuardThatFailsIsALateCommitNotAFailure) {
  const auto p = plan_failure(fail(errc::sql_error, "D1_ERROR: " + std::string(backends::k_position_moved), 0), 3);
  EXPECT_EQ(p.kind, batch_failure::late_commit);
  EXPECT_FALSE(p.counts_as_failure);
  EXPECT_FALSE(p.isolate);
  // The same words from another statement of the batch are the client's own error.
  EXPECT_EQ(plan_failure(fail(errc::sql_error, std::string(backends::k_position_moved), 2), 3).kind, batch_failure::refused);
}

TEST(ReplicationStep, AFencedBatchAppliedNothingAndIsNotTheFollowersFault) {
  const auto p = plan_failure(fail(errc::sql_error, std::string(k_permit_fence_failed)), 1);
  EXPECT_EQ(p.kind, batch_failure::fenced);
  EXPECT_FALSE(p.counts_as_failure);
  EXPECT_FALSE(p.stop_at_entry);
}

TEST(ReplicationStep, AnOutageIsRetriedAndNeverStopsReplication) {
  for (errc code : {errc::unavailable, errc::timeout, errc::overloaded}) {
    auto many = plan_failure(fail(code, "D1 is down"), 5);
    EXPECT_EQ(many.kind, batch_failure::outage);
    EXPECT_TRUE(many.isolate);
    EXPECT_TRUE(many.counts_as_failure);
    auto one = plan_failure(fail(code, "D1 is down"), 1);
    EXPECT_FALSE(one.isolate);
    EXPECT_FALSE(one.stop_at_entry);
  }
}

TEST(ReplicationStep, ARefusalStopsReplicationOnlyOnceItIsOneEntry) {
  auto many = plan_failure(fail(errc::sql_error, "UNIQUE constraint failed: t.email", 4), 7);
  EXPECT_EQ(many.kind, batch_failure::refused);
  EXPECT_TRUE(many.isolate);       // find which entry it is first
  EXPECT_FALSE(many.stop_at_entry);
  auto one = plan_failure(fail(errc::constraint, "UNIQUE constraint failed: t.email", 1), 1);
  EXPECT_TRUE(one.stop_at_entry);
  EXPECT_FALSE(one.isolate);
}

TEST(ReplicationStep, TheFailingStatementIsNamedByItsSqlNeverItsValues) {
  backends::journal_entry e;
  e.seq = 9;
  e.statements = {{"INSERT INTO t VALUES (?)", {}}, {"UPDATE t SET v = ?", {}}};
  e.statements[0].params.positional = {protocol::value{std::string("secret")}};
  EXPECT_EQ(failing_sql(e, 2), "UPDATE t SET v = ?");  // index 0 is the guard
  EXPECT_EQ(failing_sql(e, std::nullopt), "INSERT INTO t VALUES (?); UPDATE t SET v = ?");
  EXPECT_EQ(failing_sql(e, 7), "INSERT INTO t VALUES (?); UPDATE t SET v = ?");  // out of range: all of them
  EXPECT_EQ(batch_name({e}, 1), "seq 9 (statement: INSERT INTO t VALUES (?))");
  backends::journal_entry f = e;
  f.seq = 12;
  EXPECT_EQ(batch_name({e, f}, 1), "seq 9-12");
  // A long entry is cut.
  backends::journal_entry big;
  big.statements.assign(300, protocol::statement{"INSERT INTO some_table_with_a_long_name VALUES (?)", {}});
  const auto sql = failing_sql(big, std::nullopt);
  EXPECT_LT(sql.size(), 2200u);
  EXPECT_EQ(sql.substr(sql.size() - 5), "; …");
}

}  // namespace
}  // namespace tandem::proxy
