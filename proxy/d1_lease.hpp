// The D1 replication lease: one tandem at a time replicates to or from a D1 database and prunes
// its journal (several d1-only instances behind a load balancer need no lease: they only serve).
//
// A row of `_tandem_lease` in D1 names the holder (its owner id and description) and when the
// lease expires, by D1's own clock. It is taken with one conditional statement (only if absent,
// expired, or already ours), renewed every third of its duration, deleted on a clean stop, and
// taken over only once expired. The holder counts its lease as valid until the moment it sent
// the last successful renewal plus the duration, less a tenth: D1 expires it later than that,
// so no two instances ever hold it at once, whatever their clocks say. A brief outage does not
// make the holder give up: it keeps retrying, replicates again as soon as a renewal succeeds,
// and loses the lease only when another instance took it after it expired (or found its process
// gone, on the same host: a restart after a crash need not wait for the expiry). Batches to D1 carry
// a fence (replication_permit::fence): one that arrives after the lease passed on fails whole.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <boost/json/object.hpp>

#include "backends/store.hpp"
#include "proxy/metrics.hpp"
#include "proxy/owner.hpp"
#include "proxy/replicator.hpp"

namespace tandem::proxy {

struct d1_lease_options {
  std::string role = "replication";
  std::chrono::milliseconds duration{30000};
  std::string database;  // "D1 database <id> at <endpoint>", for messages
};

class d1_lease final : public replication_permit {
 public:
  // `d1` is the lease's own D1 store, so that renewals never queue behind replication batches.
  d1_lease(std::unique_ptr<backends::store> d1, owner_identity self, d1_lease_options options);
  // Stops renewing without releasing (a crash's behaviour: the lease then expires).
  ~d1_lease() override;
  d1_lease(const d1_lease&) = delete;
  d1_lease& operator=(const d1_lease&) = delete;

  // Takes the lease and keeps it (renewed on the lease's own thread) until release(). While
  // another instance holds it, tries again until `deadline`, calling `waiting(holder, expires_in)`
  // once; BAD_REQUEST naming the holder if it still holds it then. When D1 cannot be reached,
  // returns at once: the thread keeps trying, and hold_back() says why replication waits.
  // Idempotent while kept. Blocking; thread-safe.
  backends::outcome<void> acquire(backends::clock::time_point deadline,
                                  const std::function<void(const owner_identity&, std::chrono::milliseconds)>& waiting = {});
  // Stops keeping it and deletes the row if it is still ours (bounded; best effort when D1 is
  // down: it then expires). Idempotent; thread-safe.
  void release();

  // The description to write, at once (the listen address, once known).
  void describe(const owner_identity& self);
  // The metrics the lease's gauge and counter go to (null: none). Thread-safe.
  void attach(dual_metrics* metrics);

  // replication_permit
  std::string hold_back() const override;
  std::optional<protocol::statement> fence(std::string_view store) const override;

  // {"role", "state", "self", "holder", "expiresInMs", "expiresAt", "durationMs", "lastError",
  // "tookOverFrom", "losses"}, as `ctl status` and /status show it.
  boost::json::object status() const;
  bool held() const { return hold_back().empty(); }

 private:
  enum class state { released, taking, held, elsewhere };
  struct reading;
  // One take; once more, naming it, when the holder is a process gone from this host.
  backends::outcome<reading> take(backends::clock::time_point deadline);
  // The conditional take; `dead`: an owner id known dead, taken over even before it expires.
  backends::outcome<reading> take_once(backends::clock::time_point deadline, const std::string& dead);
  owner_identity self_snapshot() const;
  // Applies an attempt's outcome (sent at `sent`); returns the time of the next one. Requires mu_.
  backends::clock::time_point record_locked(const backends::outcome<reading>& r, backends::clock::time_point sent);
  void publish_locked();
  void loop();
  std::chrono::milliseconds renew_interval() const { return std::max(options_.duration / 3, std::chrono::milliseconds(1)); }
  std::chrono::milliseconds retry_interval() const;

  std::unique_ptr<backends::store> d1_;
  d1_lease_options options_;
  std::atomic<dual_metrics*> metrics_{nullptr};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  owner_identity self_;
  state state_ = state::released;
  bool keep_ = false;  // the thread keeps the lease
  bool renew_now_ = false;  // the description changed: write it at once
  backends::clock::time_point valid_until_{};
  owner_identity holder_;                     // the holder as last read
  std::int64_t holder_expires_at_ms_ = 0;     // by D1's clock, as last read
  backends::clock::time_point holder_expiry_{};  // the same on this process's steady clock
  std::optional<owner_identity> took_over_from_;
  std::string last_error_;
  std::uint64_t losses_ = 0;
  bool attempted_ = false;  // a take was sent: release() deletes
  std::thread thread_;
};

}  // namespace tandem::proxy
