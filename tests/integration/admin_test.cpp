// The admin HTTP endpoint against a real dual-mode tandem (SQLite file + the real local D1).
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "proxy/admin.hpp"
#include "proxy/control.hpp"
#include "proxy/replicator.hpp"
#include "tests/support/d1_support.hpp"
#include "tests/support/eventually.hpp"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;

struct http_answer {
  int status = 0;
  std::string headers;
  std::string body;
};

// One GET over a fresh connection (Connection: close), read to EOF.
http_answer get(std::uint16_t port, const std::string& target, const std::string& extra_headers = "") {
  raw_connection c(port);
  c.send("GET " + target + " HTTP/1.1\r\nHost: tandem\r\nConnection: close\r\n" + extra_headers + "\r\n");
  std::string raw;
  char buf[4096];
  for (ssize_t n; (n = ::read(c.fd(), buf, sizeof buf)) > 0;) raw.append(buf, static_cast<std::size_t>(n));
  http_answer a;
  const auto head_end = raw.find("\r\n\r\n");
  if (raw.size() < 12 || head_end == std::string::npos) return a;
  a.status = std::stoi(raw.substr(9, 3));
  a.headers = raw.substr(0, head_end);
  a.body = raw.substr(head_end + 4);
  return a;
}

class Admin : public ::testing::Test {
 protected:
  // With `with_control`, /status answers what the control socket's `status` does (as in
  // `tandem serve`).
  void start(const std::string& token = {}, bool with_control = false, backends::sqlite_store_options so = {}) {
    proxy::router_options ro;
    ro.initial = proxy::mode::dual_sqlite;
    ro.read_percent = 25;
    srv_ = std::make_unique<test_server>(test_server::default_options(), make_dual_router(dir_, ro, {}, {}, so).route);
    proxy::admin_options ao;
    ao.port = 0;
    ao.token = token;
    admin_ = std::make_unique<proxy::admin_server>(ioc_, ao, srv_->router());
    if (with_control) {
      proxy::control_options co;
      co.socket_path = dir_.file("tandem.sock");
      co.state_path = dir_.file("state.json");
      control_ = std::make_unique<proxy::control_server>(ioc_, co, srv_->router());
      control_->start();
      admin_->set_status([this] { return control_->status(); });
    }
    port_ = admin_->start().port();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    if (admin_) admin_->stop();
    if (control_) control_->stop();
    if (thread_.joinable()) thread_.join();
  }

  temp_dir dir_;
  std::unique_ptr<test_server> srv_;
  boost::asio::io_context ioc_;
  std::unique_ptr<proxy::admin_server> admin_;
  std::unique_ptr<proxy::control_server> control_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

TEST_F(Admin, HealthMetricsAndStatus) {
  start();
  auto c = srv_->connect();
  ASSERT_TRUE(c->query("CREATE TABLE t(id INTEGER PRIMARY KEY)"));
  ASSERT_TRUE(c->query("INSERT INTO t VALUES (1)"));
  ASSERT_TRUE(srv_->router().replication()->wait_caught_up(backends::clock::now() + 60s));

  auto h = get(port_, "/health/database");
  EXPECT_EQ(h.status, 200) << h.body;
  auto doc = boost::json::parse(h.body).as_object();
  EXPECT_TRUE(doc.at("sqlite").at("ok").as_bool());
  EXPECT_TRUE(doc.at("d1").at("ok").as_bool());
  EXPECT_EQ(doc.at("dualWrite").at("mode").as_string(), "dual-sqlite");
  const auto& m = doc.at("dualWrite").at("metrics").as_object();
  for (const char* guide : {"totalWrites", "successfulDualWrites", "secondaryFailures", "verificationFailures",
                            "averagePrimaryLatency", "averageSecondaryLatency"}) {
    EXPECT_TRUE(m.contains(guide)) << guide;
  }
  EXPECT_EQ(m.at("totalWrites").to_number<std::int64_t>(), 2);

  auto p = get(port_, "/metrics");
  EXPECT_EQ(p.status, 200);
  EXPECT_NE(p.headers.find("text/plain; version=0.0.4"), std::string::npos) << p.headers;
  for (const char* line : {"# TYPE tandem_total_writes_total counter", "tandem_total_writes_total 2",
                           "# TYPE tandem_primary_latency_seconds histogram", "tandem_primary_latency_seconds_bucket{le=\"+Inf\"} 2",
                           "tandem_mode{mode=\"dual-sqlite\"} 1", "tandem_read_percent 25", "# TYPE tandem_lag_entries gauge"}) {
    EXPECT_NE(p.body.find(line), std::string::npos) << line;
  }

  // Prometheus's own linter accepts the exposition (names, types, units, histogram shape).
  {
    const std::string file = dir_.file("metrics.txt");
    std::ofstream(file) << p.body;
    auto check = run_shell("promtool check metrics < " + file + " 2>&1");
    EXPECT_EQ(check.status, 0) << "promtool (Debian's prometheus package, scripts/setup.sh): " << check.output;
  }

  auto s = get(port_, "/status");
  EXPECT_EQ(s.status, 200);
  auto st = boost::json::parse(s.body).as_object();
  EXPECT_EQ(st.at("state").at("readPercent").as_int64(), 25);
  EXPECT_EQ(st.at("replication").at("applied").as_int64(), 2);

  EXPECT_EQ(get(port_, "/nothing").status, 404);
  raw_connection post(port_);
  post.send("POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  auto line = post.read_line();
  ASSERT_TRUE(line);
  EXPECT_NE(line->find("405"), std::string::npos) << *line;
}

TEST_F(Admin, TheFollowerDownKeepsHealth200AndSaysSo) {
  start();
  local_d1::instance().stop();
  auto h = get(port_, "/health/database");
  local_d1::instance().start();
  EXPECT_EQ(h.status, 200) << "SQLite leads, and it is healthy: " << h.body;
  auto doc = boost::json::parse(h.body).as_object();
  EXPECT_FALSE(doc.at("d1").at("ok").as_bool());
  EXPECT_FALSE(doc.at("d1").at("error").as_string().empty());
}

// An entry the follower refuses (here: D1 got a row behind tandem's back that collides with the
// leader's next insert) stops replication loudly: health, metrics, status and the dashboard's
// data name the entry, its SQL (never its values) and D1's error; `ctl skip` is the audited way
// past it.
TEST_F(Admin, AnEntryTheFollowerRefusesStopsReplicationLoudlyAndCanBeSkipped) {
  start({}, true);
  const auto sock = dir_.file("tandem.sock");
  auto c = srv_->connect();
  ASSERT_TRUE(c->query("CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE)"));
  auto rep = srv_->router().replication();
  ASSERT_TRUE(rep->wait_caught_up(backends::clock::now() + 60s));
  backends::exec_options o;
  o.internal = true;
  ASSERT_TRUE(proxy::run_batch(*srv_->router().d1(), {{"INSERT INTO u VALUES (99, 'x@example.com')", {}}}, o));
  ASSERT_TRUE(c->query("INSERT INTO u VALUES (1, ?)", {{protocol::value{std::string("x@example.com")}}, {}, false}));
  ASSERT_TRUE(c->query("INSERT INTO u VALUES (2, 'y@example.com')"));
  ASSERT_TRUE(eventually("replication stopped at the entry D1 refuses", [&] { return rep->stopped().has_value(); })) << rep->last_error();
  const auto stopped = *rep->stopped();
  EXPECT_EQ(stopped.seq, rep->applied() + 1);
  EXPECT_NE(stopped.sql.find("INSERT INTO u"), std::string::npos) << stopped.sql;
  EXPECT_EQ(stopped.sql.find("x@example.com"), std::string::npos) << "never a parameter value";
  EXPECT_NE(stopped.error.find("UNIQUE"), std::string::npos) << stopped.error;

  auto h = get(port_, "/health/database");
  EXPECT_EQ(h.status, 200) << "the leader is fine: " << h.body;
  auto doc = boost::json::parse(h.body).as_object();
  EXPECT_FALSE(doc.at("d1").at("ok").as_bool());
  EXPECT_EQ(doc.at("d1").at("replicationStoppedSeq").as_int64(), stopped.seq);
  EXPECT_NE(get(port_, "/metrics").body.find("tandem_replication_stopped_seq " + std::to_string(stopped.seq)), std::string::npos);
  auto status = control_ask(sock, "status");
  EXPECT_EQ(status.at("replication").at("stopped").at("seq").as_int64(), stopped.seq);
  EXPECT_EQ(boost::json::parse(get(port_, "/status").body).at("replication").at("stopped").at("seq").as_int64(), stopped.seq);

  EXPECT_FALSE(control_ask(sock, "skip " + std::to_string(stopped.seq + 1)).at("ok").as_bool()) << "only the stopped entry";
  EXPECT_FALSE(control_ask(sock, "skip lots").at("ok").as_bool());
  auto skipped = control_ask(sock, "skip " + std::to_string(stopped.seq));
  ASSERT_TRUE(skipped.at("ok").as_bool()) << boost::json::serialize(skipped);
  EXPECT_EQ(skipped.at("skipped").at("seq").as_int64(), stopped.seq);
  ASSERT_TRUE(rep->wait_caught_up(backends::clock::now() + 60s)) << rep->last_error();
  EXPECT_FALSE(rep->stopped());
  EXPECT_EQ(srv_->router().metrics().replication_stopped_seq.load(), 0);
  EXPECT_EQ(rows_of(*srv_->router().d1(), "u").size(), 2u) << "D1 has 99 and 2; the skipped write is not there";
  auto events = control_ask(sock, "status").at("events").as_array();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().at("command").as_string(), "skip " + std::to_string(stopped.seq));
  EXPECT_EQ(events.back().at("details").at("sql").as_string(), stopped.sql);
}

// Journaling stopped (here the free-disk floor; the journal's bound works the same way): the
// write still succeeds, and health, metrics and status all say that D1 must be rebuilt and why.
TEST_F(Admin, AFollowerThatMustBeRebuiltIsUnhealthyEverywhere) {
  backends::sqlite_store_options so;
  so.min_free_disk_bytes = std::int64_t{1} << 60;
  start({}, true, so);
  auto c = srv_->connect();
  ASSERT_TRUE(c->query("CREATE TABLE t(id INTEGER PRIMARY KEY)"));
  ASSERT_TRUE(c->query("INSERT INTO t VALUES (1)"));
  EXPECT_TRUE(eventually("the replicator refuses to follow", [&] { return srv_->router().replication()->rebuild_needed().has_value(); }));
  auto h = get(port_, "/health/database");
  EXPECT_EQ(h.status, 200) << "SQLite leads and takes writes: " << h.body;
  auto doc = boost::json::parse(h.body).as_object();
  EXPECT_FALSE(doc.at("d1").at("ok").as_bool());
  EXPECT_TRUE(doc.at("d1").at("rebuildNeeded").as_bool());
  EXPECT_NE(std::string(doc.at("d1").at("error").as_string()).find("dual.min_free_disk_bytes"), std::string::npos) << h.body;
  auto p = get(port_, "/metrics");
  EXPECT_NE(p.body.find("tandem_follower_rebuild_needed 1"), std::string::npos);
  auto st = boost::json::parse(get(port_, "/status").body).as_object();
  EXPECT_NE(std::string(st.at("replication").at("rebuild").at("reason").as_string()).find("dual.min_free_disk_bytes"), std::string::npos);
  EXPECT_NE(std::string(st.at("replication").at("rebuild").at("action").as_string()).find("--via-control"), std::string::npos);
}

TEST_F(Admin, ATokenIsRequiredWhenConfigured) {
  start("s3cret");
  EXPECT_EQ(get(port_, "/status").status, 401);
  EXPECT_EQ(get(port_, "/status", "Authorization: Bearer wrong\r\n").status, 401);
  EXPECT_EQ(get(port_, "/status", "Authorization: Bearer s3cret\r\n").status, 200);
}

TEST_F(Admin, TheDashboardShowsLiveFiguresInAHeadlessBrowser) {
  const char* chromium = "/usr/bin/chromium";
  if (!std::filesystem::exists(chromium)) GTEST_SKIP() << "Debian's chromium is not installed (scripts/setup.sh installs it)";
  start({}, true);
  const std::string sock = dir_.file("tandem.sock");
  ASSERT_TRUE(control_ask(sock, "split 50").at("ok").as_bool());
  ASSERT_TRUE(control_ask(sock, "shadow 10").at("ok").as_bool());

  // Traffic while the browser watches: writes on SQLite, reads split between the stores.
  std::atomic<bool> stop{false};
  std::thread traffic([&] {
    auto c = srv_->connect();
    if (!c || !c->query("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")) return;
    for (int i = 0; !stop; ++i) {
      (void)c->query("INSERT INTO t(v) VALUES ('row " + std::to_string(i) + "')");
      (void)c->query("SELECT count(*) FROM t", {});
      auto other = srv_->connect();  // a new routing key each time: reads land on both stores
      if (other) (void)other->query("SELECT max(id) FROM t");
    }
  });
  const std::string url = "http://127.0.0.1:" + std::to_string(port_) + "/";
  const std::string flags = std::string(chromium) +
                            " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run"
                            " --user-data-dir=" + dir_.file("chromium") + " --virtual-time-budget=5000 ";
  // The page after its script polled for five (virtual) seconds.
  auto dom = run_shell(flags + "--dump-dom " + url + " 2>/dev/null");
  // And what a person sees: saved next to the test binary as an artifact.
  std::filesystem::create_directories("artifacts");
  const std::string shot = std::filesystem::absolute("artifacts/dashboard.png").string();
  std::filesystem::remove(shot);
  auto pic = run_shell(flags + "--window-size=1280,1000 --hide-scrollbars --screenshot=" + shot + " " + url + " 2>&1");
  stop = true;
  traffic.join();

  ASSERT_EQ(dom.status, 0) << dom.output;
  const auto updates_at = dom.output.find("data-updates=\"");
  ASSERT_NE(updates_at, std::string::npos) << "the page never got /status: " << dom.output.substr(0, 2000);
  EXPECT_GE(std::stoi(dom.output.substr(updates_at + 14)), 2) << "polled once only";
  EXPECT_NE(dom.output.find("id=\"mode\">dual-sqlite<"), std::string::npos);
  EXPECT_NE(dom.output.find("id=\"split\">50%<"), std::string::npos);
  EXPECT_NE(dom.output.find("split 50"), std::string::npos) << "the operator event is listed";
  EXPECT_NE(dom.output.find("live · updated"), std::string::npos);
  // Writes/s is a figure, not the placeholder, once two polls have a difference.
  const auto writes_at = dom.output.find("id=\"writes\">");
  ASSERT_NE(writes_at, std::string::npos);
  EXPECT_NE(dom.output.substr(writes_at + 12, 1), "–") << dom.output.substr(writes_at, 40);
  EXPECT_EQ(pic.status, 0) << pic.output;
  EXPECT_TRUE(std::filesystem::exists(shot) && std::filesystem::file_size(shot) > 10000) << pic.output;
  std::cout << "dashboard screenshot: " << shot << "\n";
}

TEST_F(Admin, TheDashboardPageNeedsNoTokenButItsDataDoes) {
  start("s3cret");
  auto page = get(port_, "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.headers.find("text/html"), std::string::npos);
  EXPECT_EQ(page.body.find("http://"), std::string::npos) << "no external resources";
  EXPECT_EQ(page.body.find("https://"), std::string::npos) << "no external resources";
  EXPECT_EQ(get(port_, "/status").status, 401);
}

}  // namespace
}  // namespace tandem::testing
