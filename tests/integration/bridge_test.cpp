// The bridge transport with D1's read replication, against the real local D1's bridge (the
// bridge Worker's own code) through a real server: every D1 read carries the newest bookmark its
// routing key and its connection brought back, writes run on the primary, tandem's own reads
// run in no session, and a follower read at a journal position carries the replicator's
// bookmark. A recording proxy in front of the bridge shows what each request carried.
// (The rest of the D1 suites run over the bridge too: ctest's *.bridge entries.)
#include <gtest/gtest.h>

#include <future>

#include "backends/d1_store.hpp"
#include "proxy/router.hpp"
#include "tests/support/d1_support.hpp"
#include "tests/support/eventually.hpp"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
using protocol::value;

// The header `name` of a raw HTTP request, or empty.
std::string header_of(const std::string& request, const std::string& name) {
  std::string lower = request.substr(0, request.find("\r\n\r\n"));
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto at = lower.find("\r\n" + name + ":");
  if (at == std::string::npos) return {};
  auto begin = at + name.size() + 3;
  while (begin < request.size() && request[begin] == ' ') ++begin;
  return request.substr(begin, request.find("\r\n", begin) - begin);
}

class Bridge : public ::testing::Test {
 protected:
  backends::d1_options bridge_options(bool read_replication) {
    auto o = local_d1::instance().options(database_, proxy_.url());
    o.transport = backends::d1_transport::bridge;
    o.endpoint = proxy_.url() + "/bridge/{database_id}";
    o.read_replication = read_replication;
    return o;
  }
  void serve(proxy::mode m, int read_percent = 0) {
    std::unique_ptr<backends::sqlite_store> sqlite;
    if (m != proxy::mode::d1_only) {
      backends::sqlite_store_options so;
      so.db.path = dir_.file("bridge.db");
      auto s = backends::sqlite_store::open(so);
      ASSERT_TRUE(s) << s.error().message;
      sqlite = std::move(*s);
    }
    auto d = backends::d1_store::open(bridge_options(true));
    ASSERT_TRUE(d) << d.error().message;
    d1_ = d->get();
    proxy::router_options ro;
    ro.initial = m;
    ro.read_percent = read_percent;
    ro.replication.retry_min = 20ms;
    ro.replication.retry_max = 200ms;
    srv_ = std::make_unique<test_server>(test_server::default_options(),
                                         std::make_unique<proxy::router>(std::move(sqlite), std::move(*d), ro));
  }
  std::unique_ptr<protocol::client> client(const std::string& routing_key) {
    auto o = srv_->client_options();
    o.routing_key = routing_key;
    auto c = protocol::client::connect(o);
    EXPECT_TRUE(c);
    return c ? std::move(*c) : nullptr;
  }
  static protocol::query_result ok(protocol::client& c, const std::string& sql) {
    auto r = c.query(sql, {});
    EXPECT_TRUE(r) << sql << ": " << (r ? "" : r.error().message);
    return r ? *r : protocol::query_result{};
  }
  // The session header of the last request to D1 whose body holds `marker`.
  std::string session_of(const std::string& marker) {
    std::string found;
    for (const auto& r : proxy_.requests()) {
      if (r.find(marker) != std::string::npos) found = header_of(r, std::string(backends::k_bookmark_header));
    }
    return found;
  }
  temp_dir dir_;
  std::string database_ = local_d1::instance().fresh_database();
  slow_http_proxy proxy_{local_d1::instance().url()};
  backends::d1_store* d1_ = nullptr;
  std::unique_ptr<test_server> srv_;
};

TEST_F(Bridge, EachKeyReadsAtLeastAtItsOwnLastWriteAndOthersReadAnyReplica) {
  serve(proxy::mode::d1_only);
  auto a = client("user-a");
  ok(*a, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
  ok(*a, "INSERT INTO t (v) VALUES ('written by a')");
  EXPECT_EQ(session_of("written by a"), "first-primary");  // a write runs on the primary
  const std::string written = d1_->latest_bookmark();
  ASSERT_FALSE(written.empty()) << "the bridge answered the write with no bookmark";

  // a's next read carries (at least) the bookmark of a's write, on the same connection...
  auto read = ok(*a, "SELECT v, 'read 1' FROM t");
  ASSERT_EQ(read.rows.size(), 1u);
  EXPECT_EQ(read.rows[0][0], value{std::string("written by a")});
  EXPECT_GE(session_of("read 1"), written);
  EXPECT_NE(session_of("read 1").rfind("first-", 0), 0u) << session_of("read 1");
  // ...and says where it ran.
  ASSERT_TRUE(read.meta.served_by_primary.has_value());

  // ...and on another connection of the same key (tandem remembers the key's bookmark).
  auto a2 = client("user-a");
  ok(*a2, "SELECT v, 'read 2' FROM t");
  EXPECT_GE(session_of("read 2"), written);
  EXPECT_NE(session_of("read 2").rfind("first-", 0), 0u) << session_of("read 2");

  // A key that wrote nothing may read from any replica.
  auto b = client("user-b");
  ok(*b, "SELECT v, 'read 3' FROM t");
  EXPECT_EQ(session_of("read 3"), "first-unconstrained");
  // Once b has read, b's later reads are at least that new (monotonic reads).
  ok(*b, "SELECT v, 'read 4' FROM t");
  EXPECT_NE(session_of("read 4"), "first-unconstrained");
  EXPECT_FALSE(session_of("read 4").empty());

  // Every request to D1 is counted (d1Requests: what a REST API's rate limit would count).
  EXPECT_TRUE(eventually("d1Requests counts each request the bridge received", [&] {
    return srv_->router().metrics().snapshot().at("d1Requests").as_uint64() == proxy_.requests().size();
  })) << srv_->router().metrics().snapshot().at("d1Requests").as_uint64() << " vs " << proxy_.requests().size();
}

TEST_F(Bridge, TandemsOwnReadsAndTheFollowersReadsAtAPositionAreNeverOnAStaleReplica) {
  serve(proxy::mode::dual_sqlite, 100);
  auto c = client("user-c");
  ok(*c, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
  auto w = ok(*c, "INSERT INTO t (v) VALUES ('replicated')");
  ASSERT_TRUE(eventually("the follower applied the write", [&] { return srv_->router().replication()->applied() >= w.meta.at.seq; }));
  const std::string replicated = d1_->latest_bookmark();
  ASSERT_FALSE(replicated.empty());
  // The read goes to D1 (100%), which must have applied c's write: at the replicator's bookmark.
  auto r = ok(*c, "SELECT v, 'follower read' FROM t");
  EXPECT_EQ(r.meta.served_by, "d1");
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_GE(session_of("follower read"), replicated);
  // Every request of tandem's own that reads D1 (positions, the journal) ran in no session: on
  // the primary.
  for (const auto& req : proxy_.requests()) {
    if (req.find("_tandem_applied") != std::string::npos && req.find("SELECT") != std::string::npos &&
        req.find("INSERT") == std::string::npos) {
      EXPECT_EQ(header_of(req, std::string(backends::k_bookmark_header)), "") << req.substr(0, 400);
    }
  }
}

TEST_F(Bridge, RequestsGoToTheBridgeWithItsSecretAndRestHasNoSessions) {
  serve(proxy::mode::d1_only);
  auto c = client("k");
  ok(*c, "SELECT 'over the bridge'");
  bool seen = false;
  for (const auto& req : proxy_.requests()) {
    if (req.find("over the bridge") == std::string::npos) continue;
    seen = true;
    EXPECT_EQ(req.rfind("POST /bridge/" + database_ + "/v1/query ", 0), 0u) << req.substr(0, 200);
    EXPECT_EQ(header_of(req, "authorization"), std::string("Bearer ") + k_d1_token);
  }
  EXPECT_TRUE(seen);

  auto rest = local_d1::instance().options(database_);
  rest.transport = backends::d1_transport::rest;
  rest.endpoint = local_d1::instance().url();
  rest.read_replication = true;
  auto refused = backends::d1_store::open(rest);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("needs d1.transport \"bridge\""), std::string::npos) << refused.error().message;

  // A wrong secret: the bridge refuses it and tandem says so, naming neither secret.
  auto wrong = bridge_options(false);
  wrong.api_token = "not-the-secret";
  wrong.max_attempts = 1;
  auto d = backends::d1_store::open(wrong);
  ASSERT_TRUE(d);
  std::promise<backends::outcome<protocol::query_result>> p;
  backends::exec_options o;
  o.deadline = backends::clock::now() + 30s;
  (*d)->execute({"SELECT 1", {}}, o, [&](auto r) { p.set_value(std::move(r)); });
  auto r = p.get_future().get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, protocol::errc::unavailable);
  EXPECT_NE(r.error().message.find("D1 HTTP 401"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find("not-the-secret"), std::string::npos);
}

}  // namespace
}  // namespace tandem::testing
