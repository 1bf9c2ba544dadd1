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

// Sends one line to the unix socket and returns the answer line, parsed.
json::object ask(const std::string& path, const std::string& line) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << path;
  const std::string out = line + "\n";
  EXPECT_EQ(::write(fd, out.data(), out.size()), static_cast<ssize_t>(out.size()));
  std::string answer;
  char buf[4096];
  while (answer.find('\n') == std::string::npos) {
    const auto n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return json::parse(answer).as_object();
}

class Control : public ::testing::Test {
 protected:
  void SetUp() override {
    proxy::router_options ro;
    ro.initial = proxy::mode::dual_sqlite;
    srv_ = std::make_unique<test_server>(test_server::default_options(), make_dual_router(dir_, ro).route);
    options_.socket_path = dir_.file("tandem.sock");
    options_.state_path = dir_.file("state.json");
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
