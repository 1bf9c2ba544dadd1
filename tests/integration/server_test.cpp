// The server over real sockets: protocol conformance, bad input, limits, TLS and shutdown.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <fcntl.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include "protocol/codec.hpp"
#include "tests/support/test_support.hpp"

namespace tandem::testing {
namespace {

using protocol::errc;
using protocol::value;

std::int64_t count_rows(protocol::client& c, const std::string& table) {
  auto r = c.query("SELECT count(*) FROM " + table);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  return r ? std::get<std::int64_t>(r->rows.at(0).at(0)) : -1;
}

TEST(Server, QueryBatchAndPing) {
  test_server srv;
  auto c = srv.connect();
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->ping());
  ASSERT_TRUE(c->query("CREATE TABLE t(id INTEGER PRIMARY KEY, v)"));
  protocol::params p;
  p.positional = {value{std::int64_t{9223372036854775807}}};
  auto ins = c->query("INSERT INTO t(v) VALUES (?)", p);
  ASSERT_TRUE(ins) << ins.error().message;
  EXPECT_EQ(ins->meta.changes, 1);
  EXPECT_EQ(ins->meta.last_row_id, 1);
  auto sel = c->query("SELECT v FROM t");
  ASSERT_TRUE(sel);
  EXPECT_EQ(sel->columns, std::vector<std::string>{"v"});
  EXPECT_EQ(sel->rows.at(0).at(0), value{std::int64_t{9223372036854775807}});
  EXPECT_EQ(sel->meta.served_by, "sqlite");

  auto b = c->batch({{"INSERT INTO t(v) VALUES (1)", {}}, {"INSERT INTO t(id, v) VALUES (1, 2)", {}}});
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, errc::constraint);
  EXPECT_EQ(b.error().index, 1u);
  EXPECT_EQ(count_rows(*c, "t"), 1);
}

// Each bad input gets its code, and the connection keeps working afterwards.
TEST(Server, BadInputIsAnsweredAndTheConnectionSurvives) {
  test_server srv;
  raw_connection conn(srv.port());
  conn.send("{\"id\":0,\"op\":\"query\",\"sql\":\"CREATE TABLE t(id INTEGER PRIMARY KEY)\"}\n");
  ASSERT_EQ(code_of(*conn.read_line()), "OK");
  conn.send("{\"id\":0,\"op\":\"query\",\"sql\":\"INSERT INTO t VALUES (1)\"}\n");
  ASSERT_EQ(code_of(*conn.read_line()), "OK");
  const std::pair<std::string, std::string> cases[] = {
      {"{not json", "BAD_REQUEST"},
      {"[1]", "BAD_REQUEST"},
      {"{\"op\":\"ping\"}", "BAD_REQUEST"},
      {"{\"id\":1,\"op\":\"explode\"}", "BAD_REQUEST"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":7}", "BAD_REQUEST"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"SELECT 1\",\"params\":\"x\"}", "BAD_REQUEST"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"SELECT 1\",\"extra\":1}", "BAD_REQUEST"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"SELECT '\xff'\"}", "BAD_REQUEST"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"\"}", "BAD_REQUEST"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"SELECT 1; SELECT 2\"}", "BAD_REQUEST"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"SELECT ?\",\"params\":[]}", "BAD_REQUEST"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"SELECT ?\",\"params\":[{\"base64\":\"***\"}]}", "BAD_REQUEST"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"SELECT ?\",\"params\":[99999999999999999999]}", "BAD_REQUEST"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"SELEKT 1\"}", "SQL_ERROR"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"INSERT INTO t VALUES (1)\"}", "CONSTRAINT"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"BEGIN\"}", "UNSUPPORTED"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"ATTACH 'x.db' AS x\"}", "UNSUPPORTED"},
  };
  for (const auto& [frame, code] : cases) {
    conn.send(frame + "\n");
    auto line = conn.read_line();
    ASSERT_TRUE(line) << "connection closed after " << frame;
    EXPECT_EQ(code_of(*line), code) << frame << " -> " << *line;
    conn.send("{\"id\":\"after\",\"op\":\"ping\"}\n");
    auto pong = conn.read_line();
    ASSERT_TRUE(pong) << frame;
    EXPECT_EQ(*pong, "{\"id\":\"after\",\"ok\":true,\"result\":{}}");
  }
  conn.send("{\"id\":2,\"op\":\"query\",\"sql\":\"SELECT count(*) FROM t\"}\n");
  auto r = parse_response(*conn.read_line());
  EXPECT_EQ(std::get<protocol::query_result>(std::get<protocol::success>(r.body)).rows[0][0], value{std::int64_t{1}})
      << "nothing a bad request did changed the store";
}

TEST(Server, OversizedFrameIsRefusedAndTheConnectionClosed) {
  auto o = test_server::default_options();
  o.limits.max_frame_bytes = 4096;
  test_server srv(o);
  raw_connection conn(srv.port());
  conn.send("{\"id\":1,\"op\":\"query\",\"sql\":\"SELECT '" + std::string(5000, 'x') + "'\"}\n");
  auto line = conn.read_line();
  ASSERT_TRUE(line);
  EXPECT_EQ(code_of(*line), "FRAME_TOO_LARGE");
  EXPECT_TRUE(conn.wait_closed());
  auto c = srv.connect();  // others are unaffected
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->ping());
}

TEST(Server, PipelinedResponsesComeBackInOrder) {
  test_server srv;
  raw_connection conn(srv.port());
  std::string burst = "{\"id\":\"c\",\"op\":\"query\",\"sql\":\"CREATE TABLE p(n)\"}\n";
  for (int i = 0; i < 200; ++i) {
    burst += "{\"id\":" + std::to_string(i) + ",\"op\":\"query\",\"sql\":\"" +
             (i % 2 ? "INSERT INTO p VALUES (?)" : "SELECT count(*) FROM p WHERE n >= ?") +
             "\",\"params\":[" + std::to_string(i) + "]}\n";
  }
  conn.send(burst);
  ASSERT_EQ(code_of(*conn.read_line()), "OK");
  for (int i = 0; i < 200; ++i) {
    auto line = conn.read_line();
    ASSERT_TRUE(line);
    auto r = parse_response(*line);
    EXPECT_EQ(r.id_json, std::to_string(i));
    ASSERT_TRUE(r.ok()) << *line;
  }
}

TEST(Server, AuthenticationWithTokens) {
  auto o = test_server::default_options();
  o.tokens = {"s3cret", "next-token"};
  test_server srv(o);

  raw_connection conn(srv.port());
  conn.send("{\"id\":1,\"op\":\"ping\"}\n");
  EXPECT_EQ(code_of(*conn.read_line()), "UNAUTHORIZED");
  conn.send("{\"id\":2,\"op\":\"hello\",\"token\":\"next-token\",\"routing_key\":\"user-9\"}\n");
  EXPECT_EQ(code_of(*conn.read_line()), "OK");
  conn.send("{\"id\":3,\"op\":\"ping\"}\n");
  EXPECT_EQ(code_of(*conn.read_line()), "OK");

  raw_connection wrong(srv.port());
  wrong.send("{\"id\":1,\"op\":\"hello\",\"token\":\"s3cre\"}\n");
  EXPECT_EQ(code_of(*wrong.read_line()), "UNAUTHORIZED");
  EXPECT_TRUE(wrong.wait_closed()) << "a wrong token ends the connection";

  auto opts = srv.client_options();
  opts.token = "s3cret";
  auto c = protocol::client::connect(opts);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE((*c)->ping());
  opts.token = "nope";
  auto bad = protocol::client::connect(opts);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, errc::unauthorized);
}

TEST(Server, ConnectionLimitAnswersOverloaded) {
  auto o = test_server::default_options();
  o.limits.max_connections = 2;
  test_server srv(o);
  auto a = srv.connect();
  auto b = srv.connect();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->ping() && b->ping());  // both sessions are counted by now
  raw_connection third(srv.port());
  auto line = third.read_line();
  ASSERT_TRUE(line);
  EXPECT_EQ(code_of(*line), "OVERLOADED");
  EXPECT_TRUE(third.wait_closed());
  EXPECT_TRUE(a->ping());
}

TEST(Server, IdleConnectionsAreClosed) {
  auto o = test_server::default_options();
  o.limits.idle_timeout = std::chrono::milliseconds(50);
  test_server srv(o);
  raw_connection conn(srv.port());
  EXPECT_TRUE(conn.wait_closed());
}

TEST(Server, SlowQueryTimesOutAndTheConnectionSurvives) {
  auto o = test_server::default_options();
  o.limits.query_timeout = std::chrono::milliseconds(50);
  test_server srv(o);
  auto c = srv.connect();
  auto r = c->query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout);
  EXPECT_TRUE(c->ping());
  EXPECT_TRUE(c->query("SELECT 1"));
}

TEST(Server, ClientThatDisconnectsMidPipelineHarmsNoOne) {
  test_server srv;
  auto c = srv.connect();
  ASSERT_TRUE(c->query("CREATE TABLE d(n)"));
  {
    raw_connection conn(srv.port());
    std::string burst;
    for (int i = 0; i < 500; ++i)
      burst += "{\"id\":" + std::to_string(i) + ",\"op\":\"query\",\"sql\":\"INSERT INTO d VALUES (1)\"}\n";
    conn.send(burst);
    conn.close();  // without reading a single response
  }
  // Every insert the server acknowledged or not, the store is consistent and others proceed.
  EXPECT_TRUE(c->ping());
  auto n = count_rows(*c, "d");
  EXPECT_GE(n, 0);
  EXPECT_LE(n, 500);
  EXPECT_TRUE(c->query("INSERT INTO d VALUES (2)"));
}

TEST(Server, SlowReaderIsThrottledNotBuffered) {
  test_server srv;
  auto c = srv.connect();
  ASSERT_TRUE(c->query("CREATE TABLE big(x)"));
  ASSERT_TRUE(c->query("INSERT INTO big SELECT zeroblob(60000) FROM (WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM r WHERE i < 20) SELECT i FROM r)"));
  raw_connection conn(srv.port());
  int rcvbuf = 4096;
  ::setsockopt(conn.fd(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  ::fcntl(conn.fd(), F_SETFL, O_NONBLOCK);
  // Requests for ~1.6 MB of results each; never read any response. The server must stop
  // reading our requests once its writes block, so our sends eventually stop being accepted.
  const std::string req = "{\"id\":1,\"op\":\"query\",\"sql\":\"SELECT x FROM big\"}\n";
  std::size_t accepted = 0;
  std::size_t blocked_in_a_row = 0;
  while (blocked_in_a_row < 1000) {
    const ssize_t n = ::send(conn.fd(), req.data(), req.size(), MSG_NOSIGNAL);
    if (n > 0) {
      accepted += static_cast<std::size_t>(n);
      blocked_in_a_row = 0;
    } else {
      ++blocked_in_a_row;
      std::this_thread::yield();
    }
    ASSERT_LT(accepted, 64u * 1024 * 1024) << "the server kept reading requests it cannot answer";
  }
  EXPECT_TRUE(c->ping()) << "other clients are served meanwhile";
}

TEST(Server, ConcurrentWritersAllLand) {
  test_server srv;
  auto setup = srv.connect();
  ASSERT_TRUE(setup->query("CREATE TABLE w(worker, n)"));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      auto c = protocol::client::connect(srv.client_options());
      if (!c) {
        ++failures;
        return;
      }
      for (int i = 0; i < 50; ++i) {
        protocol::params p;
        p.positional = {value{std::int64_t{t}}, value{std::int64_t{i}}};
        if (!(*c)->query("INSERT INTO w VALUES (?, ?)", p)) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(count_rows(*setup, "w"), 16 * 50);
}

TEST(Server, GracefulStopAnswersWhatWasReceived) {
  test_server srv;
  auto c = srv.connect();
  ASSERT_TRUE(c->query("CREATE TABLE g(n)"));
  raw_connection conn(srv.port());
  // One small write: it reaches the server as one segment, read in one go.
  std::string burst;
  for (int i = 0; i < 20; ++i)
    burst += "{\"id\":" + std::to_string(i) + ",\"op\":\"query\",\"sql\":\"INSERT INTO g VALUES (1)\"}\n";
  conn.send(burst);
  // Once the first is answered, the server holds the whole burst.
  auto first = conn.read_line();
  ASSERT_TRUE(first);
  EXPECT_EQ(code_of(*first), "OK");
  std::thread stopper([&] { srv.stop(); });
  int answered = 1;
  while (auto line = conn.read_line()) {
    EXPECT_EQ(code_of(*line), "OK") << *line;
    ++answered;
  }
  stopper.join();
  EXPECT_EQ(answered, 20) << "requests received before the stop are all answered";
}

// TLS with a self-signed certificate made for the test by the openssl command.
class TlsServer : public ::testing::Test {
 protected:
  void SetUp() override {
    cert_ = dir_.file("cert.pem");
    key_ = dir_.file("key.pem");
    const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
                            "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " + key_ + " -out " + cert_ +
                            " >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "the openssl command is needed to make a test certificate";
  }
  temp_dir dir_;
  std::string cert_, key_;
};

TEST_F(TlsServer, VerifiedConnectionWorks) {
  auto o = test_server::default_options();
  o.tls = {true, cert_, key_};
  test_server srv(o);
  auto opts = srv.client_options();
  opts.host = "localhost";
  opts.ca_file = cert_;
  auto c = protocol::client::connect(opts);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE((*c)->ping());
  auto r = (*c)->query("SELECT 'over tls'");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->rows[0][0], value{std::string("over tls")});
}

TEST_F(TlsServer, UntrustedOrMismatchedCertificateIsRefused) {
  auto o = test_server::default_options();
  o.tls = {true, cert_, key_};
  test_server srv(o);
  auto opts = srv.client_options();
  opts.host = "localhost";
  auto untrusted = protocol::client::connect(opts);  // no CA file: the self-signed cert is unknown
  ASSERT_FALSE(untrusted);
  EXPECT_EQ(untrusted.error().code, errc::unavailable);
  opts.ca_file = cert_;
  opts.host = "127.0.0.2";  // reaches the listener? no: it is bound to 127.0.0.1 only
  opts.host = "127.0.0.1";
  // The certificate names localhost and 127.0.0.1; a client expecting another name refuses it.
  protocol::client_options other = opts;
  other.host = "127.0.0.1";
  auto ok = protocol::client::connect(other);
  EXPECT_TRUE(ok) << (ok ? "" : ok.error().message);
  // Plain TCP against a TLS port gets nothing usable.
  raw_connection plain(srv.port());
  plain.send("{\"id\":1,\"op\":\"ping\"}\n");
  EXPECT_TRUE(plain.wait_closed());
}

}  // namespace
}  // namespace tandem::testing
