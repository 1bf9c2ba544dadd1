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

// X(kind, member, guide or wire name, help). kind: counter (only rises), gauge, or mode (a gauge
// holding a `mode`'s value: Prometheus gets one series per mode, 1 for the current one, and JSON
// its name). The last three are the router's settings, copied in by every publisher (metrics_now
// in control.hpp), so that they are declared here like every other gauge.
#define TANDEM_METRICS(X)                                                                                      \
  X(counter, total_writes, "totalWrites", "Writes acknowledged by the leader")                                 \
  X(counter, successful_dual_writes, "successfulDualWrites", "Journal entries applied on the follower")        \
  X(counter, secondary_failures, "secondaryFailures", "Failed attempts to apply journal entries on the follower") \
  X(counter, verification_failures, "verificationFailures", "Entries whose follower result differed from the leader's") \
  X(counter, reads_sqlite, "readsSqlite", "Reads served by SQLite")                                            \
  X(counter, reads_d1, "readsD1", "Reads served by D1")                                                        \
  X(counter, read_errors_sqlite, "readErrorsSqlite", "Reads SQLite answered with an error")                    \
  X(counter, read_errors_d1, "readErrorsD1", "Reads D1 answered with an error")                                \
  X(counter, rollout_fallbacks, "rolloutFallbacks", "Times a breached guard moved the rollout back a stage")   \
  X(counter, read_your_writes_waits, "readYourWritesWaits", "Follower reads that waited for the follower to reach their client's position") \
  X(counter, read_your_writes_fallbacks, "readYourWritesFallbacks", "Follower reads sent to the leader instead") \
  X(counter, read_positions_unknown, "readPositionsUnknown", "Reads whose client position was ahead of the journal or of a journal tandem does not hold (read from the leader)") \
  X(counter, shadow_reads, "shadowReads", "Reads also run on the other store and compared")                    \
  X(counter, shadow_mismatches, "shadowMismatches", "Shadow reads whose results differed")                     \
  X(counter, shadow_skipped, "shadowReadsSkipped", "Shadow reads not compared: the stores were not at the same journal position") \
  X(counter, ack_timeouts, "ackTimeouts", "Writes with ack 'both' that the follower did not apply in time")    \
  X(counter, journal_pruned, "journalPruned", "Applied journal entries pruned from the leader")                \
  X(counter, late_commits, "lateCommits", "Follower batches found already applied (an earlier copy committed late)") \
  X(counter, replication_lease_losses, "replicationLeaseLosses", "Times another instance took the D1 replication lease this one had held") \
  X(counter, d1_requests, "d1Requests", "HTTP requests sent to D1, retries included (over d1.transport rest, each counts against the account's API rate limit)") \
  X(gauge, leader_seq, "leaderSeq", "Highest journal sequence number committed on the leader")                 \
  X(gauge, applied_seq, "appliedSeq", "Highest journal sequence number applied on the follower")               \
  X(gauge, lag_entries, "replicationLagEntries", "Journal entries committed but not yet applied")              \
  X(gauge, lag_ms, "replicationLagMs", "Age of the oldest entry not yet applied (0 when caught up)")           \
  X(gauge, replication_paused, "replicationPaused", "1 while replication is paused")                           \
  X(gauge, replication_stopped_seq, "replicationStoppedSeq", "The journal entry the follower refuses (0: none)") \
  X(gauge, replication_lease_held, "replicationLeaseHeld", "1 while this instance holds the D1 replication lease and may replicate") \
  X(gauge, journal_bytes, "journalBytes", "Bytes of journal entries the leader holds (SQLite leading; about)") \
  X(gauge, journal_max_bytes, "journalMaxBytes", "dual.max_journal_bytes: where SQLite stops journaling (0: no bound)") \
  X(gauge, journaling_stopped, "journalingStopped", "1 while SQLite journals no more (its bound or the free-disk floor): D1 must be rebuilt") \
  X(gauge, follower_rebuild_needed, "followerRebuildNeeded", "1 while the follower cannot follow the leader's journal until rebuilt") \
  X(gauge, rollout_stage, "rolloutStage", "Rollout stage index (-1 before the first stage)")                   \
  X(gauge, remembered_keys, "rememberedKeys", "Routing keys whose last position is remembered (dual.key_memory_ms)") \
  X(gauge, state_unsaved, "stateUnsaved", "1 while the runtime state file is behind (the last save failed)")   \
  X(gauge, read_percent, "readPercent", "Routing keys (percent) whose reads go to D1")                         \
  X(gauge, shadow_read_percent, "shadowReadPercent", "Reads (percent) also run on the other store")            \
  X(mode, mode, "mode", "The current mode (1 for the active one)")

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

// The names of the modes by value (router.hpp's `mode`; tests/proxy checks that they match): the
// label values of the mode gauge. metrics.hpp sits below router.hpp, so it cannot use `mode`.
inline constexpr std::array<const char*, 4> k_mode_names{"sqlite-only", "dual-sqlite", "dual-d1", "d1-only"};

struct dual_metrics {
#define TANDEM_TYPE_counter std::atomic<std::uint64_t>
#define TANDEM_TYPE_gauge std::atomic<std::int64_t>
#define TANDEM_TYPE_mode std::atomic<std::int64_t>
#define TANDEM_DECLARE(kind, member, name, help) TANDEM_TYPE_##kind member{0};
  TANDEM_METRICS(TANDEM_DECLARE)
#undef TANDEM_DECLARE
#undef TANDEM_TYPE_counter
#undef TANDEM_TYPE_gauge
#undef TANDEM_TYPE_mode
#define TANDEM_DECLARE(member, name, help) histogram member;
  TANDEM_HISTOGRAMS(TANDEM_DECLARE)
#undef TANDEM_DECLARE

  // The migration guide's getMetrics() shape plus everything above, by wire name. Histograms
  // appear as {count, average, p50, p99}; averagePrimaryLatency and averageSecondaryLatency as
  // the guide names them.
  boost::json::object snapshot() const;

  // Prometheus text exposition (version 0.0.4) of every metric above, each with # HELP and
  // # TYPE: counters as tandem_<name>_total, gauges as tandem_<name>, the mode as
  // tandem_mode{mode="..."}, histograms as tandem_<name>_seconds with cumulative buckets (lag as
  // tandem_lag_seconds): base units.
  std::string prometheus() const;
};

}  // namespace tandem::proxy
