// Reloading the config of a running `tandem serve` (a real process): `tandem ctl reload` and
// SIGHUP apply what can change while running, name what needs a restart, and refuse an invalid
// file while keeping the running config. Each reload is an operator event.
#include <gtest/gtest.h>

#include <signal.h>

#include <fstream>
#include <thread>

#include <boost/json/serialize.hpp>

#include "tests/support/test_support.hpp"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

class Reload : public ::testing::Test {
 protected:
  void write_config(int listen_port, const std::string& stages, double max_error_rate) {
    std::ofstream f(config_);
    f << "// written by reload_test\n{\"mode\": \"sqlite-only\", \"listen\": {\"port\": " << listen_port << "},"
      << " \"sqlite\": {\"path\": \"" << dir_.file("t.db") << "\"}, \"admin\": {\"enabled\": false},"
      << " \"control\": {\"socket\": \"" << socket_ << "\", \"state_file\": \"" << dir_.file("state.json") << "\"},"
      << " \"rollout\": {\"stages\": " << stages << ", \"guards\": {\"max_d1_error_rate\": " << max_error_rate << "}}}";
  }
  json::object wait_for_event(const std::string& command) { return wait_for_control_event(socket_, command); }

  temp_dir dir_;
  std::string config_ = dir_.file("tandem.jsonc");
  std::string socket_ = dir_.file("tandem.sock");
};

TEST_F(Reload, AppliesWhatItCanNamesWhatNeedsARestartAndRefusesABadFile) {
  const auto port = free_port();
  write_config(port, R"([{"percent": 5, "hold": "1h"}, {"percent": 25, "hold": "1h"}])", 0.01);
  proxy_process proxy(TANDEM_BINARY, config_);
  proxy.start();
  ASSERT_TRUE(proxy.started());

  // New stages and guards apply; a new listen port needs a restart (and is said so).
  write_config(port + 1, R"([{"percent": 10, "hold": "2h"}])", 0.5);
  auto r = control_ask(socket_, "reload");
  ASSERT_TRUE(r.at("ok").as_bool()) << json::serialize(r);
  EXPECT_EQ(json::serialize(r.at("reload").at("applied")), R"(["rollout"])");
  EXPECT_EQ(json::serialize(r.at("reload").at("needsRestart")), R"(["listen"])");
  auto status = control_ask(socket_, "status");
  const auto& stages = status.at("rollout").at("stages").as_array();
  ASSERT_EQ(stages.size(), 1u) << json::serialize(status.at("rollout"));
  EXPECT_EQ(stages[0].at("percent").as_int64(), 10);
  EXPECT_EQ(status.at("events").as_array().back().at("command").as_string(), "reload");

  // An invalid file is refused, by the socket and by SIGHUP; the running config stays.
  {
    std::ofstream(config_) << "{\"mode\": \"sideways\"}";
  }
  auto bad = control_ask(socket_, "reload");
  EXPECT_FALSE(bad.at("ok").as_bool());
  EXPECT_NE(bad.at("error").as_string().find("running one is kept"), json::string::npos) << json::serialize(bad);
  proxy.signal(SIGHUP);
  auto refused = wait_for_event("reload refused (SIGHUP)");
  EXPECT_NE(json::serialize(refused).find("mode"), std::string::npos) << json::serialize(refused);
  EXPECT_EQ(control_ask(socket_, "status").at("rollout").at("stages").as_array().size(), 1u);

  // A good file again, by SIGHUP.
  write_config(port, R"([{"percent": 5, "hold": "1h"}, {"percent": 50, "hold": "1h"}])", 0.01);
  proxy.signal(SIGHUP);
  auto applied = wait_for_event("reload (SIGHUP)");
  EXPECT_EQ(json::serialize(applied.at("details").at("applied")), R"(["rollout"])") << json::serialize(applied);
  EXPECT_EQ(control_ask(socket_, "status").at("rollout").at("stages").as_array().size(), 2u);

  // Still serving.
  protocol::client_options co;
  co.port = port;
  auto c = protocol::client::connect(co);
  ASSERT_TRUE(c);
  EXPECT_TRUE((*c)->ping());
  proxy.stop();
}

}  // namespace
}  // namespace tandem::testing
