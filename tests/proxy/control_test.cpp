// The control socket's command table and parsing, and the status builder, without a socket.
#include "proxy/control.hpp"

#include <gtest/gtest.h>

#include <boost/json/serialize.hpp>

#include "backends/sqlite_store.hpp"
#include "tests/support/test_support.hpp"

namespace tandem::proxy {
namespace {

// A word the argument spec accepts: the first choice of "<a|b>", a number for "<0-100>" and
// "<seq>", the flag of "[--force]".
std::vector<std::string> sample_args(std::string_view spec) {
  if (spec.empty()) return {};
  if (spec == "<0-100>") return {"25"};
  if (spec == "<seq>") return {"7"};
  if (spec == "[--force]") return {"--force"};
  const std::string s(spec.substr(1, spec.size() - 2));
  return {s.substr(0, s.find('|'))};
}

std::string line_of(std::string_view name, const std::vector<std::string>& args) {
  std::string line(name);
  for (const auto& a : args) line += " " + a;
  return line;
}

TEST(ControlCommands, EveryCommandOfTheTableParses) {
  ASSERT_FALSE(control_commands().empty());
  for (const auto& c : control_commands()) {
    const auto args = sample_args(c.arguments);
    const auto p = parse_command(line_of(c.name, args));
    EXPECT_EQ(p.error, "") << c.name;
    EXPECT_EQ(p.name, c.name);
    EXPECT_EQ(p.args, args) << c.name;
  }
}

TEST(ControlCommands, ExtraSpacesDoNotMatter) {
  const auto p = parse_command("  split   25  ");
  EXPECT_EQ(p.name, "split");
  EXPECT_EQ(p.args, std::vector<std::string>{"25"});
}

TEST(ControlCommands, AnOptionalFlagMayBeLeftOut) {
  const auto p = parse_command("fallback");
  EXPECT_EQ(p.error, "");
  EXPECT_EQ(p.name, "fallback");
  EXPECT_TRUE(p.args.empty());
}

TEST(ControlCommands, UnknownOrMalformedLinesGetTheStableError) {
  const std::string suffix = "'; commands: " + control_commands_line();
  for (const std::string line : {"frobnicate", "split", "split 25 50", "status now", "fallback --soft", "fallback --force x",
                                 "mode", "skip", "backfill-end 1 2", "HELP"}) {
    const auto p = parse_command(line);
    EXPECT_EQ(p.name, "") << line;
    EXPECT_EQ(p.error, "unknown command or wrong arguments: '" + line + suffix) << line;
  }
  for (const std::string line : {"", "   ", "\t"}) EXPECT_EQ(parse_command(line).error, "empty command; try help");
}

TEST(ControlCommands, TheHelpLineListsEveryCommandWithItsArguments) {
  EXPECT_EQ(control_commands_line(),
            "help | status | metrics | mode <sqlite-only|dual-sqlite|dual-d1|d1-only> | split <0-100> | "
            "shadow <0-100> | pause-replication | resume-replication | switch-primary | verify <on|off> | "
            "next | prev | hold | release | fallback [--force] | reload | backfill-begin | backfill-end <seq> | skip <seq>");
  for (const auto& c : control_commands()) EXPECT_FALSE(c.help.empty()) << c.name;
}

TEST(ControlCommands, ValuesAreCheckedByTheCommandNotByTheTable) {
  // The table fixes how many words; what they say is the command's to refuse, with its own
  // message (and the state it left unchanged).
  EXPECT_EQ(parse_command("split 500").error, "");
  EXPECT_EQ(parse_command("mode sideways").error, "");
}

class StatusOf : public ::testing::Test {
 protected:
  void SetUp() override {
    backends::sqlite_store_options o;
    o.db.path = dir_.file("status.db");
    auto s = backends::sqlite_store::open(o);
    ASSERT_TRUE(s) << s.error().message;
    router_options ro;
    ro.initial = mode::sqlite_only;
    ro.read_percent = 0;
    route_ = std::make_unique<router>(std::move(*s), nullptr, ro);
  }
  void TearDown() override {
    if (route_) route_->shutdown();
  }
  testing::temp_dir dir_;
  std::unique_ptr<router> route_;
};

TEST_F(StatusOf, HoldsTheStateAndTheMetricsAndNoReplicationInASingleMode) {
  route_->set_shadow_read_percent(10);
  const auto s = status_of(*route_);
  EXPECT_TRUE(s.at("at").is_string());
  EXPECT_GT(s.at("atMs").as_int64(), 0);
  EXPECT_EQ(s.at("state").as_object(), to_json(current_state(*route_)));
  EXPECT_EQ(s.at("state").at("mode").as_string(), "sqlite-only");
  EXPECT_EQ(s.at("state").at("shadowReadPercent").as_int64(), 10);
  EXPECT_FALSE(s.contains("replication")) << boost::json::serialize(s);
  EXPECT_FALSE(s.contains("lease"));
  EXPECT_FALSE(s.contains("rollout"));
  const auto& m = s.at("metrics").as_object();
  for (const char* name : {"totalWrites", "leaderSeq", "averagePrimaryLatency", "primaryLatency"}) EXPECT_TRUE(m.contains(name)) << name;
}

TEST_F(StatusOf, TheSettingsGaugesComeFromTheRouter) {
  route_->set_shadow_read_percent(30);
  const auto& m = metrics_now(*route_);
  EXPECT_EQ(m.shadow_read_percent.load(), 30);
  EXPECT_EQ(m.mode.load(), static_cast<std::int64_t>(mode::sqlite_only));
  const std::string text = m.prometheus();
  for (const char* line : {"tandem_shadow_read_percent 30\n", "tandem_read_percent 0\n", "tandem_mode{mode=\"sqlite-only\"} 1\n",
                           "tandem_mode{mode=\"dual-sqlite\"} 0\n", "# TYPE tandem_mode gauge\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line;
  }
  EXPECT_EQ(status_of(*route_).at("metrics").at("mode").as_string(), "sqlite-only");
}

TEST(ModeNames, TheMetricsListNamesEveryModeAsTheRouterDoes) {
  for (mode m : {mode::sqlite_only, mode::dual_sqlite, mode::dual_d1, mode::d1_only}) {
    EXPECT_EQ(k_mode_names.at(static_cast<std::size_t>(m)), to_string(m));
  }
}

}  // namespace
}  // namespace tandem::proxy
