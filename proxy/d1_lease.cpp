#include "proxy/d1_lease.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <cerrno>

#include <boost/json/serialize.hpp>

#include "backends/d1_store.hpp"

namespace tandem::proxy {
namespace {

using backends::internal_until;

using backends::clock;
using std::chrono::milliseconds;

// D1's clock in ms since the epoch. julianday() rather than unixepoch('subsec'), which older
// SQLite (3.40, the follower's) does not know.
#define TANDEM_D1_NOW "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"

constexpr const char* k_lease_schema =
    "CREATE TABLE IF NOT EXISTS _tandem_lease (role TEXT PRIMARY KEY, owner TEXT NOT NULL, description TEXT NOT NULL, "
    "expires_ms INTEGER NOT NULL, taken_ms INTEGER NOT NULL)";
constexpr const char* k_read_lease =
    "SELECT owner, description, expires_ms, expires_ms - " TANDEM_D1_NOW " FROM _tandem_lease WHERE role = ?";
// Takes the lease only if absent, expired, or ours (the holder's take is its renewal), or held by
// the one owner named last, known dead.
constexpr const char* k_take_lease =
    "INSERT INTO _tandem_lease (role, owner, description, expires_ms, taken_ms) VALUES (?, ?, ?, " TANDEM_D1_NOW " + ?, " TANDEM_D1_NOW ") "
    "ON CONFLICT (role) DO UPDATE SET owner = excluded.owner, description = excluded.description, expires_ms = excluded.expires_ms, "
    "taken_ms = CASE WHEN _tandem_lease.owner = excluded.owner THEN _tandem_lease.taken_ms ELSE excluded.taken_ms END "
    "WHERE _tandem_lease.owner = excluded.owner OR _tandem_lease.expires_ms <= " TANDEM_D1_NOW " OR _tandem_lease.owner = ?";
constexpr const char* k_release_lease = "DELETE FROM _tandem_lease WHERE role = ? AND owner = ?";
// The fence: json_extract() with a path that is not one fails, and D1's error quotes the path.
constexpr const char* k_fence =
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM _tandem_lease WHERE role = ? AND owner = ? AND expires_ms > " TANDEM_D1_NOW
    ") THEN 0 ELSE json_extract('{}', ?) END";

protocol::statement sql(const char* text, std::vector<protocol::value> params) {
  protocol::statement st;
  st.sql = text;
  st.params.positional = std::move(params);
  return st;
}

// The holder ran on this host and its pid is gone: it replicates no more (its batches still in
// flight fail the fence once the lease changes hands). Another namespace's pid that happens to be
// free here only makes a live holder hand over early, which its fence and loss handling cover.
bool gone_from_this_host(const owner_identity& holder, const owner_identity& self) {
  return holder.pid > 0 && holder.host == self.host && !holder.host.empty() && ::kill(static_cast<pid_t>(holder.pid), 0) != 0 &&
         errno == ESRCH;
}

std::string seconds_text(milliseconds ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms.count()) / 1000.0);
  return buf;
}

}  // namespace

// One row of _tandem_lease as a take left it.
struct d1_lease::reading {
  bool ours = false;
  owner_identity holder;
  std::int64_t expires_at_ms = 0;  // D1's clock
  milliseconds remaining{0};       // expires_at_ms - D1's now
  std::optional<owner_identity> replaced;  // the expired (or dead) holder this take replaced
  bool replaced_dead = false;
};

d1_lease::d1_lease(std::unique_ptr<backends::store> d1, owner_identity self, d1_lease_options options)
    : d1_(std::move(d1)), options_(std::move(options)), self_(std::move(self)) {}

d1_lease::~d1_lease() {
  {
    std::lock_guard lock(mu_);
    keep_ = false;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  d1_->shutdown();
}

milliseconds d1_lease::retry_interval() const {
  return std::clamp(options_.duration / 10, milliseconds(50), milliseconds(2000));
}

void d1_lease::attach(dual_metrics* metrics) {
  // The lease's own requests count among D1's (a REST API's rate limit counts them too).
  if (auto* d = dynamic_cast<backends::d1_store*>(d1_.get())) d->count_requests_into(metrics ? &metrics->d1_requests : nullptr);
  std::lock_guard lock(mu_);
  metrics_.store(metrics);
  publish_locked();
}

void d1_lease::describe(const owner_identity& self) {
  {
    std::lock_guard lock(mu_);
    self_ = self;
    renew_now_ = true;
  }
  cv_.notify_all();
}

void d1_lease::publish_locked() {
  if (auto* m = metrics_.load()) m->replication_lease_held.store(state_ == state::held && clock::now() < valid_until_ ? 1 : 0);
}

backends::outcome<d1_lease::reading> d1_lease::take(clock::time_point deadline) {
  auto r = take_once(deadline, {});
  if (r && !r->ours && gone_from_this_host(r->holder, self_snapshot())) {
    r = take_once(deadline, r->holder.id);
    if (r && r->ours && r->replaced) r->replaced_dead = true;
  }
  return r;
}

owner_identity d1_lease::self_snapshot() const {
  std::lock_guard lock(mu_);
  return self_;
}

backends::outcome<d1_lease::reading> d1_lease::take_once(clock::time_point deadline, const std::string& dead) {
  std::string id, description;
  {
    std::lock_guard lock(mu_);
    id = self_.id;
    description = boost::json::serialize(self_.to_json());
    attempted_ = true;
  }
  // One atomic batch: the row before (who is replaced), the conditional take, the row after.
  auto r = run_batch(*d1_,
                     {sql(k_lease_schema, {}), sql(k_read_lease, {options_.role}),
                      sql(k_take_lease, {options_.role, id, description, std::int64_t{options_.duration.count()}, dead}),
                      sql(k_read_lease, {options_.role})},
                     internal_until(deadline));
  if (!r) return r.error();
  auto row_of = [](const protocol::query_result& q) -> std::optional<reading> {
    if (q.rows.empty() || q.rows[0].size() < 4) return std::nullopt;
    const auto& row = q.rows[0];
    const auto* owner = std::get_if<std::string>(&row[0]);
    const auto* desc = std::get_if<std::string>(&row[1]);
    const auto* expires = std::get_if<std::int64_t>(&row[2]);
    const auto* remaining = std::get_if<std::int64_t>(&row[3]);
    if (!owner || !desc || !expires || !remaining) return std::nullopt;
    reading out;
    out.holder = owner_identity::parse(*desc);
    out.holder.id = *owner;  // the column is what the conditions compare
    out.expires_at_ms = *expires;
    out.remaining = milliseconds(*remaining);
    return out;
  };
  auto after = row_of(r->at(3));
  if (!after) return protocol::error{protocol::errc::internal, "the lease row D1 returned has unexpected types", "d1", {}};
  after->ours = after->holder.id == id;
  if (auto before = row_of(r->at(1)); before && before->holder.id != id && after->ours) after->replaced = before->holder;
  return *after;
}

clock::time_point d1_lease::record_locked(const backends::outcome<reading>& r, clock::time_point sent) {
  const auto now = clock::now();
  clock::time_point next;
  if (!r) {
    last_error_ = r.error().message;
    if (state_ == state::held && now >= valid_until_) {
      spdlog::error("the D1 replication lease could not be renewed within its {} ({}); replication waits until it is",
                    seconds_text(options_.duration), last_error_);
      state_ = state::taking;
    }
    next = now + retry_interval();
  } else if (r->ours) {
    // D1 expires it duration after it ran the take, which was after `sent`; a tenth is left for
    // the two clocks' rates and this thread's own delays.
    valid_until_ = sent + std::min(options_.duration, r->remaining) - options_.duration / 10;
    if (state_ != state::held) {
      if (r->replaced) {
        took_over_from_ = r->replaced;
        spdlog::warn("took over the D1 replication lease of {} from {}: {}", options_.database, r->replaced->describe(),
                     r->replaced_dead ? "that process is gone from this host" : "its lease had expired");
      } else {
        spdlog::info("holds the D1 replication lease of {} (for {}, renewed every {})", options_.database, seconds_text(options_.duration),
                     seconds_text(renew_interval()));
      }
    }
    state_ = state::held;
    last_error_.clear();
    holder_ = self_;
    holder_expires_at_ms_ = r->expires_at_ms;
    holder_expiry_ = sent + r->remaining;
    next = sent + renew_interval();
  } else {
    if (state_ == state::held || (state_ == state::taking && valid_until_ != clock::time_point{})) {
      // It was ours, it expired here (a pause, or D1 out of reach for longer than the lease),
      // and another instance took it, as it may. Replication stops here: never two at once.
      ++losses_;
      if (auto* m = metrics_.load()) m->replication_lease_losses.fetch_add(1);
      spdlog::critical("lost the D1 replication lease of {} to {}: it expired here and that instance took it; this instance no "
                       "longer replicates (it takes the lease again only if that one stops renewing it)",
                       options_.database, r->holder.describe());
    }
    state_ = state::elsewhere;
    valid_until_ = {};
    holder_ = r->holder;
    holder_expires_at_ms_ = r->expires_at_ms;
    holder_expiry_ = sent + r->remaining;
    last_error_.clear();
    // Try again as it expires (it is taken at once then, unless its holder renews it).
    next = now + std::clamp(r->remaining + milliseconds(50), milliseconds(50), renew_interval());
  }
  publish_locked();
  return next;
}

backends::outcome<void> d1_lease::acquire(clock::time_point deadline,
                                          const std::function<void(const owner_identity&, milliseconds)>& waiting) {
  {
    std::lock_guard lock(mu_);
    if (keep_) return {};
    if (state_ == state::released) state_ = state::taking;
  }
  bool told = false;
  for (;;) {
    const auto sent = clock::now();
    // A slow answer here is only a later start, not a lapse: it may take longer than a renewal.
    auto r = take(sent + std::max(renew_interval(), std::min<milliseconds>(options_.duration, std::chrono::seconds(10))));
    std::unique_lock lock(mu_);
    const auto next = record_locked(r, sent);
    if (!r) {
      spdlog::warn("cannot reach D1 to take the replication lease of {} ({}); replication starts once it has it", options_.database,
                   r.error().message);
      break;
    }
    if (r->ours) break;
    const auto now = clock::now();
    if (now >= deadline) {
      state_ = state::released;
      publish_locked();
      return protocol::error{protocol::errc::bad_request,
                             "another tandem holds the replication lease of " + options_.database + ": " + r->holder.describe() +
                                 ", for " + seconds_text(std::max(r->remaining, milliseconds(0))) +
                                 " more (it renews it while it runs, in a dual mode). Stop it first (a clean stop releases the "
                                 "lease; a killed one's expires after ownership.lease_ms), or let this one wait for it: "
                                 "--wait-for-owner SECONDS (ownership.wait_for_owner_ms)",
                             {}, {}};
    }
    lock.unlock();
    if (!told && waiting) waiting(r->holder, std::max(r->remaining, milliseconds(0)));
    told = true;
    std::this_thread::sleep_until(std::min(deadline, std::max(next, now + milliseconds(50))));
  }
  std::lock_guard lock(mu_);
  keep_ = true;
  if (thread_.joinable()) thread_.join();  // a thread from before a release() has ended
  thread_ = std::thread([this] { loop(); });
  return {};
}

void d1_lease::loop() {
  std::unique_lock lock(mu_);
  auto next = state_ == state::held ? clock::now() + renew_interval() : clock::now() + retry_interval();
  for (;;) {
    cv_.wait_until(lock, next, [&] { return !keep_ || renew_now_; });
    if (!keep_) return;
    if (clock::now() < next && !renew_now_) continue;
    renew_now_ = false;
    lock.unlock();
    const auto sent = clock::now();
    auto r = take(sent + renew_interval());
    lock.lock();
    if (!keep_) return;
    next = record_locked(r, sent);
  }
}

void d1_lease::release() {
  bool attempted;
  std::string id;
  {
    std::lock_guard lock(mu_);
    keep_ = false;
    attempted = attempted_ && state_ != state::released;
    id = self_.id;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (attempted) {
    const auto deadline = clock::now() + std::min<milliseconds>(renew_interval(), std::chrono::seconds(5));
    auto r = run_batch(*d1_, {sql(k_release_lease, {options_.role, id})}, internal_until(deadline));
    if (r && r->at(0).meta.changes > 0) {
      spdlog::info("released the D1 replication lease of {}", options_.database);
    } else if (!r) {
      spdlog::warn("could not release the D1 replication lease of {} ({}); it expires by itself", options_.database, r.error().message);
    }
  }
  std::lock_guard lock(mu_);
  state_ = state::released;
  valid_until_ = {};
  attempted_ = false;
  publish_locked();
}

std::string d1_lease::hold_back() const {
  std::lock_guard lock(mu_);
  if (state_ == state::held && clock::now() < valid_until_) return {};
  switch (state_) {
    case state::elsewhere:
      return "the D1 replication lease is held by " + holder_.describe() + ": that instance replicates, this one does not";
    case state::held:
      return "the D1 replication lease is not renewed yet (" + (last_error_.empty() ? std::string("no answer") : last_error_) +
             "); replication waits until it is";
    case state::taking:
      return "this instance has not taken the D1 replication lease yet (" +
             (last_error_.empty() ? std::string("no answer from D1") : last_error_) + ")";
    case state::released: break;
  }
  return "the D1 replication lease is released";
}

std::optional<protocol::statement> d1_lease::fence(std::string_view store) const {
  if (store != "d1") return std::nullopt;
  std::lock_guard lock(mu_);
  return sql(k_fence, {options_.role, self_.id, std::string(k_permit_fence_failed)});
}

boost::json::object d1_lease::status() const {
  std::lock_guard lock(mu_);
  const auto now = clock::now();
  const char* names[] = {"released", "taking", "held", "held elsewhere"};
  const bool valid = state_ == state::held && now < valid_until_;
  boost::json::object o{{"role", options_.role},
                        {"state", state_ == state::held && !valid ? "not renewed" : names[static_cast<int>(state_)]},
                        {"self", self_.id},
                        {"durationMs", options_.duration.count()},
                        {"lastError", last_error_},
                        {"losses", static_cast<std::int64_t>(losses_)}};
  if (state_ == state::held || state_ == state::elsewhere) {
    o["holder"] = holder_.to_json();
    o["expiresInMs"] = std::chrono::duration_cast<milliseconds>(holder_expiry_ - now).count();
    o["expiresAt"] = backends::utc_text(holder_expires_at_ms_);  // D1's clock
  } else {
    o["holder"] = nullptr;
  }
  if (took_over_from_) {
    o["tookOverFrom"] = took_over_from_->to_json();
  } else {
    o["tookOverFrom"] = nullptr;
  }
  return o;
}

}  // namespace tandem::proxy
