// The replicator's decisions as pure functions: what it knows in, what to do out. No store, no
// thread, no clock: tests/proxy/replication_step_test.cpp walks every case without D1, and
// proxy/replicator.cpp does what they say (the sans-io split of Boost.MySQL's state machines).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backends/journal.hpp"
#include "protocol/error.hpp"

namespace tandem::proxy {

// In the error of a batch the replication permit's fence rolled back (replicator.hpp).
inline constexpr std::string_view k_permit_fence_failed = "tandem: this instance does not hold the replication lease";

// What the replicator knows before each turn of its loop.
struct loop_state {
  bool stop = false;
  bool paused = false;
  bool ready = false;                      // the follower's position is known and tandem's tables exist
  bool leader_journaling_stopped = false;  // the leader's journal hit its bound
  std::int64_t applied = -1;
  std::int64_t single_until = 0;  // entries up to this one go one at a time (a failure is being isolated)
  std::size_t batch_entries = 500;
};

enum class loop_action {
  stop,           // the replicator is stopping
  wait,           // paused: wait for resume (waiters still get their answer at their deadline)
  refuse,         // the leader stopped journaling: the follower must be rebuilt
  prepare,        // read the follower's position (and create tandem's tables) first
  fetch,          // read up to max_entries entries after `applied` and apply them
};

struct loop_step {
  loop_action action = loop_action::stop;
  std::size_t max_entries = 0;  // for fetch
};

loop_step next_step(const loop_state& s);

// After a failure: how long to wait (full jitter: `draw` in [0, 1) picks between half the backoff
// and all of it) and the backoff for the failure after it (doubled, at most `max`).
struct retry_wait {
  std::chrono::milliseconds wait;
  std::chrono::milliseconds next_backoff;
};
retry_wait next_retry(std::chrono::milliseconds backoff, std::chrono::milliseconds max, double draw);

// When the loop must look again by itself: at the earliest waiter's deadline, or after `poll` (an
// entry committed before a restart, or by another process, sends no notify).
std::chrono::steady_clock::time_point next_wake(std::chrono::steady_clock::time_point now,
                                                std::optional<std::chrono::steady_clock::time_point> earliest_waiter,
                                                std::chrono::milliseconds poll = std::chrono::milliseconds(200));

// What a batch the follower did not apply means, and what follows from it.
enum class batch_failure {
  late_commit,  // the guard failed: an earlier copy of this batch committed after all; read the position again
  fenced,       // the lease passed to another instance before the batch committed: nothing applied
  outage,       // the follower is unreachable, slow or overloaded: retry with backoff
  refused,      // the follower answered and said no: this entry will not apply by waiting alone
};

struct failure_plan {
  batch_failure kind = batch_failure::outage;
  bool isolate = false;     // retry the batch's entries one at a time (up to its last sequence)
  bool stop_at_entry = false;  // a single entry refused: replication stops there (reported, retried)
  bool counts_as_failure = true;  // secondaryFailures
};

// `entries`: how many entries the batch held. The guard is the batch's first statement.
failure_plan plan_failure(const protocol::error& e, std::size_t entries);

// The SQL of the statement the follower named (`index`, counting the guard as 0), or, when it
// named none (D1's REST answer does not), every statement of the entry, cut after ~2000 bytes.
// Never parameter values.
std::string failing_sql(const backends::journal_entry& e, std::optional<std::size_t> index);

// "seq 7" or "seq 7-9", with the statement the follower named when the batch is one entry.
std::string batch_name(const std::vector<backends::journal_entry>& entries, std::optional<std::size_t> index);

}  // namespace tandem::proxy
