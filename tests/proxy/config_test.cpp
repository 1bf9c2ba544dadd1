#include "proxy/config.hpp"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <boost/json/serialize.hpp>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "backends/sqlite_store.hpp"
#include "proxy/metrics.hpp"
#include "proxy/serve.hpp"

namespace tandem::proxy {
namespace {

std::string error_of(const std::string& text) {
  try {
    parse_config(text, "test.jsonc");
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, TheExampleFileParsesToTheDefaults) {
  auto c = load_config(std::string(TANDEM_SOURCE_DIR) + "/conf/tandem.jsonc");
  const config defaults;
  EXPECT_EQ(c.mode, defaults.mode);
  EXPECT_EQ(c.listen.port, defaults.listen.port);
  EXPECT_EQ(c.sqlite.path, defaults.sqlite.path);
  EXPECT_EQ(c.sqlite.synchronous, defaults.sqlite.synchronous);
  EXPECT_EQ(c.limits.max_frame_bytes, defaults.limits.max_frame_bytes);
  EXPECT_EQ(c.limits.query_timeout, defaults.limits.query_timeout);
  EXPECT_TRUE(c.token_envs.empty());
  EXPECT_EQ(c.spin_us, defaults.spin_us);
  EXPECT_EQ(c.io_threads, defaults.io_threads);
}

TEST(Config, CommentsAndValues) {
  auto c = parse_config(R"({
    // comment
    "listen": {"host": "0.0.0.0", "port": 7000}, /* block */
    "sqlite": {"path": "x.db", "synchronous": "FULL"},
    "auth": {"token_envs": ["A", "B"]},
    "limits": {"query_timeout_ms": 250},
  })", "t");
  EXPECT_EQ(c.listen.host, "0.0.0.0");
  EXPECT_EQ(c.listen.port, 7000);
  EXPECT_EQ(c.sqlite.synchronous, "FULL");
  EXPECT_EQ(c.token_envs, (std::vector<std::string>{"A", "B"}));
  EXPECT_EQ(c.limits.query_timeout.count(), 250);
}

TEST(Config, UnknownKeyNamesKeyAndLine) {
  auto e = error_of("{\n  \"listen\": {\n    \"prot\": 1\n  }\n}");
  EXPECT_NE(e.find("test.jsonc:3"), std::string::npos) << e;
  EXPECT_NE(e.find("listen.prot"), std::string::npos) << e;
  EXPECT_NE(e.find("port"), std::string::npos) << "lists the known keys: " << e;
}

TEST(Config, WrongTypeNamesKeyAndLine) {
  auto e = error_of("{\n\"sqlite\": {\"readers\": 2},\n\"limits\": {\n  \"max_connections\": \"many\"}}");
  EXPECT_NE(e.find("test.jsonc:4"), std::string::npos) << e;
  EXPECT_NE(e.find("limits.max_connections"), std::string::npos) << e;
  EXPECT_NE(error_of("{\"sqlite\": {\"synchronous\": \"SOMETIMES\"}}").find("must be one of"), std::string::npos);
  EXPECT_NE(error_of("{\"listen\": {\"port\": 70000}}").find("between"), std::string::npos);
  EXPECT_NE(error_of("{\"auth\": {\"token_envs\": \"A\"}}").find("array"), std::string::npos);
  EXPECT_NE(error_of("{\"mode\": \"everything\"}").find("mode"), std::string::npos);
}

TEST(Config, DualSection) {
  auto c = parse_config(R"({"mode": "dual-sqlite", "dual": {"read_percent": 25, "ack": "both",
    "continue_on_follower_failure": false, "batch_entries": 50}})", "t");
  EXPECT_EQ(c.mode, "dual-sqlite");
  EXPECT_EQ(c.dual.read_percent, 25);
  EXPECT_EQ(c.dual.ack, "both");
  EXPECT_FALSE(c.dual.continue_on_follower_failure);
  EXPECT_EQ(c.dual.batch_entries, 50);
  EXPECT_NE(error_of(R"({"dual": {"read_percent": 101}})").find("dual.read_percent"), std::string::npos);
  EXPECT_NE(error_of(R"({"dual": {"ack": "follower"}})").find("must be one of leader, both"), std::string::npos);
  // A dual mode needs D1 configured.
  EXPECT_THROW(validate(c), config_error);
  c.d1.account_id = "a";
  c.d1.database_id = "d";
  EXPECT_NO_THROW(validate(c));
}

TEST(Config, RolloutSection) {
  auto c = parse_config(R"({"rollout": {"stages": [{"percent": 10, "hold": "30s"}, {"percent": 100, "hold": "7d"}],
    "auto_advance": true, "guards": {"window": "2m", "max_d1_error_rate": 0.05}}})", "t");
  ASSERT_EQ(c.rollout.stages.size(), 2u);
  EXPECT_EQ(c.rollout.stages[0].percent, 10);
  EXPECT_EQ(c.rollout.stages[0].hold, std::chrono::seconds(30));
  EXPECT_EQ(c.rollout.stages[1].hold, std::chrono::hours(24 * 7));
  EXPECT_TRUE(c.rollout.auto_advance);
  EXPECT_EQ(c.rollout.window, std::chrono::minutes(2));
  EXPECT_DOUBLE_EQ(c.rollout.max_d1_error_rate, 0.05);
  EXPECT_NE(error_of(R"({"rollout": {"stages": [{"percent": 50}, {"percent": 25}]}})").find("rise"), std::string::npos);
  EXPECT_NE(error_of(R"({"rollout": {"stages": [{"percent": 5, "hold": "soon"}]}})").find("rollout.stages[0].hold"), std::string::npos);
  EXPECT_NE(error_of(R"({"rollout": {"guards": {"max_d1_error_rate": 2}}})").find("between"), std::string::npos);
}

TEST(Config, OwnershipSection) {
  auto c = parse_config(R"({"ownership": {"lease_ms": 5000, "wait_for_owner_ms": 0}})", "t");
  EXPECT_EQ(c.ownership.lease_ms, 5000);
  EXPECT_EQ(c.ownership.wait_for_owner_ms, 0);
  EXPECT_NE(error_of(R"({"ownership": {"lease_ms": 10}})").find("ownership.lease_ms"), std::string::npos);
  EXPECT_NE(error_of(R"({"ownership": {"wait_for_owner_ms": -1}})").find("between"), std::string::npos);
  // Restarting is what applies it.
  config next = c;
  next.ownership.lease_ms = 6000;
  EXPECT_NE(boost::json::serialize(reload_into(c, next, {}).at("needsRestart")).find("ownership"), std::string::npos);
}

TEST(Config, D1TransportSection) {
  auto c = parse_config(R"({"mode": "d1-only", "d1": {"transport": "bridge", "endpoint": "https://b.example.workers.dev",
                            "token_env": "SECRET", "read_replication": true, "max_batch_statements": 50}})", "t");
  EXPECT_EQ(c.d1.transport, "bridge");
  EXPECT_TRUE(c.d1.read_replication);
  EXPECT_EQ(c.d1.max_batch_statements, 50);
  EXPECT_TRUE(c.d1.configured());  // no account id needed over the bridge
  EXPECT_NO_THROW(validate(c));
  EXPECT_FALSE(config{}.d1.configured());

  EXPECT_NE(error_of(R"({"d1": {"transport": "grpc"}})").find("expected \"rest\""), std::string::npos);
  EXPECT_NE(error_of(R"({"d1": {"max_batch_statements": 1001}})").find("d1.max_batch_statements"), std::string::npos);
  auto expect_refused = [](const std::string& text, const std::string& why) {
    auto bad = parse_config(text, "t");
    try {
      validate(bad);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const config_error& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  expect_refused(R"({"mode": "d1-only", "d1": {"transport": "bridge", "token_env": "S"}})", "set it to the bridge Worker's URL");
  expect_refused(R"({"mode": "d1-only", "d1": {"transport": "bridge", "endpoint": "https://b.example", "token_env": ""}})",
                 "d1.token_env (the variable holding its secret)");
  expect_refused(R"({"mode": "d1-only", "d1": {"account_id": "a", "database_id": "d", "read_replication": true}})",
                 "d1.read_replication needs d1.transport \"bridge\"");
  expect_refused(R"({"mode": "d1-only"})", "d1.account_id is empty");
}

TEST(Config, InvalidJsonNamesTheLine) {
  auto e = error_of("{\n\"listen\": {\n\"port\": 1,,\n}}");
  EXPECT_NE(e.find("test.jsonc:3"), std::string::npos) << e;
  EXPECT_NE(e.find("invalid JSON"), std::string::npos) << e;
}

TEST(Config, Validation) {
  config c;
  c.tls.enabled = true;
  EXPECT_THROW(validate(c), config_error);
}

// Durable by default where D1 follows or may follow: a dual mode, or D1 configured in sqlite-only
// (dual-sqlite may start at runtime). There the writer also takes D1's row limit.
TEST(Config, SqliteIsDurableAndKeepsD1sRowLimitWhereD1MayFollow) {
  config c;
  auto so = sqlite_options_of(c);
  EXPECT_EQ(so.db.synchronous, "NORMAL") << "sqlite-only without D1";
  EXPECT_FALSE(so.follower_row_limit);
  c.d1.account_id = "a";
  c.d1.database_id = "d";
  so = sqlite_options_of(c);
  EXPECT_EQ(so.db.synchronous, "FULL") << "sqlite-only with D1 configured";
  EXPECT_TRUE(so.follower_row_limit);
  c = config{};
  for (const char* m : {"dual-sqlite", "dual-d1"}) {
    c.mode = m;
    EXPECT_EQ(sqlite_options_of(c).db.synchronous, "FULL") << m;
  }
  c.sqlite.synchronous = "NORMAL";  // the operator's choice wins (the README says what it risks)
  EXPECT_EQ(sqlite_options_of(c).db.synchronous, "NORMAL");
  c.dual.max_journal_bytes = 123;
  c.dual.min_free_disk_bytes = 456;
  so = sqlite_options_of(c);
  EXPECT_EQ(so.journal_max_bytes, 123);
  EXPECT_EQ(so.min_free_disk_bytes, 456);
}

// Every metric the alert rules name is one tandem exposes, so no alert waits on a series that
// never exists.
TEST(Config, EveryMetricTheAlertRulesNameIsExposed) {
  std::ifstream in(std::string(TANDEM_SOURCE_DIR) + "/conf/prometheus/tandem-alerts.yml");
  ASSERT_TRUE(in);
  std::stringstream rules;
  rules << in.rdbuf();
  const std::string text = rules.str();
  const std::string exposed = dual_metrics{}.prometheus();
  std::set<std::string> named;
  const std::regex name(R"(\btandem_[a-z0-9_]+)");
  for (std::sregex_iterator it(text.begin(), text.end(), name), e; it != e; ++it) named.insert(it->str());
  EXPECT_GE(named.size(), 15u);
  for (std::string metric : named) {
    const auto bucket = metric.rfind("_bucket");  // a histogram's series
    if (bucket != std::string::npos && bucket + 7 == metric.size()) metric.resize(bucket);
    EXPECT_NE(exposed.find("# TYPE " + metric + " "), std::string::npos) << metric << " is named by an alert rule but not exposed";
  }
}

}  // namespace
}  // namespace tandem::proxy

TEST(Config, ReloadAppliesLogAndRolloutNamesTheRestAndRefusesInvalid) {
  using tandem::proxy::config;
  config running;
  config next = running;
  next.log.level = "debug";
  next.rollout.stages = {{10, std::chrono::hours(1)}};
  next.listen.port = 7000;
  next.dual.read_percent = 40;  // an initial value: the runtime state rules
  next.dual.batch_entries = 100;
  int rollouts_applied = 0;
  auto r = tandem::proxy::reload_into(running, next, [&](const tandem::proxy::rollout_config& rc) {
    ++rollouts_applied;
    EXPECT_EQ(rc.stages.at(0).percent, 10);
  });
  EXPECT_EQ(boost::json::serialize(r.at("applied")), R"(["log","rollout"])");
  EXPECT_EQ(boost::json::serialize(r.at("needsRestart")), R"(["listen","dual"])");
  EXPECT_EQ(r.at("ignored").as_array().size(), 1u);
  EXPECT_EQ(rollouts_applied, 1);
  EXPECT_EQ(running.log.level, "debug");
  EXPECT_EQ(running.listen.port, 6440) << "not applied, so still named at the next reload";

  config bad = running;
  bad.rollout.stages = {{20, std::chrono::hours(1)}};
  bad.dual.retry_min_ms = bad.dual.retry_max_ms + 1;  // parses, but validate() refuses it
  const config before = running;
  EXPECT_THROW(tandem::proxy::reload_into(running, bad, [&](const tandem::proxy::rollout_config&) { ++rollouts_applied; }),
               tandem::proxy::config_error);
  EXPECT_EQ(rollouts_applied, 1);
  EXPECT_TRUE(running == before);
  spdlog::set_level(spdlog::level::info);
}

TEST(Config, TokenFilesAreReadAgainAtReloadAndRefuseIt) {
  using namespace tandem::proxy;
  auto c = parse_config(R"({"auth": {"token_files": ["/run/a.token"]}, "admin": {"token_file": "/run/admin.token"}})", "test.jsonc");
  EXPECT_EQ(c.token_files, std::vector<std::string>{"/run/a.token"});
  EXPECT_EQ(c.admin.token_file, "/run/admin.token");
  c.admin.token_env = "ADMIN_TOKEN";
  EXPECT_THROW(validate(c), config_error) << "one place for the admin token";
  EXPECT_THROW(read_token_file("/nonexistent/tandem.token", "auth.token_files[0]"), config_error);

  config running;
  config next = running;
  next.log.level = "debug";
  next.token_files = {"/run/b.token"};
  // Reading the secrets fails: nothing is applied, not even the log level.
  auto unreadable = [](const config&) -> std::vector<std::string> { throw config_error("auth.token_files[0] names /run/b.token, which cannot be read"); };
  EXPECT_THROW(reload_into(running, next, nullptr, unreadable), config_error);
  EXPECT_EQ(running.log.level, "info");
  // Read: applied (never "needs a restart"), and in force for the next reload's comparison.
  auto r = reload_into(running, next, nullptr, [](const config&) { return std::vector<std::string>{"auth"}; });
  EXPECT_EQ(boost::json::serialize(r.at("applied")), R"(["log","auth"])");
  EXPECT_EQ(boost::json::serialize(r.at("needsRestart")), "[]");
  EXPECT_EQ(running.token_files, next.token_files);
  // Without a way to apply them (no running server), a changed token source needs a restart.
  next.token_files = {"/run/c.token"};
  EXPECT_EQ(boost::json::serialize(reload_into(running, next, nullptr).at("needsRestart")), R"(["auth"])");
  spdlog::set_level(spdlog::level::info);
}
