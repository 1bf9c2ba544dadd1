// No silent gap across mode changes or replaced files (issue: sameness, item 5; operational
// safety, items 2 and 3). The journal has an identity; a follower position that belongs to
// another journal, lies ahead of the leader's, or needs entries already pruned is refused, and so
// is following after writes the leader made outside the journal (a single mode, a forced
// fallback, the journal's bound). Refused means: nothing applied, reads stay on the leader, the
// reason in status, until a backfill rebuilds the follower. Real SQLite files, the real local D1.
#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <thread>

#include "backends/journal.hpp"
#include "proxy/replicator.hpp"
#include "proxy/router.hpp"
#include "tests/support/d1_support.hpp"
#include "tests/support/eventually.hpp"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
using protocol::value;

backends::exec_options internal() {
  backends::exec_options o;
  o.internal = true;
  return o;
}

std::int64_t count_of(backends::store& s, const std::string& table) {
  auto r = proxy::run_batch(s, {{"SELECT count(*) FROM " + table, {}}}, internal());
  EXPECT_TRUE(r) << s.name() << ": " << (r ? "" : r.error().message);
  return r ? std::get<std::int64_t>(r->at(0).rows.at(0).at(0)) : -1;
}

class JournalIdentity : public ::testing::Test {
 protected:
  void start(proxy::mode m, std::string database = {}, backends::sqlite_store_options so = {}, const temp_dir* dir = nullptr) {
    proxy::router_options ro;
    ro.initial = m;
    ro.read_percent = 100;  // every read would go to D1: a follower that must be rebuilt serves none
    ro.replication.retry_max = 200ms;
    auto made = make_dual_router(dir ? *dir : dir_, ro, std::move(database), {}, so);
    database_ = made.database;
    sqlite_ = made.sqlite;
    d1_ = made.d1;
    route_ = std::move(made.route);
  }
  void stop() {
    route_->shutdown();
    route_.reset();
  }

  void write(const std::string& sql) {
    protocol::statement st{sql, {}};
    std::promise<backends::outcome<protocol::query_result>> p;
    route_->execute(client_, st, backends::exec_options{}, [&p](auto r) { p.set_value(std::move(r)); });
    auto r = p.get_future().get();
    ASSERT_TRUE(r) << sql << ": " << r.error().message;
  }
  protocol::query_result read(const std::string& sql) {
    std::promise<backends::outcome<protocol::query_result>> p;
    route_->execute(client_, {sql, {}}, backends::exec_options{}, [&p](auto r) { p.set_value(std::move(r)); });
    auto r = p.get_future().get();
    EXPECT_TRUE(r) << sql << ": " << (r ? "" : r.error().message);
    return r ? *r : protocol::query_result{};
  }
  void caught_up() {
    auto rep = route_->replication();
    ASSERT_TRUE(rep);
    ASSERT_TRUE(rep->wait_caught_up(backends::clock::now() + 120s)) << rep->last_error();
  }
  // The replicator's refusal, once it has judged the follower's position (bounded wait).
  std::string refusal() {
    auto rep = route_->replication();
    EXPECT_TRUE(rep);
    if (!rep) return "";
    EXPECT_TRUE(eventually("the replicator to refuse the follower's position", [&] { return rep->rebuild_needed().has_value(); }, 120s));
    return rep->rebuild_needed().value_or("");
  }
  // dual-sqlite with table t holding one row on both stores, then stopped: the D1 database id.
  std::string one_row_on_both_then_stop() {
    start(proxy::mode::dual_sqlite);
    write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
    write("INSERT INTO t VALUES (1, 'a')");
    caught_up();
    stop();
    return database_;
  }
  // A live backfill, in process: what `tandem migrate --via-control` does, with the copy made
  // by hand (D1's table dropped and written again from SQLite's rows).
  void backfill(const std::string& table) {
    ASSERT_TRUE(route_->begin_backfill());
    auto journal = proxy::ensure_journal(*sqlite_, internal());
    ASSERT_TRUE(journal);
    auto schema = proxy::run_batch(*sqlite_, {{"SELECT sql FROM sqlite_master WHERE name = '" + table + "'", {}}}, internal());
    ASSERT_TRUE(schema);
    std::vector<protocol::statement> copy{{"DROP TABLE IF EXISTS " + table, {}},
                                          {std::get<std::string>(schema->at(0).rows.at(0).at(0)), {}}};
    for (const auto& row : rows_of(*sqlite_, table)) {
      protocol::statement st{"INSERT INTO " + table + " VALUES (?, ?)", {}};
      st.params.positional = row;
      copy.push_back(std::move(st));
    }
    ASSERT_TRUE(proxy::run_batch(*d1_, copy, internal()));
    ASSERT_TRUE(route_->end_backfill(journal->high_water, 30s));
  }

  temp_dir dir_;
  std::string database_;
  backends::sqlite_store* sqlite_ = nullptr;
  backends::d1_store* d1_ = nullptr;
  std::unique_ptr<proxy::router> route_;
  proxy::client_context client_ = [] {
    proxy::client_context c;
    c.routing_key = "journal-identity-test";
    return c;
  }();
};

TEST_F(JournalIdentity, AWriteInSqliteOnlyBetweenDualModesIsNeverSkippedSilently) {
  start(proxy::mode::dual_sqlite);
  write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  write("INSERT INTO t VALUES (1, 'dual')");
  caught_up();
  ASSERT_TRUE(route_->set_mode(proxy::mode::sqlite_only, 10s));
  write("INSERT INTO t VALUES (2, 'sqlite-only')");
  ASSERT_TRUE(route_->set_mode(proxy::mode::dual_sqlite, 10s));
  const auto why = refusal();
  EXPECT_NE(why.find("sqlite-only since"), std::string::npos) << why;
  // Reads stay on SQLite (read_percent is 100), and nothing reaches D1.
  EXPECT_EQ(std::get<std::int64_t>(read("SELECT count(*) FROM t").rows.at(0).at(0)), 2);
  EXPECT_EQ(read("SELECT 1").meta.served_by, "sqlite");
  write("INSERT INTO t VALUES (3, 'while refused')");
  EXPECT_EQ(count_of(*d1_, "t"), 1);
  EXPECT_EQ(route_->metrics().follower_rebuild_needed.load(), 1);
  EXPECT_FALSE(route_->replication()->status().at("rebuild").is_null());

  // The way out: a backfill; then D1 follows again and every later write reaches it.
  backfill("t");
  caught_up();
  EXPECT_FALSE(route_->replication()->rebuild_needed());
  write("INSERT INTO t VALUES (4, 'after the backfill')");
  caught_up();
  EXPECT_TRUE(expect_identical_stores(*sqlite_, *d1_));
  EXPECT_EQ(route_->metrics().follower_rebuild_needed.load(), 0);
}

TEST_F(JournalIdentity, AModeRoundTripWithoutWritesGoesOnWhereD1Stood) {
  start(proxy::mode::dual_sqlite);
  write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  write("INSERT INTO t VALUES (1, 'a')");
  ASSERT_TRUE(route_->set_mode(proxy::mode::sqlite_only, 10s));
  EXPECT_EQ(std::get<std::int64_t>(read("SELECT count(*) FROM t").rows.at(0).at(0)), 1);  // a read is no write
  ASSERT_TRUE(route_->set_mode(proxy::mode::dual_sqlite, 10s));
  write("INSERT INTO t VALUES (2, 'b')");
  caught_up();
  EXPECT_FALSE(route_->replication()->rebuild_needed());
  EXPECT_TRUE(expect_identical_stores(*sqlite_, *d1_));
}

TEST_F(JournalIdentity, ANewSqliteFileAgainstAD1ThatFollowsAnotherJournalIsRefused) {
  const std::string database = one_row_on_both_then_stop();
  temp_dir other;
  start(proxy::mode::dual_sqlite, database, {}, &other);
  const auto why = refusal();
  EXPECT_NE(why.find("follows another journal"), std::string::npos) << why;
}

TEST_F(JournalIdentity, ASqliteFileBehindWhatD1AppliedIsRefused) {
  // A SQLite file restored from a copy (or one that lost commits to a power loss) is behind D1.
  const std::string database = one_row_on_both_then_stop();
  const std::string db = dir_.file("dual.db");
  ASSERT_FALSE(std::filesystem::exists(db + "-wal"));  // closed cleanly: the file holds everything
  std::filesystem::copy_file(db, db + ".copy");
  start(proxy::mode::dual_sqlite, database);
  write("INSERT INTO t VALUES (2, 'b')");
  write("INSERT INTO t VALUES (3, 'c')");
  caught_up();
  stop();
  for (const char* side : {"-wal", "-shm"}) std::filesystem::remove(db + side);  // the newer state's
  std::filesystem::copy_file(db + ".copy", db, std::filesystem::copy_options::overwrite_existing);
  start(proxy::mode::dual_sqlite, database);
  const auto why = refusal();
  EXPECT_NE(why.find("the leader's journal ends at"), std::string::npos) << why;
  EXPECT_NE(why.find("lost acknowledged commits"), std::string::npos) << why;
}

TEST_F(JournalIdentity, AForcedFallbackMarksD1ToBeRebuilt) {
  start(proxy::mode::dual_sqlite);
  write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  caught_up();
  ASSERT_TRUE(route_->switch_primary(30s));
  write("INSERT INTO t VALUES (1, 'on d1')");
  auto forced = route_->force_sqlite_leader(30s);
  ASSERT_TRUE(forced) << forced.error().message;
  ASSERT_TRUE(route_->set_mode(proxy::mode::dual_sqlite, 10s));
  const auto why = refusal();
  EXPECT_NE(why.find("forced fallback"), std::string::npos) << why;
}

TEST_F(JournalIdentity, AJournalAtItsBoundWhileD1IsDownStopsJournalingNeverAWrite) {
  backends::sqlite_store_options so;
  so.journal_max_bytes = 4000;
  start(proxy::mode::dual_sqlite, {}, so);
  write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  caught_up();
  auto& d1 = local_d1::instance();
  d1.stop();
  for (int i = 1; i <= 60; ++i) write("INSERT INTO t VALUES (" + std::to_string(i) + ", '" + std::string(80, 'x') + "')");
  EXPECT_TRUE(sqlite_->journaling_stopped());
  EXPECT_LE(sqlite_->journal_bytes(), 4000 + 200);
  EXPECT_EQ(count_of(*sqlite_, "t"), 60);
  // Recorded with the first write not journaled, so a restart knows it too.
  auto mark = proxy::ensure_journal(*sqlite_, internal());
  ASSERT_TRUE(mark);
  EXPECT_NE(mark->follower_stale.find("dual.max_journal_bytes"), std::string::npos) << mark->follower_stale;
  d1.start();
  const auto why = refusal();
  EXPECT_NE(why.find("dual.max_journal_bytes"), std::string::npos) << why;
  EXPECT_EQ(read("SELECT count(*) FROM t").meta.served_by, "sqlite");

  // A backfill empties the journal, journals again, and D1 follows from its snapshot.
  backfill("t");
  EXPECT_FALSE(sqlite_->journaling_stopped());
  write("INSERT INTO t VALUES (61, 'journaled again')");
  caught_up();
  EXPECT_FALSE(route_->replication()->rebuild_needed());
  EXPECT_TRUE(expect_identical_stores(*sqlite_, *d1_));
}

// The free-disk floor works as the bound does: journaling stops, never a write, and D1 is marked
// to be rebuilt.
TEST_F(JournalIdentity, AFreeDiskFloorStopsJournalingNeverAWrite) {
  backends::sqlite_store_options so;
  so.min_free_disk_bytes = std::int64_t{1} << 60;  // more than any disk here has free
  start(proxy::mode::dual_sqlite, {}, so);
  write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  write("INSERT INTO t VALUES (1, 'kept')");
  EXPECT_TRUE(sqlite_->journaling_stopped());
  EXPECT_NE(sqlite_->journal_stop_reason().find("dual.min_free_disk_bytes"), std::string::npos) << sqlite_->journal_stop_reason();
  EXPECT_EQ(count_of(*sqlite_, "t"), 1);
  const auto why = refusal();
  EXPECT_NE(why.find("dual.min_free_disk_bytes"), std::string::npos) << why;
  EXPECT_EQ(route_->metrics().follower_rebuild_needed.load(), 1);
  EXPECT_EQ(read("SELECT count(*) FROM t").meta.served_by, "sqlite");
}

// A file tandem creates gives the pages of pruned entries back to the disk (incremental vacuum),
// so a journal that grew during an outage does not leave the file at its largest for good.
TEST_F(JournalIdentity, PrunedJournalPagesGoBackToTheDisk) {
  backends::sqlite_store_options so;
  so.journal_max_bytes = 8 << 20;  // past half of it, pruning takes every applied entry at once
  start(proxy::mode::dual_sqlite, {}, so);
  auto pragma = [&](const std::string& name) {
    auto r = proxy::run_batch(*sqlite_, {{"PRAGMA " + name, {}}}, internal());
    EXPECT_TRUE(r) << name;
    return r ? std::get<std::int64_t>(r->at(0).rows.at(0).at(0)) : -1;
  };
  EXPECT_EQ(pragma("auto_vacuum"), 2) << "incremental";
  write("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  caught_up();
  route_->pause_replication();
  for (int i = 1; i <= 50; ++i) write("INSERT INTO t VALUES (" + std::to_string(i) + ", '" + std::string(90000, 'x') + "')");
  write("DELETE FROM t");  // the table's own pages are free now too; only the journal holds 4.5 MB
  const auto pages_full = pragma("page_count");
  route_->resume_replication();
  caught_up();
  EXPECT_TRUE(eventually("the applied entries pruned", [&] { return count_of(*sqlite_, "_tandem_journal") == 0; }, 60s));
  EXPECT_TRUE(eventually("the freed pages given back", [&] { return pragma("freelist_count") < 50; }, 60s))
      << "freelist_count " << pragma("freelist_count");
  EXPECT_LT(pragma("page_count"), pages_full / 4) << "the file shrank from " << pages_full << " pages";
  EXPECT_TRUE(expect_identical_stores(*sqlite_, *d1_));
}

}  // namespace
}  // namespace tandem::testing
