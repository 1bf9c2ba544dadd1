// The SQLite store: a dedicated writer thread with group commit, and a small pool of readers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "backends/d1_statement.hpp"
#include "backends/sqlite_connection.hpp"
#include "backends/store.hpp"

namespace tandem::backends {

class row_recorder;

struct sqlite_store_options {
  sqlite_options db;
  std::size_t readers = 2;           // reader threads, each with its own connection
  std::size_t max_group_size = 512;  // most jobs committed in one transaction
  // How long an idle worker watches its queue before sleeping (0: sleep at once).
  std::chrono::microseconds spin{100};
  // A read whose caller allows it (exec_options::may_run_inline, an I/O thread) runs on the
  // caller's thread, on a read connection of that thread's own, for up to this many SQLite
  // virtual machine instructions (a point select takes a few dozen); one that needs more, or
  // finds the database busy, is run again from the start on a reader. 0: every read goes to the
  // readers.
  std::uint64_t inline_read_budget = 20000;
  // What the follower (D1, while SQLite leads) accepts: a journaled write whose replay would not
  // fit is journaled in a form that does, or refused before it commits.
  d1_limits follower_limits;
  // The journal's bound (dual.max_journal_bytes; 0: none) and the free disk it must leave
  // (dual.min_free_disk_bytes; 0: no floor). Reaching either never fails a write: journaling
  // stops, and the follower is marked stale (follower_stale) in the same transaction as the
  // first write that is not journaled, so it must be rebuilt before it follows again.
  std::int64_t journal_max_bytes = 0;
  std::int64_t min_free_disk_bytes = 0;
  // Where D1 follows or may follow: the writer makes no string, blob or row larger than the
  // follower stores (follower_limits.max_value_bytes), in any mode, so a write D1 could not hold
  // fails on SQLite first (sqlite_options::max_length).
  bool follower_row_limit = false;
};

// How the writer has been doing; read by metrics.
struct sqlite_store_stats {
  std::uint64_t groups = 0;       // transactions committed by the writer
  std::uint64_t group_jobs = 0;   // jobs inside those transactions
};

class sqlite_store final : public store {
 public:
  static outcome<std::unique_ptr<sqlite_store>> open(const sqlite_store_options& options);
  ~sqlite_store() override;

  // store
  std::string_view name() const noexcept override { return "sqlite"; }
  void execute(protocol::statement st, exec_options options, query_done done) override;
  void execute_batch(std::vector<protocol::statement> statements, exec_options options,
                     batch_done done) override;
  void shutdown() override;

  // Whether `sql` only reads, as SQLite decides it on a connection to this database; nullopt when
  // it cannot be prepared (the error is then the statement's own, at execution). Cached; thread-safe.
  std::optional<statement_kind> classify(const std::string& sql);

  sqlite_store_stats stats() const;

  std::int64_t journal_bytes() const noexcept override { return journal_bytes_.load(std::memory_order_relaxed); }
  std::int64_t journal_max_bytes() const noexcept override { return options_.journal_max_bytes; }
  // Subtracts them, and has SQLite give the freed pages back (incremental vacuum; a no-op in a
  // file made without auto_vacuum, where they are reused instead).
  void journal_pruned(std::int64_t bytes) override;
  bool journaling_stopped() const noexcept override { return journal_off_.load(std::memory_order_acquire); }
  std::string journal_stop_reason() const override;
  // Journals again (a backfill emptied the journal and is about to copy a snapshot).
  void resume_journal();

 private:
  // A unit of work: one statement (query) or several (batch).
  struct job {
    std::vector<protocol::statement> statements;
    bool is_batch = false;
    exec_options options;
    query_done on_query;
    batch_done on_batch;
    // Filled by the thread that runs it:
    std::vector<protocol::query_result> results;
    std::optional<protocol::error> failure;
  };

  struct journal_plan {
    bool record = false;      // it writes: append an entry
    bool row_images = false;  // record the rows, not the SQL
    std::string why_rows;     // why the SQL alone would not do
  };

  explicit sqlite_store(const sqlite_store_options& options);
  outcome<journal_plan> plan_journal(sqlite_connection& conn, const job& j);
  outcome<std::int64_t> append_journal(sqlite_connection& conn, const job& j, row_recorder* rows);
  bool internal_is_write(const std::string& sql);
  // Before a journaled job, on the writer: stops journaling when the bound or the disk floor is
  // reached, and writes the follower_stale mark in the transaction (once per transaction until
  // one commits). False with `failure` set when the mark cannot be written.
  bool check_journal_bound(sqlite_connection& conn, bool& marked_in_transaction, std::optional<protocol::error>& failure);
  void submit(job j);
  void reader_loop(sqlite_connection& conn);
  void writer_loop();
  void commit_group(std::vector<job>& group);
  static void complete(job& j);
  // Runs the read `st` on the calling thread when it is short (see inline_read_budget), calling
  // `done` there; false, with `done` and `st` untouched, when it must go the usual way.
  bool try_inline(protocol::statement& st, const exec_options& options, query_done& done);
  sqlite_connection* inline_connection();
  template <class Ready>
  void spin_until(Ready ready) const;
  void remember(const std::string& sql, statement_kind kind);

  sqlite_store_options options_;
  std::unique_ptr<sqlite_connection> writer_conn_;
  std::vector<std::unique_ptr<sqlite_connection>> reader_conns_;

  mutable std::mutex mu_;
  std::condition_variable writer_cv_;
  std::condition_variable reader_cv_;
  std::deque<job> writes_;
  std::deque<job> reads_;
  std::atomic<std::size_t> pending_reads_{0};   // reads_.size(), readable without the lock
  std::atomic<std::size_t> pending_writes_{0};  // writes_.size(), likewise
  bool stopping_ = false;       // no new work is taken
  bool writer_stop_ = false;    // the writer may exit once its queue is empty
  sqlite_store_stats stats_;

  // The journal's bound. journal_bytes_ is an estimate kept by the writer (-1 until it has
  // summed the journal once); the rest of the writer's bound state is the writer's alone.
  std::atomic<std::int64_t> journal_bytes_{-1};
  std::atomic<bool> journal_off_{false};
  std::atomic<bool> journal_resumed_{false};  // resume_journal() asks the writer to count again
  bool stale_pending_ = false;                // journal_off_ and the mark has not committed yet
  std::string stop_reason_;                   // guarded by mu_
  clock::time_point next_disk_check_{};

  std::mutex classify_mu_;  // guards the classify connection (the last reader connection)
  std::shared_mutex kinds_mu_;
  std::unordered_map<std::string, statement_kind> kinds_;

  // The inline read connections, one per calling thread, opened on its first inline read.
  const std::uint64_t id_;  // unique per store in this process: the key of a thread's cached connection
  std::mutex inline_mu_;
  std::unordered_map<std::thread::id, std::unique_ptr<sqlite_connection>> inline_conns_;
  std::atomic<bool> closed_{false};  // shutdown() began: nothing runs inline any more

  std::thread writer_;
  std::vector<std::thread> readers_;
};

}  // namespace tandem::backends
