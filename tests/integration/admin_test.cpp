// The admin HTTP endpoint against a real dual-mode tandem (SQLite file + the real local D1).
#include <gtest/gtest.h>

#include <unistd.h>

#include <thread>

#include <boost/json/parse.hpp>

#include "proxy/admin.hpp"
#include "tests/support/d1_support.hpp"

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
  void start(const std::string& token = {}) {
    proxy::router_options ro;
    ro.initial = proxy::mode::dual_sqlite;
    ro.read_percent = 25;
    srv_ = std::make_unique<test_server>(test_server::default_options(), make_dual_router(dir_, ro).route);
    proxy::admin_options ao;
    ao.port = 0;
    ao.token = token;
    admin_ = std::make_unique<proxy::admin_server>(ioc_, ao, srv_->router());
    port_ = admin_->start().port();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    if (admin_) admin_->stop();
    if (thread_.joinable()) thread_.join();
  }

  temp_dir dir_;
  std::unique_ptr<test_server> srv_;
  boost::asio::io_context ioc_;
  std::unique_ptr<proxy::admin_server> admin_;
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
                           "# TYPE tandem_primary_latency_ms histogram", "tandem_primary_latency_ms_bucket{le=\"+Inf\"} 2",
                           "tandem_mode{mode=\"dual-sqlite\"} 1", "tandem_read_percent 25", "# TYPE tandem_lag_entries gauge"}) {
    EXPECT_NE(p.body.find(line), std::string::npos) << line;
  }

  auto s = get(port_, "/status");
  EXPECT_EQ(s.status, 200);
  auto st = boost::json::parse(s.body).as_object();
  EXPECT_EQ(st.at("readPercent").as_int64(), 25);
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

TEST_F(Admin, ATokenIsRequiredWhenConfigured) {
  start("s3cret");
  EXPECT_EQ(get(port_, "/status").status, 401);
  EXPECT_EQ(get(port_, "/status", "Authorization: Bearer wrong\r\n").status, 401);
  EXPECT_EQ(get(port_, "/status", "Authorization: Bearer s3cret\r\n").status, 200);
}

}  // namespace
}  // namespace tandem::testing
