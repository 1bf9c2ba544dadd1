// The dual-write metrics, declared once in the lists below. Everything that publishes them (the
// admin plane's /metrics and /health/database, the control socket's status) is generated from
// these lists. The migration guide's six adapter metrics keep their names (its `getMetrics()`).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include <boost/json/object.hpp>

namespace tandem::proxy {

// X(member, guide or wire name, help)
#define TANDEM_COUNTERS(X)                                                                                  \
  X(total_writes, "totalWrites", "Writes acknowledged by the leader")                                       \
  X(successful_dual_writes, "successfulDualWrites", "Journal entries applied on the follower")              \
  X(secondary_failures, "secondaryFailures", "Failed attempts to apply journal entries on the follower")    \
  X(verification_failures, "verificationFailures", "Entries whose follower result differed from the leader's") \
  X(reads_sqlite, "readsSqlite", "Reads served by SQLite")                                                  \
  X(reads_d1, "readsD1", "Reads served by D1")                                                              \
  X(read_errors_sqlite, "readErrorsSqlite", "Reads SQLite answered with an error")                          \
  X(read_errors_d1, "readErrorsD1", "Reads D1 answered with an error")                                      \
  X(rollout_fallbacks, "rolloutFallbacks", "Times a breached guard moved the rollout back a stage")         \
  X(read_your_writes_waits, "readYourWritesWaits", "Follower reads that waited for the follower to reach their client's position") \
  X(read_your_writes_fallbacks, "readYourWritesFallbacks", "Follower reads sent to the leader instead")     \
  X(read_positions_unknown, "readPositionsUnknown", "Reads whose client position was ahead of the journal or of a journal tandem does not hold (read from the leader)") \
  X(shadow_reads, "shadowReads", "Reads also run on the other store and compared")                         \
  X(shadow_mismatches, "shadowMismatches", "Shadow reads whose results differed")                           \
  X(shadow_skipped, "shadowReadsSkipped", "Shadow reads not compared: the stores were not at the same journal position") \
  X(ack_timeouts, "ackTimeouts", "Writes with ack 'both' that the follower did not apply in time")          \
  X(journal_pruned, "journalPruned", "Applied journal entries pruned from the leader")                      \
  X(late_commits, "lateCommits", "Follower batches found already applied (an earlier copy committed late)")      \
  X(replication_lease_losses, "replicationLeaseLosses", "Times another instance took the D1 replication lease this one had held") \
  X(d1_requests, "d1Requests", "HTTP requests sent to D1, retries included (over d1.transport rest, each counts against the account's API rate limit)")

// X(member, wire name, help)
#define TANDEM_GAUGES(X)                                                                       \
  X(leader_seq, "leaderSeq", "Highest journal sequence number committed on the leader")        \
  X(applied_seq, "appliedSeq", "Highest journal sequence number applied on the follower")      \
  X(lag_entries, "replicationLagEntries", "Journal entries committed but not yet applied")     \
  X(lag_ms, "replicationLagMs", "Age of the oldest entry not yet applied (0 when caught up)")  \
  X(replication_paused, "replicationPaused", "1 while replication is paused")                 \
  X(replication_stopped_seq, "replicationStoppedSeq", "The journal entry the follower refuses (0: none)") \
  X(replication_lease_held, "replicationLeaseHeld", "1 while this instance holds the D1 replication lease and may replicate") \
  X(journal_bytes, "journalBytes", "Bytes of journal entries the leader holds (SQLite leading; about)") \
  X(follower_rebuild_needed, "followerRebuildNeeded", "1 while the follower cannot follow the leader's journal until rebuilt") \
  X(rollout_stage, "rolloutStage", "Rollout stage index (-1 before the first stage)")              \
  X(remembered_keys, "rememberedKeys", "Routing keys whose last position is remembered (dual.key_memory_ms)") \
  X(state_unsaved, "stateUnsaved", "1 while the runtime state file is behind (the last save failed)")

// X(member, wire name, help)
#define TANDEM_HISTOGRAMS(X)                                                               \
  X(primary_latency, "primaryLatency", "Leader write latency")             \
  X(secondary_latency, "secondaryLatency", "Follower apply latency per entry") \
  X(read_latency_sqlite, "readLatencySqlite", "SQLite read latency")       \
  X(read_latency_d1, "readLatencyD1", "D1 read latency")

// A latency histogram with fixed bucket bounds in milliseconds. Lock-free; thread-safe.
class histogram {
 public:
  static constexpr std::array<double, 16> k_bounds{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
  void record(double ms) noexcept;
  std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }
  double sum() const noexcept { return static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1000.0; }
  double average() const noexcept { return count() ? sum() / static_cast<double>(count()) : 0.0; }
  // Observations at or below k_bounds[i] (not cumulative); the last slot holds the rest.
  std::uint64_t bucket(std::size_t i) const noexcept { return buckets_[i].load(std::memory_order_relaxed); }
  // An estimate of quantile q (0..1) from the buckets: the upper bound of its bucket.
  double quantile(double q) const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, k_bounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_us_{0};
};

struct dual_metrics {
#define TANDEM_DECLARE(member, name, help) std::atomic<std::uint64_t> member{0};
  TANDEM_COUNTERS(TANDEM_DECLARE)
#undef TANDEM_DECLARE
#define TANDEM_DECLARE(member, name, help) std::atomic<std::int64_t> member{0};
  TANDEM_GAUGES(TANDEM_DECLARE)
#undef TANDEM_DECLARE
#define TANDEM_DECLARE(member, name, help) histogram member;
  TANDEM_HISTOGRAMS(TANDEM_DECLARE)
#undef TANDEM_DECLARE

  // The migration guide's getMetrics() shape plus everything above, by wire name. Histograms
  // appear as {count, average, p50, p99}; averagePrimaryLatency and averageSecondaryLatency as
  // the guide names them.
  boost::json::object snapshot() const;

  // Prometheus text exposition (version 0.0.4) of every metric above, each with # HELP and
  // # TYPE: counters as tandem_<name>_total, gauges as tandem_<name>, histograms as
  // tandem_<name>_seconds with cumulative buckets (lag as tandem_lag_seconds): base units.
  std::string prometheus() const;
};

}  // namespace tandem::proxy
