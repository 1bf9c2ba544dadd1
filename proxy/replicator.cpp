#include "proxy/replicator.hpp"

#include <spdlog/spdlog.h>

#include <future>
#include <map>
#include <limits>
#include <random>

#include "protocol/codec.hpp"

namespace tandem::proxy {
namespace {

using backends::internal_until;

using backends::clock;
using backends::entry_kind;
using backends::journal_entry;
using protocol::query_result;
using protocol::statement;

// "SQLite" or "D1", as a sentence names them.
std::string display_name(const backends::store& s) { return s.name() == "d1" ? "D1" : "SQLite"; }

}  // namespace

backends::outcome<std::vector<query_result>> run_batch(backends::store& s, std::vector<statement> statements,
                                                       backends::exec_options options) {
  std::promise<backends::outcome<std::vector<query_result>>> p;
  auto f = p.get_future();
  s.execute_batch(std::move(statements), options, [&p](auto r) { p.set_value(std::move(r)); });
  return f.get();
}

// One statement on a store, waited for. A read goes to the store's read path (on SQLite, the
// reader pool), not to its writer's queue behind the commits in flight, as a batch would.
backends::outcome<query_result> run_query(backends::store& s, statement st, backends::exec_options options) {
  std::promise<backends::outcome<query_result>> p;
  auto f = p.get_future();
  s.execute(std::move(st), options, [&p](auto r) { p.set_value(std::move(r)); });
  return f.get();
}

backends::outcome<backends::journal_identity> ensure_journal(backends::store& s, backends::exec_options options) {
  auto r = run_batch(s, backends::journal_identity_statements(), options);
  if (!r) return r.error();
  // `_tandem_applied` rows name their journal since tandem 0.x; an older table gets the column.
  auto probe = run_batch(s, {backends::applied_journal_probe_statement()}, options);
  if (!probe && probe.error().message.find("no such column") != std::string::npos) {
    if (auto up = run_batch(s, {backends::applied_journal_upgrade_statement()}, options); !up) return up.error();
  } else if (!probe) {
    return probe.error();
  }
  return backends::read_journal_identity(*r);
}

replicator::replicator(backends::store& leader, backends::store& follower, replicator_options options,
                       dual_metrics& metrics)
    : leader_(leader),
      follower_(follower),
      options_(options),
      metrics_(metrics),
      source_(leader.name()),
      verify_(options.verify_writes) {}

replicator::~replicator() { stop(); }

void replicator::start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] { loop(); });
}

void replicator::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  fire_waiters(true);
  metrics_.follower_rebuild_needed.store(0);  // a replicator that follows again will say so itself
}

void replicator::notify(std::int64_t seq) {
  {
    std::lock_guard lock(mu_);
    if (seq > known_leader_seq_) known_leader_seq_ = seq;
    if (unapplied_since_ms_ == 0 && known_leader_seq_ > applied_) unapplied_since_ms_ = backends::wall_ms();
    refresh_lag_locked();
  }
  metrics_.leader_seq.store(seq, std::memory_order_relaxed);
  cv_.notify_all();
}

void replicator::wait_applied(std::int64_t seq, clock::time_point deadline, std::function<void(bool)> done) {
  {
    std::lock_guard lock(mu_);
    if (applied_ < seq && !stop_) {
      waiters_.emplace(seq, std::make_pair(deadline, std::move(done)));
      cv_.notify_all();
      return;
    }
  }
  done(applied() >= seq);
}

void replicator::fire_waiters(bool all_expired) {
  std::vector<std::pair<std::function<void(bool)>, bool>> ready;
  {
    std::lock_guard lock(mu_);
    const auto now = clock::now();
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      const bool reached = it->first <= applied_;
      if (reached || all_expired || it->second.first <= now) {
        ready.emplace_back(std::move(it->second.second), reached);
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& [done, reached] : ready) done(reached);
}

// The next time the loop must look up by itself: the earliest waiter's deadline, or a poll
// (an entry committed before a restart, or by another process, sends no notify).
clock::time_point replicator::next_wake_locked() const {
  std::optional<clock::time_point> earliest;
  for (const auto& [seq, w] : waiters_) earliest = earliest ? std::min(*earliest, w.first) : w.first;
  return next_wake(clock::now(), earliest);
}

void replicator::pause() {
  {
    // Returns once no batch is in flight: after pause(), the follower changes no more.
    std::unique_lock lock(mu_);
    paused_ = true;
    cv_.wait(lock, [&] { return !applying_; });
  }
  metrics_.replication_paused.store(1);
}

void replicator::reread_position() {
  std::lock_guard lock(mu_);
  ready_ = false;
  single_until_ = 0;
}

void replicator::pause_self(std::string reason, boost::json::object details) {
  {
    std::lock_guard lock(mu_);
    paused_ = true;
    pause_reason_ = reason;
  }
  metrics_.replication_paused.store(1);
  spdlog::error("replication {} -> {} paused: {}; `tandem ctl resume-replication` once checked", source_, follower_.name(), reason);
  details["reason"] = reason;
  if (options_.on_event) options_.on_event("replication paused", std::move(details));
}

void replicator::resume() {
  {
    std::lock_guard lock(mu_);
    paused_ = false;
    pause_reason_.clear();
  }
  metrics_.replication_paused.store(0);
  cv_.notify_all();
}

bool replicator::paused() const {
  std::lock_guard lock(mu_);
  return paused_;
}

std::int64_t replicator::applied() const {
  std::lock_guard lock(mu_);
  return applied_;
}

std::int64_t replicator::known_leader_seq() const {
  std::lock_guard lock(mu_);
  return known_leader_seq_;
}

std::string replicator::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

std::optional<replicator::stopped_entry> replicator::stopped() const {
  std::lock_guard lock(mu_);
  return stopped_;
}

boost::json::object replicator::status() const {
  std::lock_guard lock(mu_);
  boost::json::object o{{"applied", applied_}, {"paused", paused_}, {"lastError", last_error_}};
  if (pause_reason_.empty()) o["pausedReason"] = nullptr;
  else o["pausedReason"] = pause_reason_;
  if (stopped_) {
    o["stopped"] = boost::json::object{{"seq", stopped_->seq},
                                       {"sql", stopped_->sql},
                                       {"error", stopped_->error},
                                       {"sinceMs", stopped_->since_ms},
                                       {"attempts", stopped_->attempts},
                                       {"choices", "fix the follower and wait (it is retried), `tandem ctl skip " + std::to_string(stopped_->seq) +
                                                       "` (the follower then lacks this write), or rebuild D1 (tandem migrate --via-control)"}};
  } else {
    o["stopped"] = nullptr;
  }
  if (rebuild_) {
    o["rebuild"] = boost::json::object{{"reason", *rebuild_}, {"action", rebuild_advice()}};
  } else {
    o["rebuild"] = nullptr;
  }
  return o;
}

std::optional<std::string> replicator::rebuild_needed() const {
  std::lock_guard lock(mu_);
  return rebuild_;
}

std::string replicator::rebuild_advice() const {
  if (follower_.name() == "d1") {
    return "Rebuild D1 from SQLite while tandem runs: empty the D1 database, then tandem migrate --from sqlite:PATH --to d1 "
           "--via-control SOCKET (replication then goes on from the copied snapshot)";
  }
  return "SQLite cannot follow D1 from here: copy D1 into a new SQLite file with writes stopped (tandem migrate --from d1 "
         "--to sqlite:NEW), or go back to dual-sqlite and rebuild D1 from SQLite";
}

backends::outcome<void> replicator::skip(std::int64_t seq, clock::time_point deadline) {
  auto refuse = [](std::string m) { return protocol::error{protocol::errc::bad_request, std::move(m), {}, {}}; };
  const bool was_paused = paused();
  pause();  // no batch in flight from here on
  auto done = [&](backends::outcome<void> r) {
    if (!was_paused) resume();
    return r;
  };
  std::int64_t at;
  std::string not_stopped, journal;
  {
    std::lock_guard lock(mu_);
    journal = leader_journal_;
    if (!stopped_ || stopped_->seq != seq) {
      not_stopped = "seq " + std::to_string(seq) + " is not the entry replication stopped at" +
                    (stopped_ ? " (that is " + std::to_string(stopped_->seq) + ")" : " (it has not stopped)");
    }
    at = applied_;
  }
  if (!not_stopped.empty()) return done(refuse(not_stopped));
  if (at != seq - 1) return done(refuse("the follower stands at " + std::to_string(at) + ", not right before " + std::to_string(seq)));
  auto r = run_batch(follower_, {backends::applied_guard(source_, at), backends::applied_statement(source_, journal, seq)}, internal_until(deadline));
  if (!r) return done(r.error());
  {
    std::lock_guard lock(mu_);
    applied_ = seq;
    stopped_.reset();
    last_error_.clear();
    single_until_ = 0;
    metrics_.applied_seq.store(applied_);
    metrics_.replication_stopped_seq.store(0);
    refresh_lag_locked();
  }
  spdlog::warn("replication {} -> {}: seq {} skipped by the operator; the follower does not have that write", source_, follower_.name(), seq);
  cv_.notify_all();
  fire_waiters(false);
  return done({});
}

void replicator::refresh_lag_locked() {
  const std::int64_t entries = applied_ < 0 ? 0 : std::max<std::int64_t>(known_leader_seq_ - applied_, 0);
  metrics_.lag_entries.store(entries);
  metrics_.lag_ms.store(entries > 0 && unapplied_since_ms_ > 0 ? std::max<std::int64_t>(backends::wall_ms() - unapplied_since_ms_, 0) : 0);
}

void replicator::set_error(std::string e) {
  std::lock_guard lock(mu_);
  if (e != last_error_) spdlog::warn("replication {} -> {}: {}", source_, follower_.name(), e);
  last_error_ = std::move(e);
  ready_ = false;  // the outcome of what was in flight is unknown: read the applied sequence again
}

backends::outcome<std::int64_t> replicator::leader_max_seq() {
  auto r = run_batch(leader_, {backends::journal_max_seq_statement()}, internal_until(clock::now() + options_.request_timeout));
  if (!r) return r.error();
  return backends::read_figure(r->at(0));
}

bool replicator::wait_caught_up(clock::time_point deadline) {
  auto target = leader_max_seq();
  if (!target) return false;
  std::unique_lock lock(mu_);
  if (*target > known_leader_seq_) known_leader_seq_ = *target;
  cv_.notify_all();
  return cv_.wait_until(lock, deadline, [&] { return applied_ >= *target || stop_; }) && applied_ >= *target;
}

// Creates tandem's tables on both stores if missing, reads where the follower stands, and
// judges whether it can go on from there with the leader's journal.
bool replicator::prepare() {
  const auto deadline = clock::now() + options_.request_timeout;
  backends::journal_identity journal;
  for (backends::store* s : {&follower_, &leader_}) {
    auto id = ensure_journal(*s, internal_until(deadline));
    if (!id) {
      set_error("cannot create tandem's tables on " + std::string(s->name()) + ": " + id.error().message);
      return false;
    }
    if (s == &leader_) journal = std::move(*id);
  }
  auto r = run_batch(follower_, {backends::applied_position_statement(source_)}, internal_until(deadline));
  if (!r) {
    set_error("cannot read the applied sequence on " + std::string(follower_.name()) + ": " + r.error().message);
    return false;
  }
  const auto at = backends::read_applied_position(r->at(0));
  const std::string follower = display_name(follower_), leader = display_name(leader_);
  std::string why = journal.follower_stale.empty() ? backends::judge_position(at, journal, follower) : outside_journal(journal.follower_stale);
  if (why.empty() && leader_.journaling_stopped()) why = outside_journal(leader_.journal_stop_reason());
  if (!why.empty()) {
    refuse_following(why);
    return false;
  }
  {
    std::lock_guard lock(mu_);
    if (rebuild_) spdlog::info("replication {} -> {}: the follower can follow again (at {})", source_, follower, at.seq);
    rebuild_.reset();
    must_rebuild_.store(false);
    metrics_.follower_rebuild_needed.store(0);
    leader_journal_ = journal.id;
    applied_ = at.present ? at.seq : 0;
    if (journal.high_water > known_leader_seq_) known_leader_seq_ = journal.high_water;
    ready_ = true;
    metrics_.applied_seq.store(applied_);
    refresh_lag_locked();
  }
  cv_.notify_all();  // wait_caught_up() may already be satisfied
  fire_waiters(false);
  return true;
}

backends::outcome<std::vector<journal_entry>> replicator::fetch(std::size_t max_entries) {
  std::int64_t after;
  {
    std::lock_guard lock(mu_);
    after = applied_;
  }
  // A query, not a batch: on SQLite it runs on a reader, so a commit being synced on the writer
  // does not delay the copy of the entries it follows.
  auto r = run_query(leader_, backends::journal_read_statement(after, static_cast<std::int64_t>(max_entries)),
                     internal_until(clock::now() + options_.request_timeout));
  if (!r) return r.error();
  const bool fenced = options_.permit && options_.permit->fence(follower_.name());
  return backends::read_journal_entries(
      *r, {options_.batch_bytes, options_.batch_statements, backends::k_batch_overhead + (fenced ? 1 : 0)}, leader_.name());
}

void replicator::verification_failed(std::int64_t seq, const std::string& sql, const std::string& what, boost::json::object details) {
  metrics_.verification_failures.fetch_add(1);
  // The statement, never its parameter values.
  spdlog::error("verification failed at seq {}: {}: {}", seq, what, sql);
  if (!options_.pause_on_verification_failure) return;
  // This runs inside apply(), on the replicator's thread: pause() would wait for the batch in
  // flight, which is this one, and never return. The batch has committed; pausing here stops
  // the next one.
  details["seq"] = seq;
  details["sql"] = sql;
  pause_self("verification failed at seq " + std::to_string(seq) + " (dual.pause_on_verification_failure): " + what, std::move(details));
}

// A statement entry: each statement changed as many rows on the follower as on the leader.
void replicator::verify_changes(const journal_entry& e, const std::vector<query_result>& results, std::size_t first) {
  if (e.changes.size() != e.statements.size()) return;
  for (std::size_t k = 0; k < e.statements.size(); ++k) {
    // A D1 leader records changes() (its journal INSERT runs in the write's own batch, where the
    // statement's meta is not known yet): the follower's own-rows count is the one to compare.
    const auto& meta = results.at(first + k).meta;
    const auto follower_changes = source_ == "d1" ? meta.direct_changes : meta.changes;
    const auto leader_changes = e.changes[k];
    if (leader_changes < 0 || follower_changes == leader_changes) continue;  // -1: not a count (a read, a schema change)
    verification_failed(e.seq, e.statements[k].sql,
                        source_ + " changed " + std::to_string(leader_changes) + " row(s), " + std::string(follower_.name()) + " changed " +
                            std::to_string(follower_changes),
                        {{"statement", static_cast<std::int64_t>(k)}, {"leaderChanges", leader_changes}, {"followerChanges", follower_changes}});
    return;
  }
}

// Row-image entries: the rows the follower holds now, read back, against what the leader held
// after each write (backends::row_check). A row's last check in the batch is the one that counts;
// a statement entry after it may have changed the row again, so its checks are dropped.
void replicator::verify_rows(const std::vector<journal_entry>& entries) {
  struct pending {
    std::int64_t seq;
    const backends::row_check* check;
  };
  std::vector<pending> checks;
  std::map<std::string, std::size_t> last;  // a row's address, encoded, to its place in `checks`
  for (const auto& e : entries) {
    if (e.kind != entry_kind::row_images) {
      checks.clear();
      last.clear();
      continue;
    }
    for (const auto& c : e.checks) {
      std::string key = c.address;
      for (const auto& v : c.query.params.positional) protocol::append_value(key, v);
      auto [it, fresh] = last.emplace(std::move(key), checks.size());
      if (fresh) checks.push_back({e.seq, &c});
      else checks[it->second] = {e.seq, &c};
    }
  }
  // Client SQL, not internal: the D1 store reads it in its exact, typed form. With D1's read
  // replication, from the primary, which holds the batch that just committed.
  backends::exec_options read;
  read.deadline = clock::now() + options_.request_timeout;
  read.bookmark = "first-primary";
  const std::size_t chunk = std::max<std::size_t>(options_.batch_statements, 1);
  for (std::size_t from = 0; from < checks.size(); from += chunk) {
    std::vector<statement> queries;
    for (std::size_t i = from; i < std::min(checks.size(), from + chunk); ++i) queries.push_back(checks[i].check->query);
    auto r = run_batch(follower_, std::move(queries), read);
    if (!r) {
      spdlog::warn("replication {} -> {}: the rows of seq {}-{} could not be read back for verification: {}", source_, follower_.name(),
                   entries.front().seq, entries.back().seq, r.error().message);
      return;
    }
    for (std::size_t i = from; i < std::min(checks.size(), from + chunk); ++i) {
      // An answer the store could not give exactly (D1 without its typed form) proves nothing.
      if (!r->at(i - from).meta.exact) continue;
      const std::string what = backends::judge_check(*checks[i].check, r->at(i - from));
      if (what.empty()) continue;
      verification_failed(checks[i].seq, checks[i].check->query.sql, what, {{"difference", what}});
    }
  }
}

// What a batch the follower did not apply leads to (plan_failure). True when nothing is wrong
// after all (a late commit of an earlier copy): the loop goes on without backoff.
bool replicator::failed_batch(const std::vector<journal_entry>& entries, const protocol::error& e) {
  const failure_plan plan = plan_failure(e, entries.size());
  if (plan.kind == batch_failure::late_commit) {
    // The guard: an earlier copy of this batch (sent before a lost answer) committed after all.
    // Nothing applied twice; read the position again and go on from there.
    spdlog::info("replication {} -> {}: seq {} was already applied (a late commit); reading the position again", source_,
                 follower_.name(), entries.front().seq);
    metrics_.late_commits.fetch_add(1);
    std::lock_guard lock(mu_);
    ready_ = false;
    return true;
  }
  if (plan.kind == batch_failure::fenced) {
    set_error("the batch from seq " + std::to_string(entries.front().seq) + " was refused by " + std::string(follower_.name()) +
              ": this instance no longer holds the replication lease (" + held_back() + ")");
    return false;
  }
  if (plan.counts_as_failure) metrics_.secondary_failures.fetch_add(1);
  set_error("applying " + batch_name(entries, e.index) + " on " + std::string(follower_.name()) + " failed: " + e.message);
  std::lock_guard lock(mu_);
  if (plan.isolate) single_until_ = entries.back().seq;
  if (!plan.stop_at_entry) return false;
  // The follower answered, and said no: this entry will not apply by waiting alone.
  if (!stopped_ || stopped_->seq != entries[0].seq) {
    stopped_ = stopped_entry{entries[0].seq, failing_sql(entries[0], e.index), e.message, backends::wall_ms(), 0};
    spdlog::error("replication {} -> {} stopped at seq {}: the follower refuses it ({}); see `tandem ctl status`", source_,
                  follower_.name(), entries[0].seq, e.message);
  }
  stopped_->error = e.message;
  ++stopped_->attempts;
  metrics_.replication_stopped_seq.store(entries[0].seq);
  return false;
}

// Applies the entries (consecutive, starting right after applied_) in one atomic batch.
bool replicator::apply(std::vector<journal_entry>& entries) {
  std::vector<statement> batch;
  std::int64_t built_on;
  std::string journal;
  {
    std::lock_guard lock(mu_);
    built_on = applied_;
    journal = leader_journal_;
  }
  batch.push_back(backends::applied_guard(source_, built_on));
  for (const auto& e : entries) batch.insert(batch.end(), e.statements.begin(), e.statements.end());
  batch.push_back(backends::applied_statement(source_, journal, entries.back().seq));
  // Last, so that the entries' statement indices stay as they are: the batch is atomic anyway.
  if (options_.permit) {
    if (auto fence = options_.permit->fence(follower_.name())) batch.push_back(std::move(*fence));
  }
  const auto start = clock::now();
  auto r = run_batch(follower_, std::move(batch), internal_until(start + options_.request_timeout));
  const double ms = std::chrono::duration<double, std::milli>(clock::now() - start).count();
  if (!r) return failed_batch(entries, r.error());
  std::size_t at = 1;  // after the guard
  const bool verifying = verify_.load();
  bool images = false;
  for (const auto& e : entries) {
    if (verifying && e.kind == entry_kind::statements) verify_changes(e, *r, at);
    images = images || e.kind == entry_kind::row_images;
    at += e.statements.size();
    metrics_.secondary_latency.record(ms / static_cast<double>(entries.size()));
  }
  if (verifying && images) verify_rows(entries);
  metrics_.successful_dual_writes.fetch_add(entries.size());
  {
    std::lock_guard lock(mu_);
    applied_ = entries.back().seq;
    last_error_.clear();
    if (stopped_ && stopped_->seq <= applied_) {
      spdlog::info("replication {} -> {}: seq {} applied after {} refusal(s)", source_, follower_.name(), stopped_->seq, stopped_->attempts);
      stopped_.reset();
      metrics_.replication_stopped_seq.store(0);
    }
    metrics_.applied_seq.store(applied_);
    // The next unapplied entry was created after this batch's last one: its age is at most this.
    unapplied_since_ms_ = known_leader_seq_ > applied_ ? entries.back().created_ms : 0;
    refresh_lag_locked();
  }
  cv_.notify_all();  // wait_caught_up()
  fire_waiters(false);
  return true;
}

void replicator::prune() {
  const auto now = clock::now();
  if (now < next_prune_) return;
  // A journal past half its bound keeps applied entries no longer than it must: the retention
  // gives way before journaling has to stop.
  const std::int64_t bytes = leader_.journal_bytes(), bound = leader_.journal_max_bytes();
  const bool pressed = bound > 0 && bytes > bound / 2;
  next_prune_ = now + (pressed ? std::chrono::milliseconds(1000)
                               : std::min<std::chrono::milliseconds>(options_.journal_retention / 4 + std::chrono::milliseconds(1),
                                                                     std::chrono::seconds(10)));
  const std::int64_t upto = applied();
  const std::int64_t before = pressed ? std::numeric_limits<std::int64_t>::max() : backends::wall_ms() - options_.journal_retention.count();
  // Another instance following the same leader may not have applied these yet: only the
  // permit's holder prunes, and, on D1, only while it still holds it when the DELETE commits.
  if (!held_back().empty()) return;
  std::vector<statement> batch;
  if (options_.permit) {
    if (auto fence = options_.permit->fence(leader_.name())) batch.push_back(std::move(*fence));
  }
  // A store that counts its journal's bytes is told what was freed.
  const bool counted = bytes >= 0;
  batch.push_back(backends::journal_prune_statement(upto, before, counted));
  const std::size_t deleted = batch.size() - 1;
  auto r = run_batch(leader_, std::move(batch), internal_until(now + options_.request_timeout));
  if (!r) return;
  const auto& res = r->at(deleted);
  metrics_.journal_pruned.fetch_add(static_cast<std::uint64_t>(counted ? res.rows.size() : static_cast<std::size_t>(res.meta.changes)));
  if (counted) {
    std::int64_t freed = 0;
    for (const auto& row : res.rows) {
      if (const auto* v = std::get_if<std::int64_t>(&row.at(0))) freed += *v;
    }
    leader_.journal_pruned(freed);
  }
  metrics_.journal_bytes.store(std::max<std::int64_t>(leader_.journal_bytes(), 0));
}

void replicator::refuse_following(const std::string& why) {
  {
    std::lock_guard lock(mu_);
    if (!rebuild_ || *rebuild_ != why) {
      spdlog::error("replication {} -> {} refused: {}. {}", source_, follower_.name(), why, rebuild_advice());
    }
    rebuild_ = why;
    must_rebuild_.store(true);
    last_error_ = why;
    ready_ = false;
    applied_ = -1;  // nothing is pruned, no read waits for it, no waiter is satisfied
    metrics_.applied_seq.store(0);
    metrics_.follower_rebuild_needed.store(1);
    refresh_lag_locked();
  }
  fire_waiters(false);
}

// The same words whether the reason comes from the leader's follower_stale mark or from the
// store that just stopped journaling (the mark holds that store's reason): one refusal, logged once.
std::string replicator::outside_journal(const std::string& reason) const {
  return display_name(follower_) + " lacks writes " + display_name(leader_) + " took outside the journal: " + reason;
}

std::string replicator::held_back() { return options_.permit ? options_.permit->hold_back() : std::string(); }

// Nothing to apply: prune, then wait for a new entry, a pause, stop, or a waiter's deadline (or
// the poll: an entry committed before a restart, or by another process, sends no notify).
void replicator::idle() {
  {
    std::lock_guard lock(mu_);
    if (known_leader_seq_ <= applied_) unapplied_since_ms_ = 0;
    refresh_lag_locked();
  }
  prune();
  std::unique_lock lock(mu_);
  const std::int64_t seen = applied_;
  const auto poll = clock::now() + std::chrono::milliseconds(200);
  while (!stop_ && !paused_ && known_leader_seq_ <= seen) {
    const auto wake = std::min(poll, next_wake_locked());
    if (clock::now() >= wake) break;
    cv_.wait_until(lock, wake);
  }
}

void replicator::loop() {
  std::mt19937_64 rng(std::random_device{}());
  auto backoff = options_.retry_min;
  auto failed = [&] {
    // Exponential backoff with full jitter; wakes early for stop, never for notify.
    const auto retry = next_retry(backoff, options_.retry_max, std::uniform_real_distribution<double>(0.0, 1.0)(rng));
    const auto wait = retry.wait;
    backoff = retry.next_backoff;
    const auto until = clock::now() + wait;
    std::unique_lock lock(mu_);
    refresh_lag_locked();  // an outage: the lag grows while nothing applies
    while (!stop_ && clock::now() < until) {
      cv_.wait_until(lock, std::min(until, next_wake_locked()));
      lock.unlock();
      fire_waiters(false);
      lock.lock();
    }
  };
  for (;;) {
    loop_step step;
    {
      std::lock_guard lock(mu_);
      step = next_step({stop_, paused_, ready_, leader_.journaling_stopped(), applied_, single_until_, options_.batch_entries});
    }
    if (step.action == loop_action::stop) break;
    if (step.action == loop_action::wait) {
      // Paused: waiters still get their answer at their deadline.
      std::unique_lock lock(mu_);
      while (paused_ && !stop_) {
        refresh_lag_locked();
        cv_.wait_until(lock, next_wake_locked());
        lock.unlock();
        fire_waiters(false);
        lock.lock();
      }
      continue;
    }
    fire_waiters(false);
    if (step.action == loop_action::refuse) {
      refuse_following(outside_journal(leader_.journal_stop_reason()));
      failed();
      continue;
    }
    if (step.action == loop_action::prepare) {
      if (!prepare()) failed();
      continue;  // the next turn fetches
    }
    const std::size_t max_entries = step.max_entries;
    auto entries = fetch(max_entries);
    if (!entries) {
      set_error("cannot read the journal on " + std::string(leader_.name()) + ": " + entries.error().message);
      failed();
      continue;
    }
    if (entries->empty()) {
      backoff = options_.retry_min;
      idle();
      continue;
    }
    if (auto why = held_back(); !why.empty()) {
      set_error(why);  // and the position is read again once entitled: another may have moved it
      failed();
      continue;
    }
    {
      // A pause that arrived while fetching: nothing more is applied (see pause()).
      std::lock_guard lock(mu_);
      if (paused_ || stop_) continue;
      applying_ = true;
    }
    const bool applied = apply(*entries);
    {
      std::lock_guard lock(mu_);
      applying_ = false;
    }
    cv_.notify_all();  // pause() waits for the batch in flight
    if (applied) backoff = options_.retry_min;
    else failed();
  }
}

}  // namespace tandem::proxy
