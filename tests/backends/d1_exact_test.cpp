// D1's answers as literal JSON text, as D1 (JavaScript) writes them, read into cells; and the
// typed forms tandem sends so that those cells are exactly SQLite's.
#include "backends/d1_exact.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

#include "backends/d1_store.hpp"
#include "tests/backends/d1_reply_fixture.hpp"

namespace tandem::backends {
namespace {

using protocol::errc;
using protocol::value;
using namespace tandem::backends::testing;

// A typed answer, from literal JSON, back into SQLite's cells.
TEST(D1Exact, TypedCellsAreRebuiltExactly) {
  auto r = parse_d1_reply(200,
                          reply(R"(["_t","_0","_1","_2","_3","_4","_5","_6","_7","_8","_9","_10","_11"])",
                                R"([["iiirrrrrrtbn","9223372036854775807","-9223372036854775808",9007199254740992,2,"-0.0","Inf","-Inf",1e+300,)"
                                R"(100000000000000000000,"Inf",[0,255],null]])"),
                          1, true);
  ASSERT_TRUE(r) << r.error().message;
  auto plan = std::make_shared<exact_plan>();
  plan->typed = true;
  plan->read = true;
  plan->columns = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"};
  auto exact = restore_exact(std::move(*r), {plan}, false);
  ASSERT_TRUE(exact) << exact.error().message;
  const auto& q = exact->at(0);
  EXPECT_EQ(q.columns, plan->columns);
  ASSERT_EQ(q.rows.size(), 1u);
  const auto& c = q.rows[0];
  EXPECT_EQ(c[0], value{i64::max()});
  EXPECT_EQ(c[1], value{i64::min()});
  EXPECT_EQ(c[2], value{std::int64_t{9007199254740992}});
  ASSERT_TRUE(std::holds_alternative<double>(c[3])) << "a whole-number REAL stays a REAL";
  EXPECT_EQ(bits(std::get<double>(c[3])), bits(2.0));
  EXPECT_EQ(bits(std::get<double>(c[4])), bits(-0.0));
  EXPECT_EQ(std::get<double>(c[5]), std::numeric_limits<double>::infinity());
  EXPECT_EQ(std::get<double>(c[6]), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(bits(std::get<double>(c[7])), bits(1e300));
  EXPECT_EQ(bits(std::get<double>(c[8])), bits(1e20));
  EXPECT_EQ(c[9], value{std::string("Inf")}) << "text that looks like a special REAL is text";
  EXPECT_EQ(c[10], value{protocol::blob{std::string("\x00\xff", 2)}});
  EXPECT_EQ(c[11], value{});
  EXPECT_TRUE(q.meta.exact);
  EXPECT_EQ(q.meta.last_row_id, 0) << "a lone read";
}

TEST(D1Exact, MalformedTypedRowsAreInternal) {
  auto plan = std::make_shared<exact_plan>();
  plan->typed = true;
  plan->columns = {"a"};
  for (const char* rows : {R"([["i","x"]])", R"([["ii",1]])", R"([[1,1]])", R"([["r","1.5"]])", R"([["n",0]])"}) {
    auto r = parse_d1_reply(200, reply(R"(["_t","_0"])", rows), 1, true);
    ASSERT_TRUE(r) << rows;
    auto exact = restore_exact(std::move(*r), {plan}, false);
    ASSERT_FALSE(exact) << rows;
    EXPECT_EQ(exact.error().code, errc::internal);
  }
}

TEST(D1Exact, AsIsAnswersSayWhenACellMayDiffer) {
  auto as_is = std::make_shared<exact_plan>();
  auto r = parse_d1_reply(200, reply(R"(["a","b"])", R"([["x",[1]]])"), 1, true);
  ASSERT_TRUE(r);
  auto exact = restore_exact(std::move(*r), {as_is}, false);
  ASSERT_TRUE(exact);
  EXPECT_TRUE(exact->at(0).meta.exact) << "text and blobs are exact";
  for (const char* rows : {"[[1]]", "[[null]]", "[[0.5]]"}) {
    r = parse_d1_reply(200, reply(R"(["a"])", rows), 1, true);
    ASSERT_TRUE(r);
    exact = restore_exact(std::move(*r), {as_is}, false);
    ASSERT_TRUE(exact);
    EXPECT_FALSE(exact->at(0).meta.exact) << rows;
  }
}

TEST(D1Exact, CompanionGivesTheExactRowidAndLaterAnswersStay) {
  // A write, its last_insert_rowid() companion, then an unplanned answer (the journal's).
  const std::string body =
      R"({"success":true,"errors":[],"messages":[],"result":[)"
      R"({"success":true,"meta":{"changes":1,"last_row_id":9223372036854776000},"results":{"columns":[],"rows":[]}},)"
      R"({"success":true,"meta":{"changes":0,"last_row_id":9223372036854776000},"results":{"columns":["x"],"rows":[["9223372036854775807"]]}},)"
      R"({"success":true,"meta":{"changes":1,"last_row_id":7},"results":{"columns":["seq"],"rows":[[7]]}}]})";
  auto r = parse_d1_reply(200, body, 3, false);
  ASSERT_TRUE(r) << r.error().message;
  auto write = std::make_shared<exact_plan>();
  write->last_row_id = true;
  auto exact = restore_exact(std::move(*r), {write}, true);
  ASSERT_TRUE(exact) << exact.error().message;
  ASSERT_EQ(exact->size(), 2u);
  EXPECT_EQ(exact->at(0).meta.last_row_id, i64::max());
  EXPECT_EQ(exact->at(0).meta.changes, 1);
  EXPECT_TRUE(exact->at(0).meta.exact);
  EXPECT_EQ(exact->at(1).rows.at(0).at(0), value{std::int64_t{7}});
}

TEST(D1Exact, TypedForms) {
  EXPECT_EQ(*typed_query_sql("SELECT a FROM t ORDER BY a; -- done", 1, false),
            "WITH _tandem_exact(c0) AS (\nSELECT a FROM t ORDER BY a\n) SELECT substr(typeof(c0),1,1) AS _t,CASE typeof(c0) "
            "WHEN 'integer' THEN IIF(c0 BETWEEN -9007199254740992 AND 9007199254740992,c0,CAST(c0 AS TEXT)) WHEN 'real' THEN "
            "CASE WHEN c0=9e999 THEN 'Inf' WHEN c0=-9e999 THEN '-Inf' WHEN c0=0.0 AND atan2(c0,-1.0)<0.0 THEN '-0.0' ELSE c0 "
            "END ELSE c0 END AS _0 FROM _tandem_exact");
  EXPECT_NE(typed_query_sql("SELECT random()", 1, true)->find("AS MATERIALIZED ("), std::string::npos);
  EXPECT_FALSE(typed_query_sql("SELECT 1", 0, false));

  const auto ret = typed_returning_sql("INSERT INTO t(a) VALUES (?) RETURNING id, a AS \"x\", *, (a + 1) -- c", {"id", "x", "id", "a", "(a + 1)"});
  ASSERT_TRUE(ret);
  EXPECT_EQ(ret->rfind("INSERT INTO t(a) VALUES (?) RETURNING substr(typeof((id)),1,1)||substr(typeof((a)),1,1)||"
                       "substr(typeof(\"id\"),1,1)||substr(typeof(\"a\"),1,1)||substr(typeof(((a + 1))),1,1) AS _t,",
                       0),
            0u)
      << *ret;
  EXPECT_EQ(ret->find("-- c"), std::string::npos);
  EXPECT_FALSE(typed_returning_sql("UPDATE t SET a = 1 RETURNING a + ?", {"a + ?"})) << "a copied ? would bind another value";
  EXPECT_FALSE(typed_returning_sql("DELETE FROM t RETURNING random()", {"random()"}));
  EXPECT_FALSE(typed_returning_sql("DELETE FROM t", {}));
  EXPECT_FALSE(typed_returning_sql("DELETE FROM t RETURNING *, *", {"a", "a"}));

  EXPECT_EQ(*pragma_as_select("PRAGMA table_info(t)"), "SELECT * FROM pragma_table_info('t')");
  EXPECT_EQ(*pragma_as_select("pragma main.index_list(\"my \"\"t\"); "), "SELECT * FROM main.pragma_index_list('my \"t')");
  EXPECT_EQ(*pragma_as_select("PRAGMA foreign_key_check"), "SELECT * FROM pragma_foreign_key_check");
  EXPECT_EQ(*pragma_as_select("PRAGMA table_info('it''s')"), "SELECT * FROM pragma_table_info('it''s')");
  EXPECT_FALSE(pragma_as_select("PRAGMA user_version = 3"));
  EXPECT_FALSE(pragma_as_select("PRAGMA table_info(t) x"));
}

class D1Planner : public ::testing::Test {
 protected:
  void SetUp() override {
    sqlite_options o;
    o.path = ":memory:";
    auto c = sqlite_connection::open(o);
    ASSERT_TRUE(c) << c.error().message;
    shadow_ = std::move(*c);
    ASSERT_TRUE(shadow_->exec_internal("CREATE TABLE t(id INTEGER PRIMARY KEY, a, b REAL); CREATE TABLE u(id INTEGER PRIMARY KEY, a)"));
  }
  std::shared_ptr<const exact_plan> plan(const std::string& sql) {
    auto info = shadow_->inspect(sql);
    EXPECT_TRUE(info) << sql << ": " << (info ? "" : info.error().message);
    if (!info) return std::make_shared<exact_plan>();
    return planner_.plan(sql, *info, *shadow_);
  }
  std::unique_ptr<sqlite_connection> shadow_;
  exact_planner planner_;
};

TEST_F(D1Planner, QueriesTakeTheTypedFormWithTheirOwnColumnNames) {
  auto p = plan("SELECT * FROM t JOIN u USING (id)");
  EXPECT_TRUE(p->typed);
  EXPECT_TRUE(p->read);
  EXPECT_FALSE(p->last_row_id);
  EXPECT_EQ(p->columns, (std::vector<std::string>{"id", "a", "b", "a"}));
  EXPECT_EQ(p->sql.find("MATERIALIZED"), std::string::npos) << "a plain query is flattened: rows_read stays D1's";
  EXPECT_EQ(plan("SELECT * FROM t JOIN u USING (id)"), p) << "learned once per SQL text";
  EXPECT_NE(plan("SELECT a, (SELECT count(*) FROM u WHERE u.a = t.a) FROM t")->sql.find("MATERIALIZED"), std::string::npos);
  EXPECT_NE(plan("SELECT random() FROM t")->sql.find("MATERIALIZED"), std::string::npos);
  EXPECT_TRUE(plan("VALUES (1, 2)")->typed);
  EXPECT_TRUE(plan("WITH x AS (SELECT 1 AS one) SELECT one FROM x")->typed);
  auto pragma = plan("PRAGMA table_info(t)");
  EXPECT_TRUE(pragma->typed);
  EXPECT_NE(pragma->sql.find("pragma_table_info('t')"), std::string::npos);
  EXPECT_FALSE(plan("EXPLAIN SELECT 1")->typed);
  EXPECT_FALSE(plan("EXPLAIN QUERY PLAN SELECT * FROM t")->typed);
  planner_.clear();
  EXPECT_NE(plan("SELECT * FROM t JOIN u USING (id)"), p);
}

TEST_F(D1Planner, WritesGetTheirRowidAndTypedReturning) {
  auto p = plan("INSERT INTO t(a) VALUES (?)");
  EXPECT_FALSE(p->typed) << "no rows to type";
  EXPECT_TRUE(p->last_row_id);
  auto r = plan("INSERT INTO t(a) VALUES (?) RETURNING id, a AS x, *");
  EXPECT_TRUE(r->typed);
  EXPECT_EQ(r->columns, (std::vector<std::string>{"id", "x", "id", "a", "b"}));
  EXPECT_TRUE(r->last_row_id);
  EXPECT_FALSE(plan("UPDATE t SET a = 1 RETURNING a + ?")->typed);
  EXPECT_FALSE(plan("UPDATE t SET a = 1 RETURNING a x")->typed) << "an alias without AS: the typed form does not compile";
  EXPECT_TRUE(plan("DELETE FROM t WHERE id = ? RETURNING b * 2 AS \"b2\"")->typed);
}

}  // namespace
}  // namespace tandem::backends
