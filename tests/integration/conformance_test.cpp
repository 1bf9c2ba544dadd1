// The protocol-level suite, run against both stores: the same requests through a real server,
// served by SQLite or by the real local D1, with one expectation for both. What PROTOCOL.md §13
// lists as still different is tested apart, and named.
#include <gtest/gtest.h>

#include <bit>
#include <chrono>
#include <cstdio>
#include <limits>

#include "tests/support/d1_support.hpp"

namespace tandem::testing {
namespace {

using protocol::errc;
using protocol::value;

std::string describe(const value& v) {
  switch (v.index()) {
    case 0: return "NULL";
    case 1: return "integer " + std::to_string(std::get<std::int64_t>(v));
    case 2: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "real %.17g (bits %016llx)", std::get<double>(v),
                    static_cast<unsigned long long>(std::bit_cast<std::uint64_t>(std::get<double>(v))));
      return buf;
    }
    case 3: return "text '" + std::get<std::string>(v) + "'";
    default: return "blob of " + std::to_string(std::get<protocol::blob>(v).bytes.size()) + " bytes";
  }
}

// Cell by cell, type and bits.
::testing::AssertionResult same_cells(const std::vector<value>& got, const std::vector<value>& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << got.size() << " cells, expected " << want.size();
  }
  for (std::size_t i = 0; i < got.size(); ++i) {
    const bool same = got[i].index() == want[i].index() &&
                      (got[i].index() != 2 || std::bit_cast<std::uint64_t>(std::get<double>(got[i])) ==
                                                  std::bit_cast<std::uint64_t>(std::get<double>(want[i]))) &&
                      (got[i].index() == 2 || got[i] == want[i]);
    if (!same) return ::testing::AssertionFailure() << "cell " << i << ": " << describe(got[i]) << ", expected " << describe(want[i]);
  }
  return ::testing::AssertionSuccess();
}

std::vector<value> column(const protocol::query_result& r, std::size_t k) {
  std::vector<value> out;
  for (const auto& row : r.rows) out.push_back(k < row.size() ? row[k] : value{std::string("<missing>")});
  return out;
}

// Integers over the int64 range, REALs of every kind, text that looks like numbers, blobs, NULL.
std::vector<value> every_kind_of_value() {
  using lim = std::numeric_limits<std::int64_t>;
  using dlim = std::numeric_limits<double>;
  std::vector<value> v;
  for (std::int64_t i : {std::int64_t{0}, std::int64_t{1}, std::int64_t{-1}, std::int64_t{9007199254740992},
                         std::int64_t{9007199254740993}, std::int64_t{-9007199254740993}, lim::max(), lim::max() - 1, lim::min(),
                         lim::min() + 1})
    v.emplace_back(i);
  for (double d : {0.0, -0.0, 2.0, -2.0, 0.5, 0.1, 0.30000000000000004, 123456789.0, 9007199254740993.0 * 2, 1e20, 1e21, 1e300, -1e300,
                   9223372036854775808.0, -9223372036854775808.0, 18446744073709551616.0, dlim::max(), -dlim::max(),
                   dlim::denorm_min(), -dlim::denorm_min(), 2.2250738585072009e-308, dlim::min(), dlim::infinity(),
                   -dlim::infinity()})
    v.emplace_back(d);
  for (const char* t : {"", "Zoë 😀", "123", "9007199254740993", "Inf", "-0.0", "null"}) v.emplace_back(std::string(t));
  v.emplace_back(protocol::blob{});
  v.emplace_back(protocol::blob{std::string("\x00\x01\xfe\xff", 4)});
  v.emplace_back();
  return v;
}

class Conformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    srv_ = std::make_unique<test_server>(test_server::default_options(), make_store(GetParam(), dir_));
    client_ = srv_->connect();
    ASSERT_TRUE(client_);
  }
  bool on_d1() const { return GetParam() == "d1"; }

  protocol::query_result ok(const std::string& sql, std::vector<value> params = {}) {
    protocol::params p;
    p.positional = std::move(params);
    auto r = client_->query(sql, p);
    EXPECT_TRUE(r) << sql << ": " << (r ? "" : r.error().message);
    return r ? *r : protocol::query_result{};
  }
  std::string code(const std::string& sql, std::vector<value> params = {}) {
    protocol::params p;
    p.positional = std::move(params);
    auto r = client_->query(sql, p);
    return r ? "OK" : std::string(protocol::to_string(r.error().code));
  }

  temp_dir dir_;
  std::unique_ptr<test_server> srv_;
  std::unique_ptr<protocol::client> client_;
};

TEST_P(Conformance, CreateInsertSelect) {
  ok("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, score REAL, avatar BLOB)");
  auto ins = ok("INSERT INTO users(name, score, avatar) VALUES (?, ?, ?)",
                {value{std::string("Zoë 😀")}, value{2.5}, value{protocol::blob{std::string("\x00\x01\xfe\xff", 4)}}});
  EXPECT_EQ(ins.meta.changes, 1);
  EXPECT_EQ(ins.meta.last_row_id, 1);
  EXPECT_EQ(ins.meta.served_by, GetParam());
  auto sel = ok("SELECT id, name, score, avatar, NULL AS nul FROM users");
  ASSERT_EQ(sel.rows.size(), 1u);
  EXPECT_EQ(sel.columns, (std::vector<std::string>{"id", "name", "score", "avatar", "nul"}));
  EXPECT_EQ(sel.rows[0][0], value{std::int64_t{1}});
  EXPECT_EQ(sel.rows[0][1], value{std::string("Zoë 😀")});
  EXPECT_EQ(sel.rows[0][2], value{2.5});
  EXPECT_EQ(sel.rows[0][3], value{protocol::blob{std::string("\x00\x01\xfe\xff", 4)}});
  EXPECT_EQ(sel.rows[0][4], value{});
  auto upd = ok("UPDATE users SET score = score + 1");
  EXPECT_EQ(upd.meta.changes, 1);
}

TEST_P(Conformance, IntegersAreStoredExactly) {
  ok("CREATE TABLE n(v INTEGER)");
  const std::int64_t big = std::numeric_limits<std::int64_t>::max();
  ok("INSERT INTO n VALUES (?), (?), (?)", {value{big}, value{std::numeric_limits<std::int64_t>::min()}, value{std::int64_t{9007199254740993}}});
  auto r = ok("SELECT CAST(v AS TEXT), typeof(v) FROM n ORDER BY rowid");
  ASSERT_EQ(r.rows.size(), 3u);
  EXPECT_EQ(r.rows[0][0], value{std::string("9223372036854775807")});
  EXPECT_EQ(r.rows[1][0], value{std::string("-9223372036854775808")});
  EXPECT_EQ(r.rows[2][0], value{std::string("9007199254740993")});
  EXPECT_EQ(r.rows[0][1], value{std::string("integer")});
  auto plain = ok("SELECT v FROM n ORDER BY rowid");
  EXPECT_TRUE(same_cells(column(plain, 0), {value{big}, value{std::numeric_limits<std::int64_t>::min()}, value{std::int64_t{9007199254740993}}}));
}

// Every storage class and magnitude, stored through tandem and read back: the same cells, type
// and bits (-0.0 is not 0.0, 2.0 is not 2), whichever store answers.
TEST_P(Conformance, EveryValueRoundTripsExactly) {
  ok("CREATE TABLE v(id INTEGER PRIMARY KEY, x)");
  const auto values = every_kind_of_value();
  std::vector<protocol::statement> inserts;
  for (std::size_t i = 0; i < values.size(); ++i) {
    protocol::statement st{"INSERT INTO v(id, x) VALUES (?, ?)", {}};
    st.params.positional = {value{static_cast<std::int64_t>(i)}, values[i]};
    inserts.push_back(std::move(st));
  }
  auto stored = client_->batch(std::move(inserts));
  ASSERT_TRUE(stored) << stored.error().message;
  auto all = ok("SELECT x FROM v ORDER BY id");
  EXPECT_TRUE(all.meta.exact);
  EXPECT_TRUE(same_cells(column(all, 0), values));
  // ORDER BY and duplicate column names survive, and a parameter picks one row.
  auto desc = ok("SELECT x, id, x FROM v WHERE id >= ? ORDER BY id DESC", {value{std::int64_t{0}}});
  EXPECT_EQ(desc.columns, (std::vector<std::string>{"x", "id", "x"}));
  std::vector<value> reversed(values.rbegin(), values.rend());
  EXPECT_TRUE(same_cells(column(desc, 2), reversed));
  for (std::size_t i = 0; i < values.size(); ++i) {
    auto one = ok("SELECT * FROM v WHERE id = ?", {value{static_cast<std::int64_t>(i)}});
    ASSERT_EQ(one.rows.size(), 1u);
    EXPECT_TRUE(same_cells(one.rows[0], {value{static_cast<std::int64_t>(i)}, values[i]})) << "row " << i;
  }
  // The values as expressions, never stored; and parameters read back.
  auto lit = ok("SELECT 9223372036854775807, -9223372036854775808, 9007199254740993, 2.0, -0.0, 9e999, -9e999, "
                "5e-324, 1e300, 1e20, 4.0 * 1e300 * 1e300, X'00FF', NULL, 'Inf', ? AS p, ?",
                {value{std::int64_t{-9007199254740993}}, value{-0.0}});
  EXPECT_EQ(lit.columns.at(14), "p");
  EXPECT_EQ(lit.columns.at(15), "?");
  ASSERT_EQ(lit.rows.size(), 1u);
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(same_cells(lit.rows[0], {value{std::numeric_limits<std::int64_t>::max()}, value{std::numeric_limits<std::int64_t>::min()},
                                       value{std::int64_t{9007199254740993}}, value{2.0}, value{-0.0}, value{inf}, value{-inf},
                                       value{5e-324}, value{1e300}, value{1e20}, value{inf},
                                       value{protocol::blob{std::string("\x00\xff", 2)}}, value{}, value{std::string("Inf")},
                                       value{std::int64_t{-9007199254740993}}, value{-0.0}}));
  // The same through a PRAGMA, a VALUES and a subquery.
  auto info = ok("PRAGMA table_info(v)");
  EXPECT_EQ(info.columns, (std::vector<std::string>{"cid", "name", "type", "notnull", "dflt_value", "pk"}));
  ASSERT_EQ(info.rows.size(), 2u);
  EXPECT_TRUE(same_cells(info.rows[0], {value{std::int64_t{0}}, value{std::string("id")}, value{std::string("INTEGER")},
                                        value{std::int64_t{0}}, value{}, value{std::int64_t{1}}}));
  EXPECT_TRUE(info.meta.exact);
  auto vals = ok("VALUES (1, 2.0), (-0.0, 'x')");
  EXPECT_TRUE(same_cells(vals.rows.at(1), {value{-0.0}, value{std::string("x")}}));
  auto sub = ok("SELECT (SELECT max(x) FROM v WHERE typeof(x) = 'integer'), (SELECT x FROM v WHERE id = 12) + 0.0");
  EXPECT_TRUE(same_cells(sub.rows.at(0), {value{std::numeric_limits<std::int64_t>::max()}, value{2.0}}));
}

TEST_P(Conformance, WritesReportExactMeta) {
  ok("CREATE TABLE w(id INTEGER PRIMARY KEY, x REAL, y)");
  auto ins = ok("INSERT INTO w(id, x, y) VALUES (9223372036854775807, 2, ?)", {value{-0.0}});
  EXPECT_EQ(ins.meta.changes, 1);
  EXPECT_EQ(ins.meta.last_row_id, std::numeric_limits<std::int64_t>::max());
  EXPECT_TRUE(ins.meta.exact);
  auto ret = ok("INSERT INTO w(id, x, y) VALUES (?, ?, 9007199254740993) RETURNING id, x AS \"the x\", *, y + 0.5",
                {value{std::numeric_limits<std::int64_t>::min()}, value{1e300}});
  EXPECT_EQ(ret.meta.last_row_id, std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(ret.columns, (std::vector<std::string>{"id", "the x", "id", "x", "y", "y + 0.5"}));
  ASSERT_EQ(ret.rows.size(), 1u);
  EXPECT_TRUE(same_cells(ret.rows[0], {value{std::numeric_limits<std::int64_t>::min()}, value{1e300},
                                       value{std::numeric_limits<std::int64_t>::min()}, value{1e300},
                                       value{std::int64_t{9007199254740993}}, value{9007199254740992.0}}));
  EXPECT_TRUE(ret.meta.exact);
  auto upd = ok("UPDATE w SET y = y WHERE id > ? RETURNING y", {value{std::int64_t{0}}});
  EXPECT_EQ(upd.meta.changes, 1);
  EXPECT_TRUE(same_cells(column(upd, 0), {value{-0.0}}));
  auto del = ok("DELETE FROM w RETURNING x");
  EXPECT_EQ(del.meta.changes, 2);
  auto read = ok("SELECT count(*) FROM w");
  EXPECT_EQ(read.meta.last_row_id, 0) << "a lone read reports no rowid";
  // A batch: each write's own rowid.
  auto b = client_->batch({{"INSERT INTO w(id) VALUES (9007199254740993)", {}}, {"INSERT INTO w(id) VALUES (-9007199254740993)", {}}});
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ((*b)[0].meta.last_row_id, 9007199254740993);
  EXPECT_EQ((*b)[1].meta.last_row_id, -9007199254740993);
}

// The typed form reads each row's cells once: a value that differs per evaluation still arrives
// whole (random() decides the type here).
TEST_P(Conformance, NondeterministicCellsArriveWhole) {
  auto r = ok("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 64) "
              "SELECT CASE WHEN random() > 0 THEN 9007199254740993 ELSE 'x' END FROM n");
  EXPECT_EQ(r.rows.size(), 64u);
}

TEST_P(Conformance, NamedParameters) {
  protocol::params p;
  p.is_named = true;
  p.named = {{"a", value{std::int64_t{1}}}, {"@b", value{std::string("two")}}};
  auto r = client_->query("SELECT :a + 1, @b", p);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->rows[0][0], value{std::int64_t{2}});
  EXPECT_EQ(r->rows[0][1], value{std::string("two")});
}

TEST_P(Conformance, ErrorsHaveTheSameCodes) {
  ok("CREATE TABLE t(id INTEGER PRIMARY KEY, v NOT NULL)");
  ok("INSERT INTO t VALUES (1, 1)");
  EXPECT_EQ(code("SELEC 1"), "SQL_ERROR");
  EXPECT_EQ(code("SELECT * FROM missing"), "SQL_ERROR");
  EXPECT_EQ(code("INSERT INTO t VALUES (1, 2)"), "CONSTRAINT");
  EXPECT_EQ(code("INSERT INTO t VALUES (2, NULL)"), "CONSTRAINT");
  for (const char* refused : {"BEGIN", "COMMIT", "SAVEPOINT s", "RELEASE s", "ATTACH 'x' AS x", "VACUUM",
                              "PRAGMA foreign_keys = OFF", "CREATE TEMP TABLE tt(x)"}) {
    EXPECT_EQ(code(refused), "UNSUPPORTED") << refused;
  }
  EXPECT_EQ(code("SELECT 1; SELECT 2"), "BAD_REQUEST");
  EXPECT_EQ(code(""), "BAD_REQUEST");
  EXPECT_EQ(code("SELECT ?", {}), "BAD_REQUEST");
  EXPECT_EQ(code("SELECT 1", {value{}}), "BAD_REQUEST");
  auto r = ok("SELECT count(*) FROM t");
  EXPECT_EQ(r.rows[0][0], value{std::int64_t{1}}) << "no refused or failed statement changed anything";
}

TEST_P(Conformance, BatchIsAtomic) {
  ok("CREATE TABLE b(id INTEGER PRIMARY KEY)");
  auto r = client_->batch({{"INSERT INTO b VALUES (1)", {}}, {"INSERT INTO b VALUES (2)", {}}, {"INSERT INTO b VALUES (1)", {}}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::constraint);
  if (!on_d1()) {
    EXPECT_EQ(r.error().index, 2u);  // D1 does not say which statement failed
  }
  EXPECT_EQ(ok("SELECT count(*) FROM b").rows[0][0], value{std::int64_t{0}});
  auto good = client_->batch({{"INSERT INTO b VALUES (1)", {}}, {"INSERT INTO b VALUES (?)", {}}, {"SELECT count(*) FROM b", {}}});
  ASSERT_FALSE(good) << "the second statement lacks its parameter";
  EXPECT_EQ(good.error().code, errc::bad_request);
  EXPECT_EQ(good.error().index, 1u);
  protocol::statement second{"INSERT INTO b VALUES (?)", {}};
  second.params.positional = {value{std::int64_t{2}}};
  auto all = client_->batch({{"INSERT INTO b VALUES (1)", {}}, second, {"SELECT count(*) FROM b", {}}});
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[2].rows[0][0], value{std::int64_t{2}}) << "a batch sees its own writes";
}

TEST_P(Conformance, PipeliningKeepsOrder) {
  ok("CREATE TABLE p(n)");
  for (int i = 0; i < 30; ++i) {
    protocol::request r;
    r.kind = protocol::op::query;
    protocol::statement st{i % 2 ? "INSERT INTO p VALUES (?)" : "SELECT count(*) FROM p WHERE n < ?", {}};
    st.params.positional = {value{std::int64_t{i}}};
    r.statements.push_back(std::move(st));
    ASSERT_TRUE(client_->send(std::move(r)));
  }
  std::int64_t previous = 0;
  for (int i = 0; i < 30; ++i) {
    auto r = client_->receive();
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->ok());
    const auto id = std::stoll(r->id_json);
    EXPECT_GT(id, previous) << "responses come back in request order";
    previous = id;
  }
  EXPECT_EQ(ok("SELECT count(*) FROM p").rows[0][0], value{std::int64_t{15}});
}

// Another client (another tandem, a migration) changes D1's schema: tandem's copy of the schema,
// from which it learns the columns of `SELECT *`, is stale until D1 refuses the typed query.
TEST(ExactReads, SchemaChangedBehindTheMirror) {
  auto& d1 = local_d1::instance();
  const auto database = d1.fresh_database();
  auto a = backends::d1_store::open(d1.options(database));
  auto b = backends::d1_store::open(d1.options(database));
  ASSERT_TRUE(a && b);
  backends::exec_options client;  // not internal: the exact path
  ASSERT_TRUE(proxy::run_batch(**a, {{"CREATE TABLE t(id INTEGER PRIMARY KEY, x)", {}}, {"INSERT INTO t VALUES (1, 2.0)", {}}}, client));
  auto before = proxy::run_batch(**a, {{"SELECT * FROM t", {}}}, client);
  ASSERT_TRUE(before) << before.error().message;
  EXPECT_EQ(before->at(0).columns, (std::vector<std::string>{"id", "x"}));
  ASSERT_TRUE(proxy::run_batch(**b, {{"ALTER TABLE t ADD COLUMN y DEFAULT 9007199254740993", {}}}, client));
  auto after = proxy::run_batch(**a, {{"SELECT * FROM t", {}}}, client);
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_EQ(after->at(0).columns, (std::vector<std::string>{"id", "x", "y"}));
  ASSERT_EQ(after->at(0).rows.size(), 1u);
  EXPECT_TRUE(same_cells(after->at(0).rows[0], {value{std::int64_t{1}}, value{2.0}, value{std::int64_t{9007199254740993}}}));
}

// What D1 answers but tandem cannot put in the typed form says so.
TEST(ExactReads, WhatCannotBeTypedSaysSo) {
  temp_dir dir;
  test_server srv(test_server::default_options(), make_store("d1", dir));
  auto c = srv.connect();
  auto plan = c->query("EXPLAIN QUERY PLAN SELECT 1");
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_FALSE(plan->meta.exact) << "EXPLAIN cannot be wrapped, and its cells are numbers";
  auto text = c->query("SELECT 'only text'");
  ASSERT_TRUE(text);
  EXPECT_TRUE(text->meta.exact);
}

// dual-sqlite with every read on D1: D1's answers are SQLite's cells. A shadow read compares
// the two stores' answers (columns and rows, proxy/router.cpp); here the same reads run on both
// stores are compared cell by cell.
TEST(ExactReads, DualModeReadsFromD1AreSQLitesCells) {
  temp_dir dir;
  proxy::router_options ro;
  ro.initial = proxy::mode::dual_sqlite;
  ro.read_percent = 100;
  auto made = make_dual_router(dir, ro);
  test_server srv(test_server::default_options(), std::move(made.route));
  auto c = srv.connect();
  ASSERT_TRUE(c->query("CREATE TABLE v(id INTEGER PRIMARY KEY, x, r REAL, i INTEGER)"));
  const auto values = every_kind_of_value();
  std::vector<protocol::statement> inserts;
  for (std::size_t i = 0; i < values.size(); ++i) {
    protocol::statement st{"INSERT INTO v(id, x, r, i) VALUES (?, ?, ?, ?)", {}};
    st.params.positional = {value{static_cast<std::int64_t>(i)}, values[i], values[i], values[i]};
    inserts.push_back(std::move(st));
  }
  ASSERT_TRUE(c->batch(std::move(inserts)));
  auto rep = srv.router().replication();
  ASSERT_TRUE(rep && rep->wait_caught_up(backends::clock::now() + std::chrono::seconds(120)));
  auto all = c->query("SELECT id, x FROM v ORDER BY id");
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(all->meta.served_by, "d1");
  EXPECT_TRUE(same_cells(column(*all, 1), values));
  backends::exec_options client;  // the client's path, not tandem's internal one
  for (const char* sql : {"SELECT * FROM v ORDER BY id", "SELECT r, i, x, typeof(r), r * 2, i / 3 FROM v ORDER BY id DESC",
                          "SELECT count(*), total(i), max(r), min(x) FROM v", "PRAGMA table_info(v)",
                          "SELECT a.x, b.x FROM v a JOIN v b ON a.id = b.id + 1 ORDER BY a.id"}) {
    auto on_sqlite = proxy::run_batch(*made.sqlite, {{sql, {}}}, client);
    auto on_d1 = proxy::run_batch(*made.d1, {{sql, {}}}, client);
    ASSERT_TRUE(on_sqlite && on_d1) << sql << ": " << (on_sqlite ? on_d1.error().message : on_sqlite.error().message);
    const auto& a = on_sqlite->at(0);
    const auto& b = on_d1->at(0);
    EXPECT_EQ(a.columns, b.columns) << sql;
    ASSERT_EQ(a.rows.size(), b.rows.size()) << sql;
    for (std::size_t k = 0; k < a.rows.size(); ++k) EXPECT_TRUE(same_cells(b.rows[k], a.rows[k])) << sql << ", row " << k;
    EXPECT_TRUE(b.meta.exact) << sql;
  }
  expect_equal_stores(*made.sqlite, *made.d1);
}

INSTANTIATE_TEST_SUITE_P(Stores, Conformance, ::testing::Values("sqlite", "d1"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tandem::testing
