// D1's answers as literal JSON text, as D1 (JavaScript) writes them: every number is read.
#include <gtest/gtest.h>

#include <bit>
#include <limits>

#include "backends/d1_store.hpp"
#include "tests/backends/d1_reply_fixture.hpp"

namespace tandem::backends {
namespace {

using protocol::errc;
using protocol::value;
using namespace tandem::backends::testing;

TEST(D1Reply, EveryNumberJavaScriptWritesIsAccepted) {
  // -2^63 and 2^63 as JavaScript prints them, a whole REAL beyond 2^64, exponent forms.
  auto r = parse_d1_reply(200, reply(R"(["a","b","c","d","e","f","g"])",
                                     "[[-9223372036854776000,9223372036854776000,100000000000000000000,1e+300,-1e+21,5e-324,"
                                     "18446744073709552000]]"),
                          1, true);
  ASSERT_TRUE(r) << r.error().message;
  const auto& row = r->at(0).rows.at(0);
  EXPECT_EQ(bits(std::get<double>(row[0])), bits(-9223372036854775808.0));
  EXPECT_EQ(bits(std::get<double>(row[1])), bits(9223372036854775808.0));
  EXPECT_EQ(bits(std::get<double>(row[2])), bits(1e20));
  EXPECT_EQ(bits(std::get<double>(row[3])), bits(1e300));
  EXPECT_EQ(bits(std::get<double>(row[4])), bits(-1e21));
  EXPECT_EQ(bits(std::get<double>(row[5])), bits(5e-324));
  EXPECT_EQ(bits(std::get<double>(row[6])), bits(18446744073709551616.0));
  // Integers that fit stay exact integers.
  r = parse_d1_reply(200, reply(R"(["a","b"])", "[[9007199254740991,-9007199254740991]]"), 1, true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->at(0).rows[0][0], value{std::int64_t{9007199254740991}});
  EXPECT_EQ(r->at(0).rows[0][1], value{std::int64_t{-9007199254740991}});
}

TEST(D1Reply, MetaIntegersBeyondInt64Saturate) {
  // After inserting rowid 2^63-1, D1's meta says 9223372036854776000 (2^63 as a JS number).
  auto r = parse_d1_reply(200, reply("[]", "[]", R"("changes":1,"last_row_id":9223372036854776000)"), 1, false);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->at(0).meta.last_row_id, i64::max()) << "not -2^63";
  r = parse_d1_reply(200, reply("[]", "[]", R"("changes":1,"last_row_id":-9223372036854776000)"), 1, false);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->at(0).meta.last_row_id, i64::min());
  EXPECT_EQ(r->at(0).meta.changes, 1);
}

TEST(D1Reply, NotJsonIsStillInternal) {
  auto r = parse_d1_reply(200, "{\"success\":true,", 1, true);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::internal);
}

}  // namespace
}  // namespace tandem::backends
