// The differential test: seeded random schemas and writes, sent through tandem in both dual modes
// against the real local D1, with replication paused and resumed at random points; after each
// round the two stores must be identical (every cell's type and bytes, rowids, the schema,
// AUTOINCREMENT counters) and replication must not have stopped. A write tandem refuses must be
// refused with UNSUPPORTED (the leader then has not committed it either, which the comparison
// proves). A failure names its seed:
//   TANDEM_DIFF_SEED=<seed> build-ci/tests/sameness_tests --gtest_filter='BothDualModes/Differential.*'
// replays that round alone; TANDEM_DIFF_ROUNDS and TANDEM_DIFF_WRITES make a run longer (CI runs
// the defaults below).
#include <gtest/gtest.h>

#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <map>
#include <random>
#include <set>

#include <boost/json/serialize.hpp>

#include "backends/journal.hpp"
#include "proxy/replicator.hpp"
#include "proxy/router.hpp"
#include "tests/support/d1_support.hpp"
#include "tests/support/eventually.hpp"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
using protocol::errc;
using protocol::value;

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

struct column {
  std::string name, type;
  bool unique = false;
};

struct table {
  std::string name;
  int kind = 0;  // 0 INTEGER PRIMARY KEY, 1 no declared key (rowid), 2 WITHOUT ROWID text key, 3 STRICT
  bool autoincrement = false;
  bool has_ts = false;
  std::vector<column> columns;
  std::string key() const { return kind == 1 ? "rowid" : kind == 2 ? "k" : "id"; }
};

// Everything one round does, from its seed.
class round_gen {
 public:
  explicit round_gen(std::uint64_t seed) : rng_(seed) {}

  int pick(int n) { return static_cast<int>(std::uniform_int_distribution<int>(0, n - 1)(rng_)); }
  bool chance(int percent) { return pick(100) < percent; }

  std::vector<std::string> schema(std::vector<table>& tables) {
    std::vector<std::string> out;
    const int n = 2 + pick(3);
    static const char* loose[] = {"TEXT", "NUMERIC", "REAL", "INTEGER", "BLOB", ""};
    static const char* strict[] = {"TEXT", "REAL", "INTEGER", "BLOB", "ANY"};
    static const char* defaults[] = {"(unixepoch())", "CURRENT_TIMESTAMP", "(strftime('%s'))", "(julianday('now'))", "42", "'x'",
                                     "(datetime('now', '+1 day'))"};
    for (int i = 0; i < n; ++i) {
      table t;
      t.name = "t" + std::to_string(i);
      t.kind = pick(4);
      std::string sql = "CREATE TABLE " + t.name + "(";
      if (t.kind == 0 || t.kind == 3) {
        t.autoincrement = t.kind == 0 && chance(40);
        sql += std::string("id INTEGER PRIMARY KEY") + (t.autoincrement ? " AUTOINCREMENT" : "");
      } else if (t.kind == 2) {
        sql += "k TEXT PRIMARY KEY";
      }
      const int cols = 2 + pick(4);
      for (int c = 0; c < cols; ++c) {
        column col;
        col.name = "c" + std::to_string(c);
        col.type = t.kind == 3 ? strict[pick(5)] : loose[pick(6)];
        col.unique = c == 0 && chance(30);
        if (!(t.kind == 1 && c == 0)) sql += ", ";
        sql += col.name + (col.type.empty() ? "" : " " + col.type) + (col.unique ? " UNIQUE" : "");
        t.columns.push_back(col);
      }
      if (chance(60)) {
        t.has_ts = true;
        sql += std::string(", ts ") + (t.kind == 3 ? "ANY " : "") + "DEFAULT " + defaults[pick(7)];
      }
      if (i > 0 && tables[0].kind == 0 && chance(50)) sql += ", parent INTEGER REFERENCES t0(id) ON DELETE CASCADE";
      sql += ")";
      if (t.kind == 2) sql += " WITHOUT ROWID";
      if (t.kind == 3) sql += " STRICT";
      out.push_back(sql);
      if (t.has_ts && chance(50)) {
        out.push_back("CREATE TRIGGER " + t.name + "_touch AFTER UPDATE OF " + t.columns.back().name + " ON " + t.name +
                      " BEGIN UPDATE " + t.name + " SET ts = datetime('now') WHERE " + t.key() + " = new." + t.key() + "; END");
      }
      if (chance(30)) {
        if (std::none_of(out.begin(), out.end(), [](const std::string& s) { return s.find("CREATE TABLE audit") == 0; }))
          out.push_back("CREATE TABLE audit(n INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT, at TEXT)");
        out.push_back("CREATE TRIGGER " + t.name + "_audit AFTER INSERT ON " + t.name + " BEGIN INSERT INTO audit(what, at) VALUES ('" +
                      t.name + "', " + (chance(50) ? "datetime('now')" : "'fixed'") + "); END");
      }
      tables.push_back(std::move(t));
    }
    return out;
  }

  value any_value() {
    switch (pick(6)) {
      case 0: return value{};
      case 1: {
        static const std::int64_t ints[] = {0, 1, -1, 42, 9007199254740993LL, -9007199254740993LL, std::numeric_limits<std::int64_t>::max(),
                                            std::numeric_limits<std::int64_t>::min(), 1700000000, 255};
        if (chance(30)) return value{static_cast<std::int64_t>(rng_())};
        return value{ints[pick(10)]};
      }
      case 2: {
        static const double reals[] = {0.5, -0.0, 2.0, 1e300, 5e-324, 0.1, 9007199254740992.0, 1e20, -2.5e-308, 123456.789,
                                       std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()};
        if (chance(30)) return value{std::uniform_real_distribution<double>(-1e6, 1e6)(rng_)};
        return value{reals[pick(12)]};
      }
      case 3: {
        static const char* texts[] = {"", "hello", "it's", "SELECT 1; DROP TABLE t0; --", "ünïcødé ✓ 🚀", "42", "1e5", " 7 ", "0x10",
                                      "NULL"};
        if (chance(3)) return value{std::string(150000 + pick(1000), 'w')};
        return value{std::string(texts[pick(10)])};
      }
      case 4: {
        static const std::size_t sizes[] = {0, 1, 16, 1000, 60000, 300000, 1000000, 2000000};
        std::size_t n = sizes[chance(85) ? pick(4) : chance(90) ? 4 + pick(2) : 6 + pick(2)];
        if (chance(1)) n = 2000001;  // over D1's limit: refused
        std::string b(n, '\0');
        for (auto& ch : b) ch = static_cast<char>(rng_());
        return value{protocol::blob{std::move(b)}};
      }
      default: return value{std::int64_t{pick(2)}};  // a boolean, as the codec binds it
    }
  }

  value key_value(const table& t) {
    if (t.kind == 2) return value{"k" + std::to_string(pick(40))};
    return value{std::int64_t{1 + pick(40)}};
  }

  std::mt19937_64 rng_;
};

struct tally {
  int acknowledged = 0;
  std::map<std::string, int> refused;  // by reason (the message's first words)
  int failed = 0;                      // constraint and SQL errors: the leader refused them itself
  int mode_changes = 0;                // switch-primary, or sqlite-only and back without a write
};

class Differential : public ::testing::TestWithParam<proxy::mode> {
 protected:
  static std::map<std::string, int>& all_refusals() {
    static std::map<std::string, int> r;
    return r;
  }
  static int& all_writes() {
    static int n = 0;
    return n;
  }
  static int& all_rounds() {
    static int n = 0;
    return n;
  }
  static int& all_mode_changes() {
    static int n = 0;
    return n;
  }
  static void TearDownTestSuite() {
    std::cout << "differential: " << all_rounds() << " rounds, " << all_writes() << " writes acknowledged, " << all_mode_changes()
              << " mode changes; refusals by reason:\n";
    for (const auto& [why, n] : all_refusals()) std::cout << "  " << n << "  " << why << "\n";
  }

  void run_round(std::uint64_t seed, int writes) {
    SCOPED_TRACE("replay with TANDEM_DIFF_SEED=" + std::to_string(seed) + " (mode " + std::string(proxy::to_string(GetParam())) + ")");
    temp_dir dir;
    proxy::router_options ro;
    ro.initial = GetParam();
    auto made = make_dual_router(dir, ro);
    auto* sqlite = made.sqlite;
    auto* d1 = made.d1;
    test_server srv(test_server::default_options(), std::move(made.route));
    auto c = protocol::client::connect(srv.client_options());
    ASSERT_TRUE(c);
    round_gen g(seed);
    std::vector<table> tables;
    tally t;
    auto note = [&](const protocol::error& e, const std::string& sql) {
      if (e.code == errc::unsupported) {
        // By reason: the message's opening words, numbers folded to N.
        std::string why;
        for (char ch : e.message.substr(0, e.message.find_first_of(":(", 30))) {
          if (!std::isdigit(static_cast<unsigned char>(ch))) why += ch;
          else if (why.empty() || why.back() != 'N') why += 'N';
        }
        if (why.size() > 110) why.resize(110);
        ++t.refused[why];
      } else if (e.code == errc::constraint || e.code == errc::sql_error) {
        ++t.failed;
      } else {
        ADD_FAILURE() << "unexpected " << std::string(protocol::to_string(e.code)) << " for " << sql.substr(0, 200) << ": " << e.message;
      }
    };
    // A quarter of the writes carry a witness: a row of their own in `witness`, in the same
    // atomic batch. At the end the leader holds exactly the witnesses of acknowledged writes (a
    // refused write left nothing on either store: the stores are compared too).
    std::set<std::int64_t> witnessed;
    std::int64_t witnesses = 0;
    auto send_batch = [&](std::vector<protocol::statement> sts) {
      const bool witness = g.chance(25);
      const std::int64_t n = ++witnesses;
      if (witness) sts.push_back({"INSERT INTO witness(n) VALUES (?)", {{value{n}}, {}, false}});
      auto r = (*c)->batch(sts);
      if (r) {
        ++t.acknowledged;
        if (witness) witnessed.insert(n);
      } else {
        note(r.error(), sts.empty() ? "" : sts[0].sql);
      }
    };
    auto send = [&](const std::string& sql, std::vector<value> params) {
      if (g.chance(25)) {
        protocol::statement one{sql, {}};
        one.params.positional = std::move(params);
        send_batch({std::move(one)});
        return;
      }
      protocol::params p;
      p.positional = std::move(params);
      auto r = (*c)->query(sql, p);
      if (r) ++t.acknowledged;
      else note(r.error(), sql);
    };
    for (const auto& sql : g.schema(tables)) {
      auto r = (*c)->query(sql);
      ASSERT_TRUE(r) << sql << ": " << r.error().message;
    }
    ASSERT_TRUE((*c)->query("CREATE TABLE witness(n INTEGER PRIMARY KEY)"));
    bool paused = false;
    for (int w = 0; w < writes; ++w) {
      if (g.chance(8)) {
        paused ? srv.router().resume_replication() : srv.router().pause_replication();
        paused = !paused;
      }
      if (!paused && g.chance(2)) {
        // A mode change: the leader switches (writes go on in the other direction), or SQLite
        // leads alone for a moment without a write, after which D1 goes on where it stood.
        auto& route = srv.router();
        if (route.current_mode() == proxy::mode::dual_sqlite && g.chance(50)) {
          ASSERT_TRUE(route.set_mode(proxy::mode::sqlite_only, 30s));
          ASSERT_TRUE(route.set_mode(proxy::mode::dual_sqlite, 30s));
        } else {
          auto r = route.switch_primary(60s);
          ASSERT_TRUE(r) << r.error().message;
        }
        ++t.mode_changes;
      }
      const table& tb = tables[static_cast<std::size_t>(g.pick(static_cast<int>(tables.size())))];
      const auto& col = tb.columns[static_cast<std::size_t>(g.pick(static_cast<int>(tb.columns.size())))];
      auto insert_sql = [&](int rows, std::vector<value>& params, bool with_key) {
        std::string cols, one;
        if (with_key && tb.kind != 1) {
          cols = tb.key();
          one = "?";
        }
        for (const auto& cc : tb.columns) {
          cols += (cols.empty() ? "" : ", ") + cc.name;
          one += one.empty() ? "?" : ", ?";
        }
        std::string sql = "INSERT INTO " + tb.name + " (" + cols + ") VALUES ";
        for (int r = 0; r < rows; ++r) {
          sql += (r ? ", (" : "(") + one + ")";
          if (with_key && tb.kind != 1) params.push_back(g.key_value(tb));
          for (std::size_t k = 0; k < tb.columns.size(); ++k) params.push_back(g.any_value());
        }
        return sql;
      };
      switch (g.pick(11)) {
        case 0:
        case 1: {
          std::vector<value> params;
          const bool keyed = tb.kind == 2 || g.chance(50);
          const auto sql = insert_sql(1, params, keyed);
          send(sql, std::move(params));
          break;
        }
        case 2: {  // an ORM's multi-row insert, over D1's 100 parameters
          std::vector<value> params;
          const auto sql = insert_sql(25 + g.pick(20), params, tb.kind == 2);
          send(sql, std::move(params));
          break;
        }
        case 3:
          {
            auto v = g.any_value();
            send("UPDATE " + tb.name + " SET " + col.name + " = ? WHERE " + tb.key() + " = ?", {v, g.key_value(tb)});
          }
          break;
        case 4: {
          static const char* exprs[] = {" + 1", " || 'x'", " * 2"};
          send("UPDATE " + tb.name + " SET " + col.name + " = " + col.name + exprs[g.pick(3)] + " WHERE " + tb.key() + " % 3 = ?",
               {value{std::int64_t{g.pick(3)}}});
          break;
        }
        case 5:
          send("DELETE FROM " + tb.name + " WHERE " + tb.key() + " = ?", {g.key_value(tb)});
          break;
        case 6: {  // a key deleted and used again, a unique value moved, in one batch
          std::vector<protocol::statement> b;
          const auto k = g.key_value(tb);
          const auto v = g.any_value();
          b.push_back({"DELETE FROM " + tb.name + " WHERE " + tb.key() + " = ?", {{k}, {}, false}});
          std::vector<value> params;
          protocol::statement ins{insert_sql(1, params, tb.kind != 1), {}};
          ins.params.positional = std::move(params);
          if (tb.kind != 1) ins.params.positional[0] = k;
          ins.params.positional[tb.kind != 1 ? 1 : 0] = v;
          b.push_back(std::move(ins));
          if (g.chance(50)) b.push_back({"UPDATE " + tb.name + " SET " + col.name + " = datetime('now') WHERE " + tb.key() + " = ?", {{k}, {}, false}});
          send_batch(std::move(b));
          break;
        }
        case 7: {  // an upsert
          if (tb.kind == 1) break;
          std::vector<value> params;
          auto sql = insert_sql(1, params, true);
          send(sql + " ON CONFLICT(" + tb.key() + ") DO UPDATE SET " + col.name + " = excluded." + col.name, std::move(params));
          break;
        }
        case 8: {  // RETURNING, and nondeterministic values of the statement's own
          static const char* fns[] = {"random()", "datetime('now')", "randomblob(8)", "unixepoch()", "julianday('2024-01-01')"};
          send("UPDATE " + tb.name + " SET " + col.name + " = " + fns[g.pick(5)] + " WHERE " + tb.key() + " = ? RETURNING *", {g.key_value(tb)});
          break;
        }
        case 9: {
          std::vector<value> params;
          const auto sql = insert_sql(1, params, false) + " RETURNING " + tb.key();
          send(sql, std::move(params));
          break;
        }
        case 10: {  // a batch D1 could not run atomically: refused
          if (!g.chance(10)) break;
          std::vector<protocol::statement> b(1001, protocol::statement{"DELETE FROM " + tb.name + " WHERE " + tb.key() + " IS NULL", {}});
          send_batch(std::move(b));
          break;
        }
      }
    }
    if (paused) srv.router().resume_replication();
    auto rep = srv.router().replication();
    ASSERT_TRUE(rep);
    // A refused entry will not apply by waiting: fail at once, naming it.
    EXPECT_TRUE(eventually("the follower caught up, or replication stopped", [&] {
      return rep->stopped() || rep->wait_caught_up(backends::clock::now() + 300ms);
    }, 180s, 0ms));
    ASSERT_FALSE(rep->stopped()) << "replication stopped: " << boost::json::serialize(rep->status());
    ASSERT_TRUE(rep->wait_caught_up(backends::clock::now() + 180s)) << "replication stopped: " << boost::json::serialize(rep->status());
    EXPECT_EQ(rep->last_error(), "");
    EXPECT_EQ(srv.router().metrics().verification_failures.load(), 0u);
    EXPECT_FALSE(rep->rebuild_needed()) << *rep->rebuild_needed();
    if (srv.router().current_mode() == proxy::mode::dual_sqlite) {
      EXPECT_TRUE(expect_identical_stores(*sqlite, *d1));
    } else {
      EXPECT_TRUE(expect_identical_stores(*d1, *sqlite));
    }
    std::set<std::int64_t> held;
    for (const auto& row : rows_of(*sqlite, "witness")) held.insert(std::get<std::int64_t>(row.at(0)));
    EXPECT_EQ(held, witnessed) << "the witnesses of acknowledged writes, and only theirs";
    ++all_rounds();
    all_writes() += t.acknowledged;
    all_mode_changes() += t.mode_changes;
    for (const auto& [why, n] : t.refused) all_refusals()[why] += n;
  }
};

TEST_P(Differential, RandomSchemasAndWritesLeaveTheStoresIdentical) {
  const int writes = env_int("TANDEM_DIFF_WRITES", 60);
  if (const char* s = std::getenv("TANDEM_DIFF_SEED"); s && *s) {
    run_round(std::strtoull(s, nullptr, 10), writes);
    return;
  }
  const int rounds = env_int("TANDEM_DIFF_ROUNDS", 8);
  std::uint64_t base = static_cast<std::uint64_t>(env_int("TANDEM_DIFF_BASE", 20261201));
  for (int r = 0; r < rounds && !HasFailure(); ++r) run_round(base * 100 + static_cast<std::uint64_t>(r) * 2 + (GetParam() == proxy::mode::dual_d1), writes);
}

INSTANTIATE_TEST_SUITE_P(BothDualModes, Differential, ::testing::Values(proxy::mode::dual_sqlite, proxy::mode::dual_d1),
                         [](const auto& info) { return info.param == proxy::mode::dual_sqlite ? std::string("dual_sqlite") : std::string("dual_d1"); });

}  // namespace
}  // namespace tandem::testing
