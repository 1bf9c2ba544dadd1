#include <gtest/gtest.h>

#include "protocol/client.hpp"

namespace tandem::protocol {
namespace {

TEST(ParseUrl, FullForm) {
  auto o = parse_url("tandem://db.example:7000/?token=s%2Fecret&routing_key=user-1&tls=1&tls_verify=0&timeout_ms=500");
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->host, "db.example");
  EXPECT_EQ(o->port, 7000);
  EXPECT_EQ(o->token, "s/ecret");
  EXPECT_EQ(o->routing_key, "user-1");
  EXPECT_TRUE(o->tls);
  EXPECT_FALSE(o->tls_verify);
  EXPECT_EQ(o->timeout.count(), 500);
}

TEST(ParseUrl, DefaultsAndIpv6) {
  auto o = parse_url("tandem://localhost");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->port, 6440);
  o = parse_url("tandem://[::1]:6441");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->host, "::1");
  EXPECT_EQ(o->port, 6441);
}

TEST(ParseUrl, Errors) {
  for (const char* bad : {"http://x", "tandem://", "tandem://h:0", "tandem://h:99999", "tandem://h:12a",
                          "tandem://h/?tls=maybe", "tandem://h/?colour=red", "tandem://[::1"}) {
    auto o = parse_url(bad);
    EXPECT_FALSE(o) << bad;
    if (!o) {
      EXPECT_EQ(o.error().code, errc::bad_request);
    }
  }
}

}  // namespace
}  // namespace tandem::protocol
