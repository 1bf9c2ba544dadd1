// The replicator without D1: a journal on one SQLite file applied to another, with every store
// call the replication makes failing in turn, before it runs and after it ran (its answer lost).
// However it fails, the follower ends with each entry applied exactly once. Real SQLite files.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backends/journal.hpp"
#include "backends/sqlite_store.hpp"
#include "proxy/replicator.hpp"
#include "tests/support/eventually.hpp"
#include "tests/support/failing_store.hpp"
#include "tests/support/test_support.hpp"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
using backends::clock;

std::unique_ptr<backends::sqlite_store> open_store(const std::string& path) {
  backends::sqlite_store_options so;
  so.db.path = path;
  auto s = backends::sqlite_store::open(so);
  if (!s) throw std::runtime_error(s.error().message);
  return std::move(*s);
}

std::vector<std::vector<protocol::value>> rows(backends::store& s, const std::string& sql) {
  auto r = proxy::run_batch(s, {{sql, {}}}, backends::internal_until(clock::now() + 30s));
  EXPECT_TRUE(r) << s.name() << ": " << (r ? "" : r.error().message);
  return r ? r->at(0).rows : std::vector<std::vector<protocol::value>>{};
}

// A leader with a journal of writes whose replay twice would show: increments, a key deleted
// and inserted again, a batch.
struct journaled_leader {
  explicit journaled_leader(const std::string& path) : store(open_store(path)) {
    EXPECT_TRUE(proxy::ensure_journal(*store, backends::internal_until(clock::now() + 30s)));
    write({"CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, tag TEXT UNIQUE)"});
    write({"INSERT INTO c VALUES (1, 0, 'a'), (2, 0, 'b')"});
    for (int i = 0; i < 4; ++i) write({"UPDATE c SET n = n + 1"});
    write({"DELETE FROM c WHERE id = 2", "INSERT INTO c VALUES (3, 10, 'b')", "UPDATE c SET n = n * 2 WHERE id = 1"});
    write({"UPDATE c SET n = n + 100 WHERE tag = 'b'"});
    last = static_cast<std::int64_t>(entries);
  }
  void write(std::vector<std::string> sqls) {
    std::vector<protocol::statement> sts;
    for (auto& s : sqls) sts.push_back({std::move(s), {}});
    backends::exec_options o;
    o.journal = true;
    auto r = proxy::run_batch(*store, std::move(sts), o);
    ASSERT_TRUE(r) << r.error().message;
    ++entries;
  }
  std::unique_ptr<backends::sqlite_store> store;
  std::size_t entries = 0;
  std::int64_t last = 0;
};

proxy::replicator_options fast_retries() {
  proxy::replicator_options o;
  o.batch_entries = 3;  // several batches: a failure can fall between them
  o.retry_min = 1ms;
  o.retry_max = 5ms;
  o.request_timeout = 10s;
  return o;
}

struct outcome_of_run {
  int calls = 0;  // store calls the wrapped side got until caught up
  std::vector<std::vector<protocol::value>> leader_rows, follower_rows;
  std::int64_t applied = -1;
};

// One replication from a fresh leader to a fresh follower, the leader's or the follower's n-th
// store call failing.
outcome_of_run replicate(const temp_dir& dir, const std::string& name, bool wrap_follower, int fail_at, failing_store::fault how) {
  journaled_leader leader(dir.file(name + ".leader.db"));
  auto follower = open_store(dir.file(name + ".follower.db"));
  failing_store wrapped(wrap_follower ? static_cast<backends::store&>(*follower) : *leader.store, fail_at, how);
  backends::store& from = wrap_follower ? static_cast<backends::store&>(*leader.store) : wrapped;
  backends::store& to = wrap_follower ? static_cast<backends::store&>(wrapped) : *follower;
  proxy::dual_metrics metrics;
  proxy::replicator rep(from, to, fast_retries(), metrics);
  rep.start();
  EXPECT_TRUE(eventually("the follower applied the whole journal", [&] { return rep.applied() == leader.last; }, 60s, 1ms))
      << rep.last_error();
  rep.stop();
  outcome_of_run out;
  out.calls = wrapped.calls();
  out.leader_rows = rows(*leader.store, "SELECT id, n, tag FROM c ORDER BY id");
  out.follower_rows = rows(*follower, "SELECT id, n, tag FROM c ORDER BY id");
  auto at = rows(*follower, "SELECT seq FROM _tandem_applied WHERE source = 'sqlite'");
  out.applied = at.empty() ? -1 : std::get<std::int64_t>(at[0][0]);
  follower->shutdown();
  leader.store->shutdown();
  return out;
}

TEST(ReplicatorWithoutD1, AppliesAJournalExactlyOnce) {
  temp_dir dir;
  auto r = replicate(dir, "clean", true, 0, failing_store::fault::before);
  EXPECT_EQ(r.follower_rows, r.leader_rows);
  EXPECT_EQ(r.leader_rows.at(0).at(1), protocol::value{std::int64_t{8}}) << "(0 + 4) * 2";
  EXPECT_EQ(r.applied, 8);
  EXPECT_GT(r.calls, 3);
}

// Every store call one side gets (the follower's batches; the leader's journal reads, its
// identity, pruning), failing in turn: before it runs, and after it ran with its answer lost (the
// batch committed, the replicator cannot know).
void every_call_failing_in_turn(bool follower) {
  temp_dir dir;
  const std::string side = follower ? "follower" : "leader";
  const int calls = replicate(dir, "count", follower, 0, failing_store::fault::before).calls;
  for (auto how : {failing_store::fault::before, failing_store::fault::after}) {
    const bool before = how == failing_store::fault::before;
    for (int n = 1; n <= calls; ++n) {
      SCOPED_TRACE(side + " call " + std::to_string(n) + " of " + std::to_string(calls) +
                   (before ? " failing before it ran" : " failing after it ran"));
      auto r = replicate(dir, side + std::to_string(n) + (before ? "b" : "a"), follower, n, how);
      EXPECT_EQ(r.follower_rows, r.leader_rows);
      EXPECT_EQ(r.applied, 8);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

TEST(ReplicatorWithoutD1, EveryFollowerCallFailingInTurnStillAppliesEachEntryOnce) { every_call_failing_in_turn(true); }

TEST(ReplicatorWithoutD1, EveryLeaderCallFailingInTurnStillAppliesEachEntryOnce) { every_call_failing_in_turn(false); }

}  // namespace
}  // namespace tandem::testing
