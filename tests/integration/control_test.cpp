// The control socket and `tandem ctl` against a real dual-mode tandem (SQLite file + the real
// local D1): commands answer with before/after, refusals change nothing, changes are events
// with the peer's uid and are saved to the state file.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "proxy/control.hpp"
#include "proxy/config.hpp"
#include "tests/support/d1_support.hpp"
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
    srv_ = std::make_unique<test_server>(test_server::default_options(), make_dual_router(dir_, ro).route);
    options_.socket_path = dir_.file("tandem.sock");
    options_.state_path = dir_.file("state.json");
    options_.max_pause = 3s;
    control_ = std::make_unique<proxy::control_server>(ioc_, options_, srv_->router());
    control_->start();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    control_->stop();
    thread_.join();
  }

  temp_dir dir_;
  std::unique_ptr<test_server> srv_;
  proxy::control_options options_;
  boost::asio::io_context ioc_;
  std::unique_ptr<proxy::control_server> control_;
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

TEST(RuntimeState, ACorruptFileIsAnErrorNotASilentFallback) {
  temp_dir dir;
  EXPECT_FALSE(proxy::load_runtime_state(dir.file("missing.json")));
  std::ofstream(dir.file("bad.json")) << R"({"mode": "dual-sqlite", "readPercent": 500})";
  EXPECT_THROW(proxy::load_runtime_state(dir.file("bad.json")), proxy::config_error);
  proxy::runtime_state s;
  s.current = proxy::mode::dual_d1;
  s.read_percent = 5;
  ASSERT_TRUE(proxy::save_runtime_state(dir.file("ok.json"), s));
  auto back = proxy::load_runtime_state(dir.file("ok.json"));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->current, proxy::mode::dual_d1);
  EXPECT_EQ(back->read_percent, 5);
}

}  // namespace
}  // namespace tandem::testing
