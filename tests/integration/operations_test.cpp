// Operational safety against a real `tandem serve` process: secrets rotated by a reload, and a
// runtime state that is saved or refused (a restart comes back in what the last answer said).
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <boost/json/serialize.hpp>

#include "protocol/error.hpp"
#include "tests/support/test_support.hpp"

namespace tandem::testing {
namespace {

namespace json = boost::json;

void write_secret(const std::string& path, const std::string& token) {
  {
    std::ofstream f(path, std::ios::trunc);
    f << token << "\n";
  }
  ::chmod(path.c_str(), 0600);
}

// The status line of an admin HTTP answer to GET `target` with `token`.
std::string admin_get(std::uint16_t port, const std::string& target, const std::string& token) {
  raw_connection c(port);
  c.send("GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token + "\r\nConnection: close\r\n\r\n");
  auto line = c.read_line();
  if (!line) return "no answer";
  if (!line->empty() && line->back() == '\r') line->pop_back();
  return *line;
}

bool contains(const json::value& names, const std::string& name) {
  for (const auto& n : names.as_array()) {
    if (n.as_string() == name) return true;
  }
  return false;
}

class Operations : public ::testing::Test {
 protected:
  temp_dir dir_;
  std::string config_ = dir_.file("tandem.jsonc");
  std::string socket_ = dir_.file("tandem.sock");
  std::string state_ = dir_.file("state.json");
};

// Item: reload rotates secrets. Client tokens come from a file (read again at each reload) and
// from environment variables the config names; the admin token from a file.
TEST_F(Operations, ReloadRotatesClientAndAdminTokensWithoutARestart) {
  ::setenv("TANDEM_OPS_TEST_TOKEN_A", "env-token-a", 1);
  ::setenv("TANDEM_OPS_TEST_TOKEN_B", "env-token-b", 1);
  const auto port = free_port();
  const auto admin_port = free_port();
  const std::string client_file = dir_.file("client.token");
  const std::string admin_file = dir_.file("admin.token");
  auto write_config = [&](const std::string& env) {
    std::ofstream f(config_);
    f << "{\"mode\": \"sqlite-only\", \"listen\": {\"port\": " << port << "}, \"sqlite\": {\"path\": \"" << dir_.file("t.db")
      << "\"}, \"auth\": {\"token_envs\": [\"" << env << "\"], \"token_files\": [\"" << client_file << "\"]},"
      << " \"admin\": {\"port\": " << admin_port << ", \"token_file\": \"" << admin_file << "\"},"
      << " \"control\": {\"socket\": \"" << socket_ << "\", \"state_file\": \"" << state_ << "\"}}";
  };
  write_secret(client_file, "file-token-1");
  write_secret(admin_file, "admin-token-1");
  write_config("TANDEM_OPS_TEST_TOKEN_A");
  proxy_process proxy(TANDEM_BINARY, config_);
  proxy.start();
  ASSERT_TRUE(proxy.started());

  auto connect = [&](const std::string& token) {
    protocol::client_options co;
    co.port = port;
    co.token = token;
    return protocol::client::connect(co);
  };
  auto refused = [&](const std::string& token) {
    auto c = connect(token);
    return !c && c.error().code == protocol::errc::unauthorized;
  };
  auto old = connect("file-token-1");
  ASSERT_TRUE(old) << old.error().message;
  ASSERT_TRUE((*old)->query("CREATE TABLE t(id INTEGER PRIMARY KEY)"));
  EXPECT_EQ(admin_get(admin_port, "/metrics", "admin-token-1"), "HTTP/1.1 200 OK");

  // Rotation by the files and SIGHUP.
  write_secret(client_file, "file-token-2");
  write_secret(admin_file, "admin-token-2");
  proxy.signal(SIGHUP);
  auto event = wait_for_control_event(socket_, "reload (SIGHUP)");
  ASSERT_TRUE(event.contains("details")) << json::serialize(event);
  EXPECT_TRUE(contains(event.at("details").at("applied"), "auth")) << json::serialize(event);
  EXPECT_TRUE(contains(event.at("details").at("applied"), "admin.token")) << json::serialize(event);
  EXPECT_EQ(json::serialize(event.at("details").at("needsRestart")), "[]") << json::serialize(event);
  EXPECT_EQ(json::serialize(event).find("token-2"), std::string::npos) << "tokens never appear in events";

  // The connection that authenticated before keeps working until it closes.
  EXPECT_TRUE((*old)->query("INSERT INTO t VALUES (1)"));
  // A new one with the old token is refused with UNAUTHORIZED; the new token works.
  EXPECT_TRUE(refused("file-token-1"));
  auto fresh = connect("file-token-2");
  ASSERT_TRUE(fresh) << fresh.error().message;
  EXPECT_TRUE((*fresh)->query("INSERT INTO t VALUES (2)"));
  EXPECT_TRUE(connect("env-token-a")) << "the token from the environment did not change";
  // The admin token: the old one gets 401 from now on.
  EXPECT_EQ(admin_get(admin_port, "/metrics", "admin-token-1"), "HTTP/1.1 401 Unauthorized");
  EXPECT_EQ(admin_get(admin_port, "/status", "admin-token-2"), "HTTP/1.1 200 OK");

  // Rotation by the config (another variable) and `tandem ctl reload`.
  write_config("TANDEM_OPS_TEST_TOKEN_B");
  auto r = control_ask(socket_, "reload");
  ASSERT_TRUE(r.at("ok").as_bool()) << json::serialize(r);
  EXPECT_EQ(json::serialize(r.at("reload").at("applied")), R"(["auth"])") << json::serialize(r);
  EXPECT_TRUE(refused("env-token-a"));
  EXPECT_TRUE(connect("env-token-b"));
  EXPECT_TRUE((*old)->query("INSERT INTO t VALUES (3)"));

  // A token file that cannot be read refuses the reload; the tokens in force stay.
  std::filesystem::remove(client_file);
  auto bad = control_ask(socket_, "reload");
  EXPECT_FALSE(bad.at("ok").as_bool()) << json::serialize(bad);
  EXPECT_NE(std::string(bad.at("error").as_string()).find(client_file + ", which cannot be read"), std::string::npos)
      << json::serialize(bad);
  EXPECT_TRUE(connect("file-token-2"));
  proxy.stop();
}

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
