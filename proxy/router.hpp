// The router decides which store serves a request (ARCHITECTURE.md, "One query").
//
//   sqlite-only   everything on SQLite
//   dual-sqlite   writes on SQLite (the leader) with their journal entries; the replicator
//                 copies them to D1; reads from SQLite, or from D1 for read_percent of keys
//   dual-d1       the same with D1 leading and SQLite following (the rollback path)
//   d1-only       everything on D1
//
// Reads are classified by SQLite itself. A read routed to the follower waits, up to a bound, for
// the follower to reach the newest position its client is known to have seen, then goes to the
// leader (read-your-writes and monotonic reads, PROTOCOL.md §15). That position is the newest of:
// the session's own last write, the min_seq the client sent, and what the routing key's requests
// wrote or read (remembered per key for a bounded time, key_positions.hpp).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backends/d1_store.hpp"
#include "backends/sqlite_store.hpp"
#include "backends/store.hpp"
#include "proxy/key_positions.hpp"
#include "proxy/metrics.hpp"
#include "proxy/mode.hpp"
#include "proxy/replicator.hpp"

namespace tandem::proxy {

class d1_lease;


struct router_options {
  mode initial = mode::sqlite_only;
  int read_percent = 0;         // routing keys whose reads go to D1 (dual modes)
  int shadow_read_percent = 0;  // reads also run on the other store and compared (dual modes)
  bool ack_both = false;        // acknowledge a write once the follower applied it too
  std::chrono::milliseconds ack_timeout{5000};
  bool continue_on_follower_failure = true;  // with ack_both: acknowledge anyway at the timeout
  std::chrono::milliseconds read_your_writes_wait{100};
  // The position of each client-given routing key, remembered this long after its last request,
  // for at most this many keys.
  std::chrono::milliseconds key_memory{300000};
  std::size_t key_memory_keys = 100000;
  replicator_options replication;
  // The D1 replication lease (null: none, as in tests of one process). The router keeps it in
  // the dual modes: taken on entering one (a mode change is refused while another instance holds
  // it), released on leaving them and at shutdown; the replicator writes only while it holds.
  // The caller takes it before constructing a router that starts in a dual mode. Must outlive
  // the router.
  d1_lease* lease = nullptr;
};

// What the router knows about the client a request came from. Owned by its session, which
// waits for each request's completion before the next (so the router may update it there).
struct client_context {
  std::string routing_key;  // from hello or the request, else the connection's own; sticky read routing
  // The client named routing_key (hello or the request): its positions are remembered across
  // connections. Otherwise the key is the connection, and key_seen below stands in for it.
  bool key_given = false;
  protocol::position last_write;  // this session's last write (dual modes)
  protocol::position min_seq;     // what the client says it has seen: the request's, else hello's
  bool min_seq_leader = false;    // the request asked for the leader's state ("leader")
  protocol::position key_seen;    // the connection's own key: the newest position its requests saw
  // D1 read replication: the newest D1 bookmark this connection's requests brought back; a D1
  // read of the connection is at least that new (and at least its routing key's, when given).
  std::string d1_bookmark;
};

// How a switch-primary went.
struct switch_report {
  mode from = mode::dual_sqlite;
  mode to = mode::dual_d1;
  double paused_ms = 0;         // writes were held this long
  std::int64_t drained = 0;     // entries the follower applied during the pause
};

// How a forced fallback went: SQLite leads without the D1 journal entries it had not applied.
struct force_report {
  std::int64_t sqlite_applied = 0;     // the last D1 journal entry SQLite applied
  std::int64_t d1_journal_end = 0;     // the highest D1 sequence this process acknowledged or read
  std::int64_t unapplied = 0;          // d1_journal_end - sqlite_applied: writes only D1 holds
};

class router {
 public:
  // Either store may be null when the mode (and every mode reachable at runtime) does not need
  // it. In a dual mode, creates tandem's tables on SQLite and starts the replicator.
  router(std::unique_ptr<backends::sqlite_store> sqlite, std::unique_ptr<backends::d1_store> d1,
         router_options options = {});
  // Single-store form (tests, tools): sqlite-only or d1-only by the store's name.
  explicit router(std::unique_ptr<backends::store> only);
  ~router();

  // Thread-safe. `done` is called exactly once, on a store or replicator thread.
  void execute(client_context& client, protocol::statement st, backends::exec_options options,
               backends::query_done done);
  void execute_batch(client_context& client, std::vector<protocol::statement> statements,
                     backends::exec_options options, backends::batch_done done);

  // Finishes accepted work, stops replication and the stores. Idempotent.
  void shutdown();

  // The runtime API the operator plane uses. Each returns at once, except switch_primary and
  // mode changes that hold writes while the follower drains (bounded by `max_pause`).
  mode current_mode() const;
  // What a mode change calls at its point of no return: writes are held, every step that can
  // fail is done, and the new mode `to` takes effect as soon as it returns. An error aborts the
  // change (nothing changed, the old mode continues, the error is the answer). Called on the
  // caller's thread with no router lock held; it must not change the mode itself. The control
  // plane saves the new state here (write-ahead), so that a restart never comes back in the old
  // mode once the new one took effect.
  using commit_hook = std::function<backends::outcome<void>(mode to)>;
  backends::outcome<switch_report> switch_primary(std::chrono::milliseconds max_pause, const commit_hook& before_commit = {});
  // sqlite-only <-> dual-sqlite, dual-d1 <-> d1-only, and the dual modes by switch_primary.
  backends::outcome<switch_report> set_mode(mode m, std::chrono::milliseconds max_pause, const commit_hook& before_commit = {});
  // The last resort when D1 leads and cannot be reached: SQLite becomes the only store
  // (sqlite-only) without the D1 journal entries it has not applied, which the report counts.
  // Refused unless the mode is dual-d1, and while writes are still in flight to D1. D1 is left
  // as it is (it holds those writes); it must be rebuilt from SQLite before a dual mode again.
  // The read split is 0 afterwards.
  backends::outcome<force_report> force_sqlite_leader(std::chrono::milliseconds max_pause, const commit_hook& before_commit = {});
  // While D1 leads: the D1 journal entries this process knows of that SQLite has not applied.
  std::int64_t d1_entries_sqlite_lacks();
  // A live backfill (tandem migrate --via-control) in dual-sqlite. begin: replication pauses, so
  // D1 holds still while a SQLite snapshot is copied. end: D1 holds the snapshot at journal
  // sequence `seq`; its position and the journal's id are recorded on D1, SQLite's follower_stale
  // mark is taken back, and replication goes on at seq + 1.
  backends::outcome<void> begin_backfill();
  backends::outcome<void> end_backfill(std::int64_t seq, std::chrono::milliseconds max_wait);
  void set_read_percent(int percent);
  int read_percent() const;
  void set_shadow_read_percent(int percent);
  void pause_replication();
  void resume_replication();
  void set_verify_writes(bool on);
  bool verify_writes() const;
  // The replicator in a dual mode, else null. Shared: reads waiting on it may outlive a switch.
  std::shared_ptr<replicator> replication() const;
  d1_lease* lease() const { return options_.lease; }

  int shadow_read_percent() const;
  dual_metrics& metrics() { return metrics_; }
  // The stores, for health checks; null when not configured.
  backends::sqlite_store* sqlite() const { return sqlite_.get(); }
  backends::d1_store* d1() const { return d1_.get(); }

  // Whether reads of `routing_key` go to D1 at `percent`: a stable hash picks a bucket 0-99;
  // raising the percent only adds keys.
  static int bucket_of(std::string_view routing_key) noexcept;

 private:
  void write(client_context& client, std::vector<protocol::statement> statements, bool is_batch,
             backends::exec_options options, std::function<void(backends::outcome<std::vector<protocol::query_result>>)> done);
  void read(client_context& client, protocol::statement st, backends::exec_options options, backends::query_done done);
  // What a read of `client` must see on the follower: the sequence number it must have applied
  // (0: none), or `leader` when only the leader can tell (a position ahead of the journal or of
  // a journal tandem does not hold). `journal` is the leading store's name.
  struct read_floor {
    std::int64_t seq = 0;
    bool leader = false;
  };
  read_floor floor_of(const client_context& client, std::string_view journal, const replicator& rep);
  // A read's counters and latency, on the store that answered it.
  void count_read(const backends::store& on, const backends::outcome<protocol::query_result>& r, backends::clock::time_point start);
  struct shadow_read {
    backends::store* other = nullptr;  // the store the read runs on again
    protocol::statement copy;
    backends::exec_options options;
    std::shared_ptr<replicator> rep;   // null outside the dual modes
    std::int64_t leader_at = 0;        // the leader's journal end as the read started
    std::int64_t follower_at = 0;      // the follower's applied position as the read started
    bool answered_by_leader = false;
  };
  void shadow(shadow_read s, const protocol::query_result& answer);
  // Notes the position a request of `client` wrote or read.
  void note_seen(client_context& client, const protocol::position& p);
  // D1 read replication (backends/d1_store.hpp), else empty / nothing: the bookmark a D1 request
  // of `client` must be at least as new as (its connection's and its key's newest; with
  // `follower_floor`, a read that needs D1 as follower at a journal position, also the newest
  // the replicator's writes brought back), and noting the one an answer brought back.
  std::string bookmark_floor(const client_context& client, bool follower_floor);
  void note_bookmark(client_context& client, const std::string& bookmark);
  // `done` that notes the bookmark of D1's answer first.
  backends::query_done noting_bookmark(client_context& client, backends::query_done done);
  backends::batch_done noting_bookmark(client_context& client, backends::batch_done done);
  void start_replication_locked();
  // The mode a request runs in; counts it among single_writes_ when it may write in sqlite-only.
  mode mode_for_request(bool may_write);
  // Records on `leading` (in its _tandem_meta) that the other store stops receiving its writes.
  // True if this call set the mark, false if it was already set (the first reason is kept).
  backends::outcome<bool> mark_follower_stale(backends::store& leading, const std::string& reason, backends::clock::time_point deadline);
  backends::outcome<void> hold_writes(std::unique_lock<std::mutex>& lock, backends::clock::time_point deadline);
  void release_writes(std::unique_lock<std::mutex>& lock);
  // Calls `before_commit` (if any) without the lock, writes still held, and returns its answer;
  // when it refuses, the caller undoes what it did and releases the writes.
  backends::outcome<void> commit(std::unique_lock<std::mutex>& lock, const commit_hook& before_commit, mode to);
  // set_mode()'s two paths (mode_plan): each, when it fails, releases the writes it held and
  // leaves `from` going on. Require mu_ held through `lock`, with writes held.
  backends::outcome<void> leave_dual(std::unique_lock<std::mutex>& lock, mode from, mode m, const mode_plan& plan,
                                     backends::clock::time_point deadline, const commit_hook& before_commit);
  backends::outcome<void> enter_dual(std::unique_lock<std::mutex>& lock, mode from, mode m, const mode_plan& plan,
                                     backends::clock::time_point deadline, const commit_hook& before_commit);
  backends::store* store_for(mode m, bool leader) const;
  // SQLite's applied position in D1's journal: the replicator's, else read from SQLite.
  std::int64_t sqlite_applied_from_d1(const replicator& rep, backends::clock::time_point deadline);

  std::unique_ptr<backends::sqlite_store> sqlite_;
  std::unique_ptr<backends::d1_store> d1_;
  std::unique_ptr<backends::store> only_;  // the single-store form
  router_options options_;
  dual_metrics metrics_;
  key_positions keys_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  mode mode_;
  int read_percent_;
  int shadow_percent_;
  bool gate_closed_ = false;  // writes wait (a switch in progress)
  std::size_t writes_in_flight_ = 0;
  std::deque<std::function<void()>> held_;  // writes that arrived while the gate was closed
  std::shared_ptr<replicator> replicator_;
  bool stopped_ = false;
  // sqlite-only with D1 configured: writes D1 does not get. D1 is marked stale (follower_stale)
  // on entering sqlite-only; the mark is taken back on the way to dual-sqlite only when this
  // process made it and no write went by meanwhile.
  std::uint64_t single_writes_ = 0;
  std::optional<std::uint64_t> stale_marked_at_;  // single_writes_ when this process marked D1
};

}  // namespace tandem::proxy
