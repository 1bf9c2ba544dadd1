#include "backends/d1_statement.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace tandem::backends {
namespace {

using protocol::errc;
using protocol::value;

protocol::statement positional(std::string sql, std::vector<value> v) {
  protocol::statement st{std::move(sql), {}};
  st.params.positional = std::move(v);
  return st;
}

protocol::statement named(std::string sql, std::vector<std::pair<std::string, value>> v) {
  protocol::statement st{std::move(sql), {}};
  st.params.is_named = true;
  st.params.named = std::move(v);
  return st;
}

TEST(D1Statement, ExactJsonValuesStayBoundAndIntegersBecomeLiterals) {
  auto r = to_d1_statement(positional("INSERT INTO t VALUES (?, ?, ?, ?, ?)",
                                      {value{std::int64_t{42}}, value{0.5}, value{std::string("t\"x")}, value{}, value{std::int64_t{-1}}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->sql, "INSERT INTO t VALUES ((42 + 0), ?, ?, ?, (-1 + 0))") << "D1 may bind a JSON number as REAL: integers never travel as one";
  EXPECT_EQ(r->params_json, "[0.5,\"t\\\"x\",null]");
  EXPECT_EQ(r->bound, 3u);
}

TEST(D1Statement, IntegerLiteralsNameNoColumn) {
  // (2) in ORDER BY would mean the second column, where a bound 2 is a constant.
  auto r = to_d1_statement(positional("SELECT a, b FROM t ORDER BY ?", {value{std::int64_t{2}}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->sql, "SELECT a, b FROM t ORDER BY (2 + 0)");
}

TEST(D1Statement, ValuesJsonCannotCarryBecomeLiterals) {
  auto r = to_d1_statement(positional("SELECT ?, ?, ?, ?, ?, ?",
                                      {value{std::numeric_limits<std::int64_t>::max()},
                                       value{std::numeric_limits<std::int64_t>::min()}, value{std::int64_t{9007199254740993}},
                                       value{protocol::blob{std::string("\x00\xff", 2)}}, value{1.0}, value{-0.0}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->sql, "SELECT (9223372036854775807 + 0), (-9223372036854775807 - 1), (9007199254740993 + 0), "
            "(X'00FF'), (1.0), (-0.0)");
  EXPECT_EQ(r->params_json, "[]");
  EXPECT_EQ(r->bound, 0u);
  r = to_d1_statement(positional("SELECT 5-?", {value{std::int64_t{-9007199254740995}}}));
  EXPECT_EQ(r->sql, "SELECT 5-(-9007199254740995 + 0)") << "no '--' to start a comment";
  r = to_d1_statement(positional("SELECT 5-?", {value{-0.0}}));
  EXPECT_EQ(r->sql, "SELECT 5-(-0.0)") << "parentheses keep '--' from starting a comment";
}

TEST(D1Statement, FloatLiteralsAreExactProductsOfPowersOfTwo) {
  EXPECT_EQ(exact_float_literal(3.0), "3.0");
  EXPECT_EQ(exact_float_literal(-9007199254740990.0), "-9007199254740990.0");
  EXPECT_EQ(exact_float_literal(9007199254740992.0), "4503599627370496.0*2.0");
  EXPECT_EQ(exact_float_literal(1e20), "6103515625000000.0*16384.0");
  EXPECT_EQ(exact_float_literal(0.5), "1.0/2.0");
  EXPECT_EQ(exact_float_literal(-2.5), "-5.0/2.0");
  EXPECT_EQ(exact_float_literal(0.1), "3602879701896397.0/4294967296.0/8388608.0");
  EXPECT_EQ(exact_float_literal(5e-324), "1.0" + [] {
    std::string s;
    for (int i = 0; i < 33; ++i) s += "/4294967296.0";
    return s + "/262144.0";
  }());
  const auto big = exact_float_literal(4.447782551545296e+135);
  EXPECT_EQ(big.find('e'), std::string::npos) << big;
  auto r = to_d1_statement(positional("SELECT ?, ?", {value{-std::numeric_limits<double>::max()}, value{0.1}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->sql.rfind("SELECT (-", 0), 0u) << r->sql;
  EXPECT_NE(r->sql.find("*4294967296.0"), std::string::npos) << r->sql;
  EXPECT_EQ(r->params_json, "[0.1]") << "a float with a fraction is exact in JSON: it stays bound";
}

TEST(D1Statement, PlaceholdersInsideStringsAndCommentsAreNotParameters) {
  auto r = to_d1_statement(positional("SELECT '?', \"?\", [?], `?` /* ? */, x'3F', ? -- ?\n", {value{std::string("v")}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->bound, 1u);
  EXPECT_EQ(r->params_json, "[\"v\"]");
}

TEST(D1Statement, NamedAndNumberedFollowSqliteNumbering) {
  auto r = to_d1_statement(named("SELECT :a, @b, :a, $c", {{"a", value{std::string("1")}}, {"@b", value{std::string("2")}}, {"c", value{std::int64_t{3}}}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->sql, "SELECT ?, ?, ?, (3 + 0)");
  EXPECT_EQ(r->params_json, "[\"1\",\"2\",\"1\"]");
  r = to_d1_statement(positional("SELECT ?2, ?1, ?2", {value{std::string("1")}, value{std::string("2")}}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->params_json, "[\"2\",\"1\",\"2\"]");
  // An array binds named parameters by their index, as SQLite does.
  r = to_d1_statement(positional("SELECT :x, ?", {value{std::string("7")}, value{std::int64_t{8}}}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->sql, "SELECT ?, (8 + 0)");
  EXPECT_EQ(r->params_json, "[\"7\"]");
}

TEST(D1Statement, ParameterErrorsMatchTheSqliteStore) {
  EXPECT_EQ(to_d1_statement(positional("SELECT ?, ?", {value{}})).error().code, errc::bad_request);
  EXPECT_EQ(to_d1_statement(positional("SELECT 1", {value{}})).error().code, errc::bad_request);
  EXPECT_EQ(to_d1_statement(named("SELECT :a", {})).error().code, errc::bad_request);
  EXPECT_EQ(to_d1_statement(named("SELECT :a", {{"a", value{}}, {"b", value{}}})).error().code, errc::bad_request);
  EXPECT_EQ(to_d1_statement(named("SELECT ?", {{"a", value{}}})).error().code, errc::bad_request);
}

TEST(D1Statement, MoreParametersThanD1BindsBecomeLiterals) {
  // An ORM's multi-row INSERT: 120 parameters, D1 binds 100. The smallest become literals.
  std::string sql = "INSERT INTO t VALUES (?, ?)";
  std::vector<value> v{value{std::string("it's 0")}, value{0.25}};
  for (int i = 1; i < 60; ++i) {
    sql += ", (?, ?)";
    v.emplace_back(std::string("it's ") + std::to_string(i));
    v.emplace_back(0.25 + i);
  }
  auto r = to_d1_statement(positional(sql, v));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->bound, 100u);
  std::vector<value> texts(120, value{std::string("it's")});
  std::string many = "SELECT ?";
  for (int i = 1; i < 120; ++i) many += ",?";
  r = to_d1_statement(positional(many, texts));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->bound, 100u);
  EXPECT_NE(r->sql.find("'it''s'"), std::string::npos) << r->sql;
  // Text that JSON-carried SQL could not hold stays bound; past the limit that is refused.
  std::vector<value> bad(101, value{std::string("\xff")});
  std::string marks = "SELECT ?";
  for (int i = 1; i < 101; ++i) marks += ",?";
  r = to_d1_statement(positional(marks, bad));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsupported);
  EXPECT_NE(r.error().message.find("100 bound parameters"), std::string::npos) << r.error().message;
}

TEST(D1Statement, D1LimitsAreCheckedBeforeSending) {
  auto r = to_d1_statement(positional("SELECT ?", {value{protocol::blob{std::string(60000, 'x')}}}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsupported);
  EXPECT_NE(r.error().message.find("100000"), std::string::npos) << r.error().message;

  r = to_d1_statement(positional("SELECT ?", {value{std::string(2000001, 'x')}}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unsupported);

  EXPECT_TRUE(to_d1_statement(positional("SELECT ?", {value{std::string(1000000, 'x')}})))
      << "large text travels as a parameter, not in the SQL";
}

TEST(D1Statement, SingleStatement) {
  EXPECT_TRUE(check_single_statement("SELECT 1"));
  EXPECT_TRUE(check_single_statement("SELECT 1; -- done\n"));
  EXPECT_TRUE(check_single_statement("SELECT ';'"));
  EXPECT_TRUE(check_single_statement("CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO u VALUES (1); DELETE FROM u; END;"));
  EXPECT_EQ(check_single_statement("SELECT 1; SELECT 2").error().code, errc::bad_request);
  EXPECT_EQ(check_single_statement("  -- nothing\n").error().code, errc::bad_request);
  EXPECT_EQ(first_keyword("/* x */ -- y\n  select 1"), "SELECT");
}

}  // namespace
}  // namespace tandem::backends
