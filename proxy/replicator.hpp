// The replicator: applies the leader's journal to the follower, in sequence order, exactly once.
//
// One thread. It reads entries after the follower's applied sequence from the leader's
// `_tandem_journal`, runs them on the follower as one atomic batch together with the new applied
// sequence in `_tandem_applied`, and repeats. After any failure (the follower down, a timeout,
// an answer lost on the way back) it reads the applied sequence from the follower again before
// going on, so an entry whose outcome was unknown is neither lost nor applied twice. A batch
// that fails is retried one entry at a time, so one bad entry cannot hold back the others'
// diagnosis; the failing entry is retried with exponential backoff (and logged) until it
// applies or the operator steps in. With a permit (the D1 replication lease), it writes only while
// the permit is held, and its batches to D1 fail unless it still is when they commit.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <mutex>
#include <string>
#include <thread>

#include <boost/json/object.hpp>

#include "backends/journal.hpp"
#include "backends/store.hpp"
#include "proxy/metrics.hpp"
#include "proxy/replication_step.hpp"

namespace tandem::proxy {

// What entitles a replicator to write: to apply entries to the follower and to prune the
// leader's journal (proxy/d1_lease.hpp, the D1 replication lease). Thread-safe.
class replication_permit {
 public:
  virtual ~replication_permit() = default;
  // "" while this replicator may write, else why not (reported as replication.lastError). Asked
  // before every batch applied and every prune.
  virtual std::string hold_back() const = 0;
  // A statement to add to every batch written to `store` (by its name) that fails, rolling the
  // batch back, unless the permit is still held when the batch commits, with k_permit_fence_failed
  // in the store's error. nullopt when `store` needs none. It covers a batch that arrives late,
  // after the permit passed to another instance.
  virtual std::optional<protocol::statement> fence(std::string_view store) const = 0;
};

struct replicator_options {
  std::size_t batch_entries = 500;
  std::size_t batch_bytes = 1000000;
  std::size_t batch_statements = 998;  // the follower's limit per batch (D1: 1000), applied marker included
  std::chrono::milliseconds retry_min{100};
  std::chrono::milliseconds retry_max{10000};
  std::chrono::milliseconds request_timeout{30000};
  std::chrono::milliseconds journal_retention{3600000};
  bool verify_writes = true;
  bool pause_on_verification_failure = false;
  const replication_permit* permit = nullptr;  // null: always entitled; must outlive the replicator
  // Told of what the replicator does by itself for the operator (today: a pause after a
  // verification failure), with its figures. Called on the replicator's thread, no lock held;
  // it may call the replicator's accessors but must not wait for its thread (stop()).
  std::function<void(const std::string& what, boost::json::object details)> on_event;
};

class replicator {
 public:
  // `leader` and `follower` must outlive the replicator. Does not start the thread.
  replicator(backends::store& leader, backends::store& follower, replicator_options options, dual_metrics& metrics);
  ~replicator();
  replicator(const replicator&) = delete;
  replicator& operator=(const replicator&) = delete;

  void start();
  // Finishes the batch in flight and joins the thread; pending waiters get false. Idempotent.
  void stop();

  // The leader committed entry `seq`: wake up. Thread-safe, cheap.
  void notify(std::int64_t seq);

  // Calls done(true) once the follower has applied `seq`, or done(false) at `deadline` (or at
  // stop). `done` runs on the replicator's thread or, if already satisfied, on the caller's.
  void wait_applied(std::int64_t seq, backends::clock::time_point deadline, std::function<void(bool)> done);

  // Blocks until the follower has applied everything the leader has committed (read from the
  // leader now), or until `deadline`. False on timeout or when the leader cannot be read.
  bool wait_caught_up(backends::clock::time_point deadline);

  // Stops applying; returns once no batch is in flight (the follower then changes no more).
  // Never called on the replicator's own thread (it would wait for itself).
  void pause();
  // Reads the follower's applied position again before the next apply (a live backfill moved it).
  void reread_position();
  void resume();
  bool paused() const;
  void set_verify_writes(bool on) { verify_.store(on); }

  // An entry the follower refuses (a constraint, an SQL error, a statement it cannot run): the
  // replicator retries it with backoff, and reports it here until it applies or is skipped.
  struct stopped_entry {
    std::int64_t seq = 0;
    std::string sql;    // the refused statement's SQL, never its parameter values
    std::string error;  // the follower's error
    std::int64_t since_ms = 0;
    int attempts = 0;
  };
  std::optional<stopped_entry> stopped() const;

  // The operator's way past a stopped entry: records on the follower that `seq` (which must be
  // the stopped entry) is applied without running it, and goes on after it. The follower then
  // lacks that write; the caller audits who asked. Blocks until done or `deadline`.
  backends::outcome<void> skip(std::int64_t seq, backends::clock::time_point deadline);

  // Why the follower cannot follow the leader's journal from where it stands, until it is rebuilt
  // (a position in another journal, ahead of the leader, before pruned entries, or none; or the
  // leader's follower_stale mark); nullopt while it can. Nothing is applied meanwhile, reads stay
  // on the leader, and prepare is retried (a backfill sets a new position).
  std::optional<std::string> rebuild_needed() const;
  bool must_rebuild() const noexcept { return must_rebuild_.load(std::memory_order_relaxed); }

  // applied, paused, pausedReason, lastError, stopped and rebuild, as `ctl status` and /status show them.
  boost::json::object status() const;

  std::int64_t applied() const;   // -1 until read from the follower
  // The highest leader sequence seen: acknowledged by this process or read from the leader.
  std::int64_t known_leader_seq() const;
  std::string last_error() const;  // the last failure, "" once an apply succeeds

 private:
  void loop();
  void idle();
  bool prepare();
  bool apply(std::vector<backends::journal_entry>& entries);
  bool failed_batch(const std::vector<backends::journal_entry>& entries, const protocol::error& e);
  backends::outcome<std::vector<backends::journal_entry>> fetch(std::size_t max_entries);
  void verify_changes(const backends::journal_entry& e, const std::vector<protocol::query_result>& results, std::size_t first);
  void verify_rows(const std::vector<backends::journal_entry>& entries);
  void verification_failed(std::int64_t seq, const std::string& sql, const std::string& what, boost::json::object details);
  // The replicator pausing itself, from inside apply(): no wait for the batch in flight (its own).
  void pause_self(std::string reason, boost::json::object details);
  void prune();
  void fire_waiters(bool all_expired);
  void set_error(std::string e);
  // The lag gauges from applied_, known_leader_seq_ and unapplied_since_ms_. Requires mu_.
  void refresh_lag_locked();
  backends::clock::time_point next_wake_locked() const;
  backends::outcome<std::int64_t> leader_max_seq();
  // "D1 lacks writes SQLite took outside the journal: <reason>".
  std::string outside_journal(const std::string& reason) const;
  // Enters the state rebuild_needed() reports, logging the reason once.
  void refuse_following(const std::string& why);
  // What the operator runs when the follower must be rebuilt.
  std::string rebuild_advice() const;
  // The permit's reason not to write now ("" to go on); reported as the last error.
  std::string held_back();

  backends::store& leader_;
  backends::store& follower_;
  replicator_options options_;
  dual_metrics& metrics_;
  const std::string source_;  // the leader's name, the key of its row in _tandem_applied
  std::atomic<bool> verify_;
  std::atomic<bool> must_rebuild_{false};  // rebuild_ is set, readable without the lock

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool paused_ = false;
  std::string pause_reason_;       // why the replicator paused itself ("" : the operator paused it, or not paused)
  bool applying_ = false;          // a batch is being applied to the follower
  bool ready_ = false;             // applied_ is known and tandem's tables exist
  std::int64_t applied_ = -1;
  std::int64_t known_leader_seq_ = 0;
  std::int64_t unapplied_since_ms_ = 0;  // wall ms since which an entry waits unapplied (0: none)
  std::int64_t single_until_ = 0;  // apply one entry at a time up to this sequence (isolating a failure)
  std::string last_error_;
  std::optional<stopped_entry> stopped_;
  std::optional<std::string> rebuild_;
  std::string leader_journal_;  // the leader's journal id, read by prepare()
  std::multimap<std::int64_t, std::pair<backends::clock::time_point, std::function<void(bool)>>> waiters_;
  backends::clock::time_point next_prune_{};
  std::thread thread_;
};

// Runs a batch on a store and waits for it. For tandem's control paths, never an I/O thread.
backends::outcome<std::vector<protocol::query_result>> run_batch(backends::store& s,
                                                                  std::vector<protocol::statement> statements,
                                                                  backends::exec_options options);

// Runs one statement on a store and waits for it (its read path for a read). Likewise.
backends::outcome<protocol::query_result> run_query(backends::store& s, protocol::statement statement,
                                                    backends::exec_options options);

// Creates tandem's tables on `s` if missing (upgrading an older `_tandem_applied`) and returns
// its journal's identity. For control paths, never an I/O thread.
backends::outcome<backends::journal_identity> ensure_journal(backends::store& s, backends::exec_options options);

}  // namespace tandem::proxy
