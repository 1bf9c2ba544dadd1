// The control socket and `tandem ctl` against a real dual-mode tandem (SQLite file + the real
// local D1): commands answer with before/after, refusals change nothing, changes are events
// with the peer's uid and are saved to the state file.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "proxy/control.hpp"
#include "proxy/config.hpp"
#include "tests/support/d1_support.hpp"
#include "tests/support/eventually.hpp"
#include "tools/ctl.hpp"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

json::object ask(const std::string& path, const std::string& line) { return control_ask(path, line); }

class Control : public ::testing::Test {
 protected:
  void SetUp() override {
    proxy::router_options ro;
    ro.initial = proxy::mode::dual_sqlite;
    ro.replication.pause_on_verification_failure = pause_on_verification_failure_;
    // What the replicator does by itself goes to the control server, as `tandem serve` wires it.
    ro.replication.on_event = [this](const std::string& what, json::object details) {
      if (auto* c = events_to_.load()) c->record(what, std::move(details));
    };
    auto made = make_dual_router(dir_, ro);
    d1_ = made.d1;
    srv_ = std::make_unique<test_server>(test_server::default_options(), std::move(made.route));
    options_.socket_path = dir_.file("tandem.sock");
    options_.state_path = dir_.file("state.json");
    options_.max_pause = 3s;
    control_ = std::make_unique<proxy::control_server>(ioc_, options_, srv_->router());
    if (with_rollout_) {
      proxy::rollout_options o;
      o.stages = {{5, 1h}, {25, 1h}};
      rollout_ = std::make_unique<proxy::rollout>(srv_->router(), o, -1, false, nullptr);
      control_->set_rollout(rollout_.get());
    }
    control_->start();
    events_to_.store(control_.get());
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    events_to_.store(nullptr);
    control_->stop();
    thread_.join();
  }
  // The state file cannot be written while a folder stands where its temporary file goes (a
  // failure that holds for root too, unlike permissions).
  void block_state_file(bool blocked) {
    const auto tmp = options_.state_path + ".tmp";
    if (blocked) std::filesystem::create_directory(tmp);
    else std::filesystem::remove(tmp);
  }

  bool pause_on_verification_failure_ = false;
  bool with_rollout_ = false;
  temp_dir dir_;
  backends::d1_store* d1_ = nullptr;
  std::unique_ptr<test_server> srv_;
  proxy::control_options options_;
  boost::asio::io_context ioc_;
  std::unique_ptr<proxy::control_server> control_;
  std::unique_ptr<proxy::rollout> rollout_;
  std::atomic<proxy::control_server*> events_to_{nullptr};
  std::thread thread_;
};

TEST_F(Control, CommandsAnswerWithBeforeAndAfterAndAreSaved) {
  const auto& path = options_.socket_path;
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  EXPECT_TRUE(ask(path, "help").at("ok").as_bool());
  auto split = ask(path, "split 25");
  EXPECT_TRUE(split.at("ok").as_bool());
  EXPECT_EQ(split.at("before").at("readPercent").as_int64(), 0);
  EXPECT_EQ(split.at("after").at("readPercent").as_int64(), 25);
  EXPECT_EQ(srv_->router().read_percent(), 25);

  // Refusals say why and change nothing.
  for (const char* bad : {"split 101", "split -1", "split", "shadow lots", "verify maybe", "mode everything", "bogus", ""}) {
    auto r = ask(path, bad);
    EXPECT_FALSE(r.at("ok").as_bool()) << bad;
    EXPECT_FALSE(r.at("error").as_string().empty()) << bad;
  }
  EXPECT_EQ(srv_->router().read_percent(), 25);
  EXPECT_FALSE(ask(path, "mode d1-only").at("ok").as_bool());  // not from dual-sqlite

  EXPECT_TRUE(ask(path, "verify off").at("ok").as_bool());
  EXPECT_TRUE(ask(path, "shadow 10").at("ok").as_bool());
  EXPECT_TRUE(ask(path, "pause-replication").at("ok").as_bool());
  EXPECT_TRUE(srv_->router().replication()->paused());
  EXPECT_TRUE(ask(path, "resume-replication").at("ok").as_bool());
  auto sw = ask(path, "switch-primary");
  ASSERT_TRUE(sw.at("ok").as_bool()) << json::serialize(sw);
  EXPECT_EQ(sw.at("after").at("mode").as_string(), "dual-d1");
  EXPECT_TRUE(sw.contains("pausedMs"));

  auto status = ask(path, "status");
  ASSERT_TRUE(status.at("ok").as_bool());
  const auto& events = status.at("events").as_array();
  ASSERT_EQ(events.size(), 6u);  // split, verify, shadow, pause, resume, switch
  EXPECT_EQ(events.back().at("command").as_string(), "switch-primary");
  EXPECT_EQ(events.back().at("uid").to_number<std::int64_t>(), static_cast<std::int64_t>(::getuid()));

  // What a restart would resume.
  auto saved = proxy::load_runtime_state(options_.state_path);
  ASSERT_TRUE(saved);
  EXPECT_EQ(saved->current, proxy::mode::dual_d1);
  EXPECT_EQ(saved->read_percent, 25);
  EXPECT_EQ(saved->shadow_read_percent, 10);
  EXPECT_FALSE(saved->verify_writes);
  EXPECT_FALSE(saved->replication_paused);
}

TEST_F(Control, CtlExitStatusAndUnsafePaths) {
  tools::ctl_options o;
  o.socket = options_.socket_path;
  o.words = {"split", "50"};
  EXPECT_EQ(tools::run_ctl(o), 0);
  EXPECT_EQ(srv_->router().read_percent(), 50);
  o.words = {"split", "x"};
  EXPECT_EQ(tools::run_ctl(o), 1);
  o.socket = dir_.file("nothing.sock");
  EXPECT_EQ(tools::run_ctl(o), 2);

  // A live socket is not taken over; a symlink or a plain file is refused.
  proxy::control_server second(ioc_, options_, srv_->router());
  EXPECT_THROW(second.start(), std::runtime_error);
  for (const bool link : {true, false}) {
    proxy::control_options o2 = options_;
    o2.socket_path = dir_.file(link ? "link.sock" : "file.sock");
    if (link) std::filesystem::create_symlink(dir_.file("elsewhere"), o2.socket_path);
    else std::ofstream(o2.socket_path) << "x";
    proxy::control_server bad(ioc_, o2, srv_->router());
    EXPECT_THROW(bad.start(), std::runtime_error) << o2.socket_path;
  }
}

TEST_F(Control, FallbackWhileD1LeadsAndIsDownNeedsForceAndCountsWhatSQLiteLacks) {
  const auto& path = options_.socket_path;
  auto c = srv_->connect();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->query("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"));
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(c->query("INSERT INTO t VALUES (" + std::to_string(i) + ", 'sqlite-led')"));
  ASSERT_TRUE(ask(path, "switch-primary").at("ok").as_bool());
  ASSERT_TRUE(ask(path, "split 50").at("ok").as_bool());
  // D1 leads; SQLite follows, then stops applying: the next three writes exist only on D1.
  ASSERT_TRUE(ask(path, "pause-replication").at("ok").as_bool());
  for (int i = 6; i <= 8; ++i) ASSERT_TRUE(c->query("INSERT INTO t VALUES (" + std::to_string(i) + ", 'd1-led')"));

  local_d1::instance().stop();  // the outage
  auto plain = ask(path, "fallback");
  auto forced = ask(path, "fallback --force");
  auto after_write = c->query("INSERT INTO t VALUES (9, 'sqlite-again')");
  local_d1::instance().start();

  EXPECT_FALSE(plain.at("ok").as_bool()) << json::serialize(plain);
  EXPECT_NE(plain.at("error").as_string().find("--force"), json::string::npos) << json::serialize(plain);
  EXPECT_EQ(plain.at("unappliedEntries").as_int64(), 3);
  EXPECT_EQ(plain.at("after").at("readPercent").as_int64(), 0) << "reads went back to SQLite at once";
  EXPECT_EQ(plain.at("after").at("mode").as_string(), "dual-d1");

  ASSERT_TRUE(forced.at("ok").as_bool()) << json::serialize(forced);
  EXPECT_EQ(forced.at("after").at("mode").as_string(), "sqlite-only");
  EXPECT_EQ(forced.at("forced").at("unappliedEntries").as_int64(), 3);
  EXPECT_EQ(forced.at("forced").at("d1JournalEnd").as_int64() - forced.at("forced").at("sqliteApplied").as_int64(), 3);
  EXPECT_TRUE(after_write) << "SQLite takes writes again";
  // SQLite holds what it applied plus the new write; the three D1-only writes are named, not lost.
  EXPECT_EQ(rows_of(*srv_->router().sqlite(), "t").size(), 6u);
  auto status = ask(path, "status");
  const auto& last = status.at("events").as_array().back().as_object();
  EXPECT_EQ(last.at("command").as_string(), "fallback --force");
  EXPECT_EQ(last.at("details").at("unappliedEntries").as_int64(), 3);
  EXPECT_EQ(proxy::load_runtime_state(options_.state_path)->current, proxy::mode::sqlite_only);
}

TEST_F(Control, FallbackWhileD1LeadsAndIsUpSwitchesBackWithoutForce) {
  const auto& path = options_.socket_path;
  auto c = srv_->connect();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->query("CREATE TABLE t(id INTEGER PRIMARY KEY)"));
  ASSERT_TRUE(ask(path, "switch-primary").at("ok").as_bool());
  ASSERT_TRUE(ask(path, "split 100").at("ok").as_bool());
  ASSERT_TRUE(c->query("INSERT INTO t VALUES (1)"));
  auto r = ask(path, "fallback");
  ASSERT_TRUE(r.at("ok").as_bool()) << json::serialize(r);
  EXPECT_EQ(r.at("after").at("mode").as_string(), "dual-sqlite");
  EXPECT_EQ(r.at("after").at("readPercent").as_int64(), 0);
  EXPECT_FALSE(r.contains("forced"));
  EXPECT_EQ(rows_of(*srv_->router().sqlite(), "t").size(), 1u);
}

// Item: the runtime state is saved or the change is refused.
TEST_F(Control, AChangeWhoseStateCannotBeSavedIsUndoneOrNeverMade) {
  const auto& path = options_.socket_path;
  auto c = srv_->connect();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->query("CREATE TABLE t(id INTEGER PRIMARY KEY)"));
  ASSERT_TRUE(ask(path, "split 25").at("ok").as_bool());
  ASSERT_EQ(proxy::load_runtime_state(options_.state_path)->read_percent, 25);

  block_state_file(true);
  auto expect_refused = [&](const std::string& line) {
    auto r = ask(path, line);
    EXPECT_FALSE(r.at("ok").as_bool()) << line << ": " << json::serialize(r);
    const std::string error(r.at("error").as_string());
    // Why, precisely: the path and the OS error.
    EXPECT_NE(error.find(options_.state_path + ".tmp: Is a directory"), std::string::npos) << line << ": " << error;
    return r;
  };
  // Commands that can be undone are: the router is as it was, and the file says so.
  for (const char* line : {"split 50", "shadow 10", "verify off", "pause-replication"}) {
    auto r = expect_refused(line);
    EXPECT_NE(std::string(r.at("error").as_string()).find("undone"), std::string::npos) << line;
  }
  EXPECT_EQ(srv_->router().read_percent(), 25);
  EXPECT_EQ(srv_->router().shadow_read_percent(), 0);
  EXPECT_TRUE(srv_->router().verify_writes());
  EXPECT_FALSE(srv_->router().replication()->paused());
  // Mode changes are written ahead: the save fails before the change takes effect, so it never does.
  for (const char* line : {"switch-primary", "mode sqlite-only"}) {
    auto r = expect_refused(line);
    EXPECT_NE(std::string(r.at("error").as_string()).find("nothing changed, dual-sqlite continues"), std::string::npos) << line;
    EXPECT_EQ(srv_->router().current_mode(), proxy::mode::dual_sqlite) << line;
  }
  // ... and the old direction goes on replicating.
  ASSERT_TRUE(c->query("INSERT INTO t VALUES (1)"));
  auto rep = srv_->router().replication();
  ASSERT_TRUE(rep);
  ASSERT_TRUE(rep->wait_caught_up(backends::clock::now() + 60s)) << rep->last_error();
  EXPECT_EQ(rows_of(*d1_, "t").size(), 1u);
  auto status = ask(path, "status");
  EXPECT_EQ(status.at("metrics").at("stateUnsaved").as_int64(), 1) << json::serialize(status.at("metrics"));
  EXPECT_TRUE(status.at("events").as_array().size() == 1u) << "refused changes are no events: " << json::serialize(status.at("events"));

  // fallback, the emergency exit, moves the reads anyway and says what a restart would do.
  auto fb = ask(path, "fallback");
  EXPECT_FALSE(fb.at("ok").as_bool()) << json::serialize(fb);
  EXPECT_NE(std::string(fb.at("error").as_string()).find("a restart would come back"), std::string::npos) << json::serialize(fb);
  EXPECT_EQ(srv_->router().read_percent(), 0);
  auto saved = proxy::load_runtime_state(options_.state_path);
  ASSERT_TRUE(saved);
  EXPECT_EQ(saved->read_percent, 25) << "the file is behind while it cannot be written";

  // Once the file can be written, the next command (any) brings it up to date.
  block_state_file(false);
  status = ask(path, "status");
  EXPECT_EQ(status.at("metrics").at("stateUnsaved").as_int64(), 0);
  EXPECT_EQ(proxy::load_runtime_state(options_.state_path)->read_percent, 0);
  auto sw = ask(path, "switch-primary");
  ASSERT_TRUE(sw.at("ok").as_bool()) << json::serialize(sw);
  EXPECT_EQ(proxy::load_runtime_state(options_.state_path)->current, proxy::mode::dual_d1);
}

// The write-ahead: the router calls back at its point of no return, the old mode still in force,
// and a refusal there leaves everything as it was.
TEST_F(Control, AModeChangeCallsItsCommitHookBeforeTakingEffect) {
  auto& route = srv_->router();
  std::vector<std::pair<proxy::mode, proxy::mode>> seen;  // (the mode in force, the mode to come)
  auto refuse = [&](proxy::mode to) -> backends::outcome<void> {
    seen.emplace_back(route.current_mode(), to);
    return protocol::error{protocol::errc::unavailable, "not now", {}, {}};
  };
  auto r = route.switch_primary(3s, refuse);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not now; nothing changed, dual-sqlite continues"), std::string::npos) << r.error().message;
  EXPECT_FALSE(route.set_mode(proxy::mode::sqlite_only, 3s, refuse));
  EXPECT_EQ(route.current_mode(), proxy::mode::dual_sqlite);
  ASSERT_TRUE(route.replication());
  auto accept = [&](proxy::mode to) -> backends::outcome<void> {
    seen.emplace_back(route.current_mode(), to);
    return {};
  };
  ASSERT_TRUE(route.switch_primary(3s, accept));
  EXPECT_EQ(route.current_mode(), proxy::mode::dual_d1);
  using m = proxy::mode;
  const std::vector<std::pair<m, m>> expected{{m::dual_sqlite, m::dual_d1}, {m::dual_sqlite, m::sqlite_only}, {m::dual_sqlite, m::dual_d1}};
  EXPECT_EQ(seen, expected);
}

class ControlWithRollout : public Control {
 protected:
  ControlWithRollout() { with_rollout_ = true; }
};

TEST_F(ControlWithRollout, RolloutMovesWhoseStateCannotBeSavedAreUndone) {
  const auto& path = options_.socket_path;
  ASSERT_TRUE(ask(path, "next").at("ok").as_bool());
  block_state_file(true);
  for (const char* line : {"next", "prev", "hold"}) {
    auto r = ask(path, line);
    EXPECT_FALSE(r.at("ok").as_bool()) << line << ": " << json::serialize(r);
    EXPECT_EQ(rollout_->stage(), 0) << line;
    EXPECT_FALSE(rollout_->held()) << line;
    EXPECT_EQ(srv_->router().read_percent(), 5) << line;
  }
  block_state_file(false);
  ASSERT_TRUE(ask(path, "next").at("ok").as_bool());
  EXPECT_EQ(proxy::load_runtime_state(options_.state_path)->stage, 1);
}

// Item: dual.pause_on_verification_failure pauses replication, and nothing waits on itself.
class ControlPausing : public Control {
 protected:
  ControlPausing() { pause_on_verification_failure_ = true; }
};

TEST_F(ControlPausing, AVerificationFailurePausesReplicationAndControlStillAnswers) {
  const auto& path = options_.socket_path;
  auto c = srv_->connect();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->query("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)"));
  ASSERT_TRUE(c->query("INSERT INTO t VALUES (1, 0), (2, 0)"));
  auto rep = srv_->router().replication();
  ASSERT_TRUE(rep);
  ASSERT_TRUE(rep->wait_caught_up(backends::clock::now() + 60s)) << rep->last_error();
  // Someone deletes a row on D1 behind tandem's back: the follower differs from the leader.
  backends::exec_options o;
  ASSERT_TRUE(proxy::run_batch(*d1_, {{"DELETE FROM t WHERE id = 2", {}}}, o));
  ASSERT_TRUE(c->query("UPDATE t SET v = v + 1"));  // 2 rows on SQLite, 1 on D1

  json::object status;
  // Paused first, then the event (on the replicator's thread).
  ASSERT_TRUE(eventually("replication paused, and its event in status", [&] {
    status = ask(path, "status");
    return status.at("replication").at("paused").as_bool() && !status.at("events").as_array().empty();
  })) << json::serialize(status);
  // Reported: why (status), the event, the metrics, and the state file (a restart stays paused).
  const std::string reason(status.at("replication").at("pausedReason").as_string());
  EXPECT_NE(reason.find("verification failed at seq"), std::string::npos) << reason;
  EXPECT_NE(reason.find("sqlite changed 2 row(s), d1 changed 1"), std::string::npos) << reason;
  const auto& event = status.at("events").as_array().back().as_object();
  EXPECT_EQ(event.at("command").as_string(), "replication paused");
  EXPECT_EQ(event.at("details").at("leaderChanges").as_int64(), 2);
  EXPECT_EQ(event.at("details").at("followerChanges").as_int64(), 1);
  EXPECT_EQ(status.at("metrics").at("verificationFailures").to_number<std::int64_t>(), 1);
  EXPECT_EQ(status.at("metrics").at("replicationPaused").as_int64(), 1);
  EXPECT_TRUE(status.at("state").at("replicationPaused").as_bool());
  EXPECT_TRUE(proxy::load_runtime_state(options_.state_path)->replication_paused);

  // The leader goes on; the follower waits.
  ASSERT_TRUE(c->query("INSERT INTO t VALUES (3, 0)"));
  // Commands that wait for the batch in flight answer (the replicator is not stuck in it).
  EXPECT_TRUE(ask(path, "pause-replication").at("ok").as_bool());
  auto resumed = ask(path, "resume-replication");
  ASSERT_TRUE(resumed.at("ok").as_bool()) << json::serialize(resumed);
  EXPECT_FALSE(resumed.at("after").at("replicationPaused").as_bool());
  ASSERT_TRUE(rep->wait_caught_up(backends::clock::now() + 60s)) << rep->last_error();
  EXPECT_EQ(rows_of(*d1_, "t").size(), 2u);  // 1 and 3: the deleted row stays deleted
  EXPECT_TRUE(ask(path, "status").at("replication").at("pausedReason").is_null());
  EXPECT_FALSE(proxy::load_runtime_state(options_.state_path)->replication_paused);
}

TEST(RuntimeState, ACorruptFileIsAnErrorNotASilentFallback) {
  temp_dir dir;
  EXPECT_FALSE(proxy::load_runtime_state(dir.file("missing.json")));
  std::ofstream(dir.file("bad.json")) << R"({"mode": "dual-sqlite", "readPercent": 500})";
  EXPECT_THROW(proxy::load_runtime_state(dir.file("bad.json")), proxy::config_error);
  proxy::runtime_state s;
  s.current = proxy::mode::dual_d1;
  s.read_percent = 5;
  ASSERT_EQ(proxy::save_runtime_state(dir.file("ok.json"), s), "");
  auto back = proxy::load_runtime_state(dir.file("ok.json"));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->current, proxy::mode::dual_d1);
  EXPECT_EQ(back->read_percent, 5);
}

}  // namespace
}  // namespace tandem::testing
