// The Store interface: what the router needs from a database, whichever it is.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/system/result.hpp>

#include "protocol/messages.hpp"

namespace tandem::backends {

template <class T>
using outcome = boost::system::result<T, protocol::error>;

using clock = std::chrono::steady_clock;

struct exec_options {
  // The statement is interrupted (TIMEOUT) if it has not finished by then; work still queued at
  // the deadline is not started at all.
  clock::time_point deadline = clock::time_point::max();
  // tandem's own SQL (its `_tandem_*` tables, replication): not checked against the rules for
  // client SQL. Never set for what a client sent, except when replaying the leader's journal.
  bool internal = false;
  // The store is the leader in a dual mode: each write commits together with its entry in
  // `_tandem_journal` (see backends/journal.hpp), and its results carry meta.seq.
  bool journal = false;
  // D1 with read replication: the bookmark (meta.bookmark of an earlier answer) a read must be at
  // least as new as, or "first-primary" (D1's session constraint: the primary); empty: any
  // replica. Ignored by other stores and for writes.
  std::string bookmark;
  // The caller (an I/O thread) lets a short read run on its own thread: the completion may then
  // be called before execute() returns, on the caller's thread. A store that cannot, or a
  // statement that is not short, goes the usual way.
  bool may_run_inline = false;
};

// Options for tandem's own SQL, with a deadline.
inline exec_options internal_until(clock::time_point deadline) {
  exec_options o;
  o.deadline = deadline;
  o.internal = true;
  return o;
}

// Completions are called exactly once, on a thread of the store's choosing: the caller must not
// assume its own thread or strand, and must not block in them.
using query_done = std::function<void(outcome<protocol::query_result>)>;
using batch_done = std::function<void(outcome<std::vector<protocol::query_result>>)>;

class store {
 public:
  virtual ~store() = default;

  // "sqlite" or "d1": fills meta.served_by and error.store.
  virtual std::string_view name() const noexcept = 0;

  // Runs one statement. Writes are applied in the order execute()/execute_batch() were called;
  // reads may run concurrently with each other and with writes, and see every write whose
  // completion has been called. Thread-safe.
  virtual void execute(protocol::statement st, exec_options options, query_done done) = 0;

  // Runs the statements as one atomic unit: every one commits, or none does and the error names
  // the failing statement's index. Thread-safe.
  virtual void execute_batch(std::vector<protocol::statement> statements, exec_options options,
                             batch_done done) = 0;

  // Stops taking work, finishes what was accepted, and releases the store's threads. Work
  // submitted afterwards completes at once with UNAVAILABLE. Idempotent.
  virtual void shutdown() = 0;

  // The journal's size while this store leads, for stores that bound it (SQLite: the disk is the
  // application's too). Bytes of entry text, -1 when not counted; 0 for the bound means none.
  virtual std::int64_t journal_bytes() const noexcept { return -1; }
  virtual std::int64_t journal_max_bytes() const noexcept { return 0; }
  // The replicator deleted applied entries holding `bytes`: space to reclaim.
  virtual void journal_pruned(std::int64_t /*bytes*/) {}
  // Set once the store stopped journaling (its bound reached): why, for the follower's refusal.
  virtual bool journaling_stopped() const noexcept { return false; }
  virtual std::string journal_stop_reason() const { return {}; }
};

}  // namespace tandem::backends
