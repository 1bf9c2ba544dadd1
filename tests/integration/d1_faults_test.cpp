// The D1 store under real faults: a local D1 that is stopped and restarted, an HTTP endpoint
// that answers 500 or 429, hangs or drops the connection, a bad token, a certificate that does
// not match. Each gets its documented error, no crash, no leaked connection, and recovery.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "tests/support/d1_support.hpp"

namespace tandem::testing {
namespace {

using backends::d1_store;
using protocol::errc;
using protocol::value;
using server = scripted_http_server;

backends::outcome<protocol::query_result> run(d1_store& s, const std::string& sql,
                                              std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  std::promise<backends::outcome<protocol::query_result>> p;
  backends::exec_options o;
  o.deadline = backends::clock::now() + timeout;
  s.execute({sql, {}}, o, [&p](auto r) { p.set_value(std::move(r)); });
  return p.get_future().get();
}

std::unique_ptr<d1_store> open_at(const std::string& url, std::string ca_file = {}) {
  auto o = local_d1::instance().options("00000000-0000-4000-8000-000000000000");
  o.endpoint = url;
  o.ca_file = std::move(ca_file);
  o.request_timeout = std::chrono::milliseconds(300);
  o.max_attempts = 4;
  auto s = d1_store::open(o);
  EXPECT_TRUE(s) << s.error().message;
  return std::move(*s);
}

bool is_schema(const std::string& request) { return request.find("sqlite_schema") != std::string::npos; }

const std::string k_empty_schema = server::d1_ok("[\"sql\"]", "[]");
// The answer to `SELECT 1 AS x` in the typed form the D1 store sends it in (backends/d1_exact.hpp).
const std::string k_one = server::d1_ok("[\"_t\",\"_0\"]", "[[\"i\",1]]");
// The answer to a write without rows: its result, then its last_insert_rowid() companion's.
const std::string k_written = server::http(
    200, R"({"success":true,"errors":[],"messages":[],"result":[{"success":true,"meta":{"changes":1,"last_row_id":1},"results":{"columns":[],"rows":[]}},)"
         R"({"success":true,"meta":{"changes":0,"last_row_id":1},"results":{"columns":["x"],"rows":[["1"]]}}]})");

TEST(D1Faults, ReadsAreRetriedThrough500s) {
  int failures = 0;
  server srv([&](int, const std::string& req) {
    if (is_schema(req)) return k_empty_schema;
    return failures++ < 2 ? server::http(500, R"({"success":false,"errors":[{"code":7500,"message":"internal error"}],"messages":[],"result":null})")
                          : k_one;
  });
  auto s = open_at(srv.url());
  auto r = run(*s, "SELECT 1 AS x");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->rows[0][0], value{std::int64_t{1}});
  EXPECT_EQ(failures, 3);
  EXPECT_GE(s->http().retries, 2u);
}

// An answer over the body limit is its own error, at once: not retried, not called an outage.
TEST(D1Faults, AnAnswerLargerThanTheLimitIsRefusedOnceAndPlainly) {
  int reads = 0;
  server srv([&](int, const std::string& req) {
    if (is_schema(req)) return k_empty_schema;
    ++reads;
    return server::d1_ok("[\"_t\",\"_0\"]", "[[\"t\",\"" + std::string(300000, 'x') + "\"]]");
  });
  auto o = local_d1::instance().options("00000000-0000-4000-8000-000000000000");
  o.endpoint = srv.url();
  o.max_response_bytes = 100000;
  auto s = d1_store::open(o);
  ASSERT_TRUE(s) << s.error().message;
  auto r = run(**s, "SELECT 1 AS x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, protocol::errc::unsupported) << r.error().message;
  EXPECT_NE(r.error().message.find("larger than tandem takes"), std::string::npos) << r.error().message;
  EXPECT_EQ(reads, 1);
  EXPECT_EQ(run(**s, "SELECT 1 AS x").error().code, protocol::errc::unsupported) << "the store keeps working";
}

TEST(D1Faults, AWriteIsNotRepeatedAfterA500) {
  int writes = 0;
  server srv([&](int, const std::string& req) {
    if (is_schema(req)) return server::d1_ok("[\"sql\"]", "[[\"CREATE TABLE t(x)\"]]");
    ++writes;
    return server::http(500, R"({"success":false,"errors":[{"code":7500,"message":"internal error"}],"messages":[],"result":null})");
  });
  auto s = open_at(srv.url());
  auto r = run(*s, "INSERT INTO t VALUES (1)");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_NE(r.error().message.find("outcome unknown"), std::string::npos) << r.error().message;
  EXPECT_EQ(writes, 1) << "a write that may have been applied is never sent twice";
}

TEST(D1Faults, TooManyRequestsIsRetriedForWritesToo) {
  int calls = 0;
  server srv([&](int, const std::string& req) {
    if (is_schema(req)) return server::d1_ok("[\"sql\"]", "[[\"CREATE TABLE t(x)\"]]");
    return calls++ == 0 ? server::http(429, "{}", "Retry-After: 1\r\n") : k_written;
  });
  auto s = open_at(srv.url());
  auto r = run(*s, "INSERT INTO t VALUES (1)");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(calls, 2) << "429 means D1 did not run it: safe to send again";
}

TEST(D1Faults, PersistentOverloadIsOverloaded) {
  server srv([&](int, const std::string& req) {
    if (is_schema(req)) return k_empty_schema;
    return server::http(429, "{}", "Retry-After: 0\r\n");
  });
  auto s = open_at(srv.url());
  auto r = run(*s, "SELECT 1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::overloaded);
}

TEST(D1Faults, HangingEndpointTimesOut) {
  server srv([&](int, const std::string& req) { return is_schema(req) ? k_empty_schema : std::string("HANG"); });
  auto s = open_at(srv.url());
  auto read = run(*s, "SELECT 1", std::chrono::milliseconds(1000));
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code, errc::timeout);
  auto write = run(*s, "CREATE TABLE x(y)", std::chrono::milliseconds(1000));
  ASSERT_FALSE(write);
  EXPECT_EQ(write.error().code, errc::timeout);
  EXPECT_NE(write.error().message.find("outcome unknown"), std::string::npos) << write.error().message;
}

TEST(D1Faults, DroppedConnectionMidRequest) {
  int calls = 0;
  server srv([&](int, const std::string& req) {
    if (is_schema(req)) return server::d1_ok("[\"sql\"]", "[[\"CREATE TABLE t(x)\"]]");
    return calls++ == 0 ? std::string("CLOSE") : k_one;
  });
  auto s = open_at(srv.url());
  auto w = run(*s, "INSERT INTO t VALUES (1)");
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, errc::unavailable);
  EXPECT_NE(w.error().message.find("outcome unknown"), std::string::npos) << w.error().message;
  auto r = run(*s, "SELECT 1 AS x");
  ASSERT_TRUE(r) << "reads are repeated after a drop: " << r.error().message;
}

// A server closes an idle keep-alive connection after its own timeout (the local D1 after 5 s);
// a write sent as it closes has an unknown outcome. A connection idle past max_idle is therefore
// closed and a new one opened, while one used again soon is reused.
TEST(D1Faults, APooledConnectionIdleLongerThanMaxIdleIsNotReused) {
  server srv([&](int, const std::string& req) { return is_schema(req) ? k_empty_schema : k_one; });
  auto o = local_d1::instance().options("00000000-0000-4000-8000-000000000000");
  o.endpoint = srv.url();
  o.max_idle = std::chrono::milliseconds(1000);
  auto s = d1_store::open(o);
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_TRUE(run(**s, "SELECT 1 AS x"));
  const int after_first = srv.connections();
  ASSERT_TRUE(run(**s, "SELECT 1 AS x"));
  EXPECT_EQ(srv.connections(), after_first) << "a connection used again at once is reused";
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // idle past max_idle
  ASSERT_TRUE(run(**s, "SELECT 1 AS x"));
  EXPECT_EQ(srv.connections(), after_first + 1) << "a connection idle past max_idle is replaced";
  EXPECT_LE((*s)->http().open_connections, 1u) << "the stale connection was closed, not kept";
}

TEST(D1Faults, UnreachableEndpointIsUnavailable) {
  auto s = open_at("http://127.0.0.1:1");
  auto r = run(*s, "SELECT 1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_EQ(s->http().open_connections, 0u);
}

TEST(D1Faults, WrongTokenIsRefusedWithoutLeakingIt) {
  auto& d1 = local_d1::instance();
  auto o = d1.options(d1.fresh_database());
  o.api_token = "not-the-token";
  auto s = d1_store::open(o);
  ASSERT_TRUE(s);
  auto r = run(**s, "SELECT 1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_NE(r.error().message.find("credentials"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find("not-the-token"), std::string::npos);
}

TEST(D1Faults, CertificateMustMatch) {
  temp_dir dir;
  const auto cert = dir.file("cert.pem"), key = dir.file("key.pem");
  ASSERT_EQ(std::system(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout " +
                         key + " -out " + cert + " >/dev/null 2>&1").c_str()), 0);
  server srv([&](int, const std::string& req) { return is_schema(req) ? k_empty_schema : k_one; }, cert, key);
  auto good = open_at(srv.url(), cert);  // https://localhost:PORT, CA given
  auto ok = run(*good, "SELECT 1 AS x");
  ASSERT_TRUE(ok) << ok.error().message;

  auto untrusted = open_at(srv.url());  // no CA: the self-signed certificate is not trusted
  auto r = run(*untrusted, "SELECT 1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_NE(r.error().message.find("TLS"), std::string::npos) << r.error().message;

  auto url = srv.url();
  url.replace(url.find("localhost"), 9, "127.0.0.1");  // the certificate does not name this host
  auto mismatched = open_at(url, cert);
  r = run(*mismatched, "SELECT 1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unavailable);
  EXPECT_NE(r.error().message.find("TLS"), std::string::npos) << r.error().message;
  EXPECT_EQ(mismatched->http().retries, 0u) << "a certificate that does not verify is not retried";
}

TEST(D1Faults, LocalD1StoppedAndRestarted) {
  auto& d1 = local_d1::instance();
  auto o = d1.options(d1.fresh_database());
  o.max_attempts = 2;
  auto s = d1_store::open(o);
  ASSERT_TRUE(s);
  ASSERT_TRUE(run(**s, "CREATE TABLE r(x)"));
  ASSERT_TRUE(run(**s, "INSERT INTO r VALUES (1)"));
  d1.stop();
  auto down = run(**s, "SELECT count(*) FROM r");
  ASSERT_FALSE(down);
  EXPECT_EQ(down.error().code, errc::unavailable) << down.error().message;
  d1.start();
  auto back = run(**s, "SELECT count(*) FROM r");
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->rows[0][0], value{std::int64_t{1}}) << "the data survived the restart";
  EXPECT_LE((*s)->http().open_connections, 16u);
}

}  // namespace
}  // namespace tandem::testing
