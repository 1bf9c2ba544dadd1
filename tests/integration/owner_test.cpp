// One owner per SQLite file, against real `tandem serve` processes: a second instance on the
// same file exits non-zero naming the first, tools that read the file keep working while it
// runs, and a second instance started before the first exits (a deploy) waits for it, then
// serves with the same config. Waits are for conditions, each with a bound.
#include <gtest/gtest.h>

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <boost/json/serialize.hpp>

#include "tests/support/test_support.hpp"
#include "tests/support/eventually.hpp"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

class Owner : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream f(config_);
    f << "{\"mode\": \"sqlite-only\", \"listen\": {\"port\": " << port_ << "}, \"sqlite\": {\"path\": \"" << db_ << "\"},"
      << " \"admin\": {\"port\": 0}, \"control\": {\"socket\": \"" << socket_ << "\", \"state_file\": \"" << dir_.file("state.json")
      << "\"}}";
  }

  temp_dir dir_;
  std::uint16_t port_ = free_port();
  std::string db_ = dir_.file("app.db");
  std::string socket_ = dir_.file("tandem.sock");
  std::string config_ = dir_.file("tandem.json");
};

TEST_F(Owner, SecondServeOnTheSameFileExitsNamingTheFirst) {
  proxy_process first(TANDEM_BINARY, config_);
  first.start();
  ASSERT_TRUE(first.started());
  {
    protocol::client_options co;
    co.port = port_;
    auto c = protocol::client::connect(co);
    ASSERT_TRUE(c);
    ASSERT_TRUE((*c)->query("CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)"));
    ASSERT_TRUE((*c)->query("INSERT INTO t(x) VALUES ('one')"));
  }

  // Through another path to the same file (a symlinked directory): the same lock.
  const std::string alias = dir_.file("alias");
  std::filesystem::create_directory_symlink(dir_.path(), alias);
  std::ofstream(dir_.file("second.json")) << "{\"mode\": \"sqlite-only\", \"listen\": {\"port\": 0}, \"sqlite\": {\"path\": \"" << alias
                                          << "/app.db\"}, \"admin\": {\"enabled\": false}, \"control\": {\"enabled\": false}}";
  auto second = run_shell(std::string(TANDEM_BINARY) + " serve --config " + dir_.file("second.json") + " --wait-for-owner 0 2>&1");
  EXPECT_EQ(second.status, 3) << second.output;
  EXPECT_NE(second.output.find("another tandem owns the SQLite database"), std::string::npos) << second.output;
  EXPECT_NE(second.output.find("pid " + std::to_string(first.pid())), std::string::npos) << second.output;
  EXPECT_NE(second.output.find("listening on 127.0.0.1:" + std::to_string(port_)), std::string::npos) << second.output;
  EXPECT_EQ(second.output.find("tandem listening on"), std::string::npos) << second.output;
  // The lock file names the owner too.
  EXPECT_NE(read_file(db_ + ".tandem.lock").find("\"pid\":" + std::to_string(first.pid())), std::string::npos);

  // What reads the file while tandem runs still works: the control socket, backup, validate.
  EXPECT_TRUE(control_ask(socket_, "status").at("ok").as_bool());
  auto backup = run_shell(std::string(TANDEM_BINARY) + " backup sqlite:" + db_ + " --to " + dir_.file("backups") + " 2>&1");
  EXPECT_EQ(backup.status, 0) << backup.output;
  auto validate = run_shell(std::string(TANDEM_BINARY) + " validate sqlite:" + db_ + " sqlite:" + db_ + " --quick 2>&1");
  EXPECT_EQ(validate.status, 0) << validate.output;

  first.stop();
  EXPECT_EQ(read_file(db_ + ".tandem.lock"), "");  // emptied at a clean stop
}

TEST_F(Owner, AnInstanceStartedBeforeTheOldOneExitsWaitsThenServes) {
  proxy_process old_one(TANDEM_BINARY, config_);
  old_one.start();
  ASSERT_TRUE(old_one.started());

  // The new one has the same config (port, control socket): it binds them once the old one let go.
  const std::string log = dir_.file("new.log");
  proxy_process new_one(TANDEM_BINARY, config_, {"--wait-for-owner", "300"});
  new_one.set_stderr(log);
  std::thread starting([&] { new_one.start(); });
  EXPECT_TRUE(eventually("the new instance saying it is \"waiting up to 300000 ms\"",
                         [&] { return read_file(log).find("waiting up to 300000 ms") != std::string::npos; }))
      << read_file(log);
  EXPECT_NE(read_file(log).find("pid " + std::to_string(old_one.pid())), std::string::npos) << read_file(log);
  EXPECT_EQ(control_ask(socket_, "status").at("ok").as_bool(), true);  // still the old one's

  old_one.stop();
  starting.join();
  ASSERT_TRUE(new_one.started()) << read_file(log);
  protocol::client_options co;
  co.port = port_;
  auto c = protocol::client::connect(co);
  ASSERT_TRUE(c);
  EXPECT_TRUE((*c)->query("SELECT 1"));
  EXPECT_NE(read_file(db_ + ".tandem.lock").find("\"pid\":" + std::to_string(new_one.pid())), std::string::npos);
  new_one.stop();
}

}  // namespace
}  // namespace tandem::testing
