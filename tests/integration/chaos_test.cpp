// The dual-write contract under chaos: 16 clients write a mixed workload through a real `tandem
// serve` process while the local D1 is stopped and restarted three times and the proxy is killed
// with SIGKILL twice and restarted. Then, once the replicator has caught up, the two stores must
// be equal row by row; every acknowledged write present exactly once; nothing half-applied.
// Faults are paced by the clients' progress (attempted requests), never by the clock.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <boost/asio/ip/tcp.hpp>

#include "proxy/replicator.hpp"
#include "tests/support/d1_support.hpp"
#include "tests/support/eventually.hpp"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
using protocol::value;

// What one client knows about its own writes.
struct ledger {
  std::set<std::int64_t> acked;      // rows (c, n) acknowledged and not deleted since
  std::set<std::int64_t> uncertain;  // sent, answer lost (may or may not be there)
  std::int64_t increments_acked = 0;
  std::int64_t increments_sent = 0;
  std::set<std::int64_t> pairs_acked;  // batches of two rows: both or neither
};

class Chaos : public ::testing::TestWithParam<std::string> {};

TEST_P(Chaos, SixteenWritersThroughOutagesAndKills) {
  const std::string mode = GetParam();
  const bool d1_leads = mode == "dual-d1";
  temp_dir dir;
  auto& d1 = local_d1::instance();
  const std::string database = d1.fresh_database();
  const std::uint16_t port = free_port();
  const std::string db_path = dir.file("chaos.db");
  const std::string config = dir.file("tandem.json");
  {
    std::ofstream f(config);
    f << "{\"mode\": \"" << mode << "\", \"listen\": {\"port\": " << port << "}, \"admin\": {\"port\": 0}, \"control\": {\"enabled\": false},"
      << "\"sqlite\": {\"path\": \"" << db_path << "\", \"synchronous\": \"NORMAL\"},"
      << "\"d1\": {" << d1.config_members(database, "TANDEM_CHAOS_D1_TOKEN") << ", \"max_attempts\": 2, \"backoff_base_ms\": 20,"
      << " \"backoff_max_ms\": 100, \"request_timeout_ms\": 10000},"
      << "\"dual\": {\"retry_min_ms\": 20, \"retry_max_ms\": 200}}";
  }
  ::setenv("TANDEM_CHAOS_D1_TOKEN", k_d1_token, 1);
  proxy_process proxy(TANDEM_BINARY, config);
  proxy.start();
  ASSERT_TRUE(proxy.started());

  protocol::client_options co;
  co.port = port;
  co.timeout = 20s;
  {
    auto c = protocol::client::connect(co);
    ASSERT_TRUE(c);
    for (const char* ddl : {"CREATE TABLE rows_(c INTEGER, n INTEGER, v TEXT, PRIMARY KEY (c, n))",
                            "CREATE TABLE counters(c INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
                            "CREATE TABLE pairs(c INTEGER, n INTEGER, side TEXT, PRIMARY KEY (c, n, side))",
                            "CREATE TABLE ev(c INTEGER, n INTEGER, r INTEGER, at TEXT, PRIMARY KEY (c, n))"}) {
      auto r = (*c)->query(ddl);
      ASSERT_TRUE(r) << r.error().message;
    }
    for (int k = 0; k < 16; ++k) ASSERT_TRUE((*c)->query("INSERT INTO counters VALUES (?, 0)", {{value{std::int64_t{k}}}, {}, false}));
  }

  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> attempts{0}, acknowledged{0};
  std::vector<ledger> ledgers(16);
  std::vector<std::thread> clients;
  for (int k = 0; k < 16; ++k) {
    clients.emplace_back([&, k] {
      ledger& l = ledgers[static_cast<std::size_t>(k)];
      std::unique_ptr<protocol::client> c;
      const value ck{std::int64_t{k}};
      bool altered = false;
      for (std::int64_t n = 1; !stop; ++n) {
        if (!c) {
          auto made = protocol::client::connect(co);
          if (!made) {
            std::this_thread::sleep_for(20ms);  // the proxy is restarting: retry the connection
            continue;
          }
          c = std::move(*made);
        }
        const value cn{n};
        bool ok = false;
        bool sent = true;
        auto note = [&](bool success, auto&& on_ack, auto&& on_lost) {
          ok = success;
          if (success) on_ack();
          else on_lost();
        };
        switch (n % 6) {
          case 0:
          case 1: {
            auto r = c->query("INSERT INTO rows_(c, n, v) VALUES (?, ?, ?)", {{ck, cn, value{std::string("v")}}, {}, false});
            note(bool(r), [&] { l.acked.insert(n); }, [&] { l.uncertain.insert(n); });
            break;
          }
          case 2: {
            ++l.increments_sent;
            auto r = c->query("UPDATE counters SET n = n + 1 WHERE c = ?", {{ck}, {}, false});
            note(bool(r), [&] { ++l.increments_acked; }, [] {});
            break;
          }
          case 3: {
            auto r = c->batch({{"INSERT INTO pairs VALUES (?, ?, 'a')", {{ck, cn}, {}, false}},
                               {"INSERT INTO pairs VALUES (?, ?, 'b')", {{ck, cn}, {}, false}}});
            note(bool(r), [&] { l.pairs_acked.insert(n); }, [] {});
            break;
          }
          case 4: {
            if (l.acked.empty()) {
              sent = false;
              break;
            }
            const std::int64_t victim = *l.acked.begin();
            auto r = c->query("DELETE FROM rows_ WHERE c = ? AND n = ?", {{ck, value{victim}}, {}, false});
            note(bool(r), [&] { l.acked.erase(victim); }, [&] { l.acked.erase(victim); l.uncertain.insert(victim); });
            break;
          }
          case 5: {
            // SQLite leading replicates random() and the clock as row images; D1 leading refuses
            // them, so there the values are bound.
            auto r = d1_leads ? c->query("INSERT INTO ev VALUES (?, ?, ?, ?)", {{ck, cn, value{n * 7919}, value{std::string("2026-12-01")}}, {}, false})
                              : c->query("INSERT INTO ev VALUES (?, ?, random(), datetime('now'))", {{ck, cn}, {}, false});
            note(bool(r), [] {}, [] {});
            break;
          }
        }
        if (k == 0 && n >= 40 && !altered && sent && ok) {
          // A schema change mid-stream, retried until it lands (its leader may be down). An
          // earlier try whose answer was lost may have landed already.
          auto r = c->query("ALTER TABLE ev ADD COLUMN note TEXT");
          altered = r || r.error().message.find("duplicate column") != std::string::npos;
        }
        if (!sent) continue;
        ++attempts;
        if (ok) ++acknowledged;
        else c.reset();  // reconnect: the proxy may be gone
      }
    });
  }

  // Waits for the clients to make `more` attempts. A watchdog, not a speed limit: if no client
  // gets an answer of any kind for two minutes, something is stuck, and the test says so
  // instead of hanging CI.
  bool stuck = false;
  auto progress = [&](std::int64_t more) {
    const auto target = attempts.load() + more;
    auto last = attempts.load();
    auto since = std::chrono::steady_clock::now();
    while (!stuck && attempts.load() < target) {
      std::this_thread::sleep_for(5ms);
      if (attempts.load() != last) {
        last = attempts.load();
        since = std::chrono::steady_clock::now();
      } else if (std::chrono::steady_clock::now() - since > 120s) {
        stuck = true;
      }
    }
  };
  progress(150);
  for (int round = 0; round < 3; ++round) {
    d1.stop();
    progress(60);
    d1.start();
    progress(100);
    if (round < 2) {
      proxy.kill9();
      proxy.start();
      if (!proxy.started()) stuck = true;
      progress(100);
    }
  }
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_FALSE(stuck) << "no client made progress for two minutes (attempts: " << attempts << ")";
  {
    auto c = protocol::client::connect(co);
    ASSERT_TRUE(c);
    auto cols = (*c)->query("SELECT count(*) FROM pragma_table_info('ev') WHERE name = 'note'");
    ASSERT_TRUE(cols);
    EXPECT_EQ(cols->rows.at(0).at(0), value{std::int64_t{1}}) << "the schema change did not land";
  }

  // Catch-up, read straight from both stores: the follower's applied position reaches the end
  // of the leader's journal.
  backends::sqlite_store_options so;
  so.db.path = db_path;
  auto sqlite = backends::sqlite_store::open(so);
  ASSERT_TRUE(sqlite);
  auto d1s = backends::d1_store::open(d1.options(database));
  ASSERT_TRUE(d1s);
  backends::store& leader = d1_leads ? static_cast<backends::store&>(**d1s) : **sqlite;
  backends::store& follower = d1_leads ? static_cast<backends::store&>(**sqlite) : **d1s;
  backends::exec_options o;
  o.internal = true;
  auto scalar = [&](backends::store& s, const std::string& sql) -> std::int64_t {
    auto r = proxy::run_batch(s, {{sql, {}}}, o);
    if (!r || r->at(0).rows.empty()) return -1;
    const auto* v = std::get_if<std::int64_t>(&r->at(0).rows[0][0]);
    return v ? *v : -1;
  };
  const std::string source = d1_leads ? "d1" : "sqlite";
  std::int64_t end = -1, applied = -2;
  ASSERT_TRUE(eventually("the follower's applied position to reach the end of the leader's journal", [&] {
    end = scalar(leader, "SELECT coalesce(max(seq), 0) FROM _tandem_journal");
    applied = scalar(follower, "SELECT seq FROM _tandem_applied WHERE source = '" + source + "'");
    return applied == end;
  }, std::chrono::minutes(2), 100ms)) << "applied " << applied << ", journal ends at " << end;
  proxy.stop();

  expect_equal_stores(**sqlite, **d1s);
  std::int64_t acked_rows = 0;
  for (backends::store* s : {&leader, &follower}) {
    std::map<std::int64_t, std::set<std::int64_t>> present;
    for (const auto& row : rows_of(*s, "rows_")) present[std::get<std::int64_t>(row[0])].insert(std::get<std::int64_t>(row[1]));
    std::map<std::pair<std::int64_t, std::int64_t>, int> pair_sides;
    for (const auto& row : rows_of(*s, "pairs")) ++pair_sides[{std::get<std::int64_t>(row[0]), std::get<std::int64_t>(row[1])}];
    const auto counters = rows_of(*s, "counters");
    for (int k = 0; k < 16; ++k) {
      const auto& l = ledgers[static_cast<std::size_t>(k)];
      for (auto n : l.acked) EXPECT_TRUE(present[k].count(n)) << s->name() << ": acknowledged row (" << k << "," << n << ") is missing";
      for (auto n : present[k]) EXPECT_TRUE(l.acked.count(n) || l.uncertain.count(n)) << s->name() << ": row (" << k << "," << n << ") was never acknowledged";
      for (auto n : l.pairs_acked) EXPECT_EQ((pair_sides[{k, n}]), 2) << s->name() << ": pair " << n;
      const auto total = std::get<std::int64_t>(counters.at(static_cast<std::size_t>(k)).at(1));
      EXPECT_GE(total, l.increments_acked) << s->name() << ": client " << k << " lost increments";
      EXPECT_LE(total, l.increments_sent) << s->name() << ": client " << k << " increments applied twice";
      acked_rows += static_cast<std::int64_t>(l.acked.size());
    }
    for (const auto& [key, sides] : pair_sides) EXPECT_EQ(sides, 2) << s->name() << ": half a batch";
  }
  std::cout << "[chaos " << mode << "] " << attempts << " requests, " << acknowledged << " acknowledged, " << end
            << " journal entries, " << acked_rows / 2 << " acknowledged rows checked on both stores\n";
}

INSTANTIATE_TEST_SUITE_P(Modes, Chaos, ::testing::Values("dual-sqlite", "dual-d1"));

}  // namespace
}  // namespace tandem::testing
