// Operational safety against a real `tandem serve` process: a runtime state that is saved or
// refused (a restart comes back in what the last answer said).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <boost/json/serialize.hpp>

#include "tests/support/test_support.hpp"

namespace tandem::testing {
namespace {

namespace json = boost::json;

class Operations : public ::testing::Test {
 protected:
  temp_dir dir_;
  std::string config_ = dir_.file("tandem.jsonc");
  std::string socket_ = dir_.file("tandem.sock");
  std::string state_ = dir_.file("state.json");
};

// Item: the runtime state is saved or the change is refused. A command whose state cannot be
// written is undone, so a restart (even kill -9) comes back in what the last good answer said.
TEST_F(Operations, ARestartComesBackInTheStateTheLastAnswerShowed) {
  const auto port = free_port();
  {
    std::ofstream f(config_);
    f << "{\"mode\": \"sqlite-only\", \"listen\": {\"port\": " << port << "}, \"sqlite\": {\"path\": \"" << dir_.file("t.db")
      << "\"}, \"admin\": {\"enabled\": false}, \"control\": {\"socket\": \"" << socket_ << "\", \"state_file\": \"" << state_
      << "\"}}";
  }
  auto read_percent = [&] { return control_ask(socket_, "status").at("state").at("readPercent").as_int64(); };
  proxy_process proxy(TANDEM_BINARY, config_);
  proxy.start();
  ASSERT_TRUE(proxy.started());
  ASSERT_TRUE(control_ask(socket_, "split 25").at("ok").as_bool());

  // A folder where the temporary file goes: the state file cannot be written (for root too).
  std::filesystem::create_directory(state_ + ".tmp");
  auto r = control_ask(socket_, "split 50");
  EXPECT_FALSE(r.at("ok").as_bool()) << json::serialize(r);
  EXPECT_NE(std::string(r.at("error").as_string()).find("cannot write the runtime state to " + state_), std::string::npos)
      << json::serialize(r);
  EXPECT_NE(std::string(r.at("error").as_string()).find("Is a directory"), std::string::npos) << json::serialize(r);
  EXPECT_EQ(read_percent(), 25);
  proxy.kill9();
  std::filesystem::remove(state_ + ".tmp");

  proxy.start();
  ASSERT_TRUE(proxy.started());
  EXPECT_EQ(read_percent(), 25) << "the split the last ok answer showed";
  ASSERT_TRUE(control_ask(socket_, "split 50").at("ok").as_bool());
  proxy.kill9();
  proxy.start();
  ASSERT_TRUE(proxy.started());
  EXPECT_EQ(read_percent(), 50);
  proxy.stop();
}

}  // namespace
}  // namespace tandem::testing
