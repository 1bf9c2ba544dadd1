// The staged rollout: read traffic moves to D1 stage by stage (5% -> 25% -> 50% -> 100% by
// default, with the migration guide's holds), by the operator (next, prev) or by itself
// (auto_advance) once a stage has held for its whole hold time. Guards are evaluated every tick
// over a sliding window: D1's read error rate and read latency p99, replication lag, verification
// failures and shadow-read mismatches. A breached guard moves the split back to the last stage
// that held (or 0%), holds there, and says so in an event naming the guard and the figure.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/json/object.hpp>

#include "proxy/router.hpp"

namespace tandem::proxy {

struct rollout_stage {
  int percent = 0;
  std::chrono::milliseconds hold{0};
};

struct rollout_guards {
  std::chrono::milliseconds window{300000};
  double max_d1_error_rate = 0.01;          // failed D1 reads / D1 reads in the window
  std::uint64_t min_reads = 20;             // fewer D1 reads in the window: no error-rate verdict
  double max_d1_read_p99_ms = 1000;         // from the read latency histogram, over the window
  std::int64_t max_lag_entries = 10000;
  std::int64_t max_lag_ms = 60000;
  std::uint64_t max_verification_failures = 0;  // in the window
  std::uint64_t max_shadow_mismatches = 0;      // in the window
};

struct rollout_options {
  std::vector<rollout_stage> stages{{5, std::chrono::hours(24)},
                                    {25, std::chrono::hours(24)},
                                    {50, std::chrono::hours(24)},
                                    {100, std::chrono::hours(24 * 7)}};
  bool auto_advance = false;
  rollout_guards guards;
  std::chrono::milliseconds tick{1000};
};

// What the rollout moves and watches: the router in tandem serve, a plain object in tests (the
// rollout's decisions are then tested on a fake clock, without stores).
class rollout_target {
 public:
  virtual ~rollout_target() = default;
  virtual mode current_mode() const = 0;
  virtual int read_percent() const = 0;
  virtual void set_read_percent(int percent) = 0;
  virtual dual_metrics& metrics() = 0;
};

// Where the rollout reads the time: steady_clock::now, or a test's hand.
using rollout_clock = std::function<std::chrono::steady_clock::time_point()>;

class rollout {
 public:
  // An event for the operator log (what happened, and its figures). Called on the rollout's
  // thread or the caller's, never with the rollout's lock held.
  using event_sink = std::function<void(const std::string& what, boost::json::object details)>;

  // `stage` is where a restart resumes (-1: before the first stage), `held` whether
  // auto-advance is held. Sets the router's read split to the stage's percentage.
  rollout(router& r, rollout_options options, int stage, bool held, event_sink sink);
  // The same over any target, on `now` (the hold times and the guards' window are read from it).
  rollout(rollout_target& target, rollout_options options, int stage, bool held, event_sink sink, rollout_clock now);
  ~rollout();
  rollout(const rollout&) = delete;
  rollout& operator=(const rollout&) = delete;

  void start();  // the guard and auto-advance thread
  void stop();

  // Operator commands. Each returns "" when done, or why it was refused (nothing changed).
  std::string next();
  std::string prev();
  void hold();
  void release();
  // New stages, guards, auto-advance and tick (a config reload). The current stage index is
  // kept (clamped to the new last stage); its new percentage applies at once.
  void reconfigure(rollout_options options);
  // Back to 0% of reads on D1, and held.
  void fallback();

  // Where the rollout stands, to put it back: a control command is undone when the state it
  // made cannot be saved (proxy/control.hpp).
  struct place {
    int stage = -1;
    bool held = false;
    int last_held_stage = -1;
    std::chrono::steady_clock::time_point since;
  };
  place where() const;
  // Back to `p` (a place where() returned): its stage's read split applies again, and the
  // guards judge it on its traffic from now on.
  void restore(const place& p);

  int stage() const;
  bool held() const;
  boost::json::object status() const;

  // One evaluation now (the thread calls this every tick; tests may too).
  void evaluate();

 private:
  struct sample {
    std::chrono::steady_clock::time_point at;
    std::uint64_t d1_reads, d1_errors, verification_failures, shadow_mismatches;
    std::vector<std::uint64_t> d1_latency_buckets;
  };
  void go_to_locked(int stage);
  sample take_sample() const;

  // Either target is the router's adapter, owned, or the caller's.
  rollout(std::unique_ptr<rollout_target> owned, rollout_target* borrowed, rollout_options options, int stage, bool held,
          event_sink sink, rollout_clock now);
  std::unique_ptr<rollout_target> own_target_;  // the router's adapter, when built over a router
  rollout_target& route_;
  rollout_clock now_;
  rollout_options options_;
  event_sink sink_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int stage_;
  bool held_;
  int last_held_stage_;  // the last stage that held for its whole hold time (-1: none)
  std::chrono::steady_clock::time_point stage_since_;
  std::deque<sample> samples_;
  std::string last_breach_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace tandem::proxy
