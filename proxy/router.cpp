#include "proxy/router.hpp"

#include <spdlog/spdlog.h>

#include <ctime>
#include <random>

#include "proxy/d1_lease.hpp"

namespace tandem::proxy {
namespace {

using backends::internal_until;

using backends::clock;
using protocol::errc;
using protocol::query_result;

using batch_result = backends::outcome<std::vector<query_result>>;

double ms_since(clock::time_point start) {
  return std::chrono::duration<double, std::milli>(clock::now() - start).count();
}

// FNV-1a: stable across builds and restarts (std::hash is not).
std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// Cell by cell, type and bits: -0.0 is not 0.0 (std::variant's == would say it is).
bool same_rows(const query_result& a, const query_result& b) {
  if (a.columns != b.columns || a.rows.size() != b.rows.size()) return false;
  for (std::size_t r = 0; r < a.rows.size(); ++r) {
    if (a.rows[r].size() != b.rows[r].size()) return false;
    for (std::size_t c = 0; c < a.rows[r].size(); ++c)
      if (!protocol::identical(a.rows[r][c], b.rows[r][c])) return false;
  }
  return true;
}

thread_local std::minstd_rand t_rng{std::random_device{}()};

bool sample(int percent) {
  return percent > 0 && (percent >= 100 || static_cast<int>(t_rng() % 100) < percent);
}

}  // namespace

int router::bucket_of(std::string_view routing_key) noexcept { return static_cast<int>(fnv1a(routing_key) % 100); }

router::router(std::unique_ptr<backends::sqlite_store> sqlite, std::unique_ptr<backends::d1_store> d1,
               router_options options)
    : sqlite_(std::move(sqlite)),
      d1_(std::move(d1)),
      options_(options),
      keys_(options.key_memory_keys, options.key_memory),
      mode_(options.initial),
      read_percent_(options.read_percent),
      shadow_percent_(options.shadow_read_percent) {
  if (d1_) d1_->count_requests_into(&metrics_.d1_requests);
  if (options_.lease) {
    options_.replication.permit = options_.lease;
    options_.lease->attach(&metrics_);
  }
  std::unique_lock lock(mu_);
  if (is_dual(mode_)) start_replication_locked();
  // A single mode with the other store configured: that store stops receiving writes now.
  if (mode_ == mode::sqlite_only && sqlite_ && d1_) {
    auto marked = mark_follower_stale(*sqlite_, "tandem started in sqlite-only at " + backends::utc_now() + "; writes made in sqlite-only are not journaled",
                                      clock::now() + std::chrono::seconds(30));
    if (!marked) spdlog::error("cannot record on SQLite that D1 stops following: {}", marked.error().message);
    else if (*marked) stale_marked_at_ = single_writes_;
  } else if (mode_ == mode::d1_only && sqlite_ && d1_) {
    auto marked = mark_follower_stale(*d1_, "tandem started in d1-only at " + backends::utc_now() + "; writes made in d1-only are not journaled",
                                      clock::now() + options_.replication.request_timeout);
    if (!marked) spdlog::error("cannot record on D1 that SQLite stops following: {}", marked.error().message);
  }
}

backends::outcome<bool> router::mark_follower_stale(backends::store& leading, const std::string& reason, clock::time_point deadline) {
  auto journal = ensure_journal(leading, internal_until(deadline));
  if (!journal) return journal.error();
  if (!journal->follower_stale.empty()) return false;
  if (auto r = run_batch(leading, {backends::follower_stale_statement(reason)}, internal_until(deadline)); !r) return r.error();
  spdlog::warn("{} marked: the other store must be rebuilt from it before it follows again ({})", leading.name(), reason);
  return true;
}

router::router(std::unique_ptr<backends::store> only)
    : only_(std::move(only)),
      keys_(0, std::chrono::milliseconds(0)),
      mode_(only_->name() == "d1" ? mode::d1_only : mode::sqlite_only),
      read_percent_(0),
      shadow_percent_(0) {}

router::~router() {
  shutdown();
  if (d1_) d1_->count_requests_into(nullptr);
  if (options_.lease) options_.lease->attach(nullptr);
}

backends::store* router::store_for(mode m, bool leader) const {
  if (only_) return leader ? only_.get() : nullptr;
  switch (m) {
    case mode::sqlite_only: return leader ? sqlite_.get() : nullptr;
    case mode::d1_only: return leader ? d1_.get() : nullptr;
    case mode::dual_sqlite: return leader ? static_cast<backends::store*>(sqlite_.get()) : d1_.get();
    case mode::dual_d1: return leader ? static_cast<backends::store*>(d1_.get()) : sqlite_.get();
  }
  return nullptr;
}

mode router::current_mode() const {
  std::lock_guard lock(mu_);
  return mode_;
}

void router::start_replication_locked() {
  auto* leader = store_for(mode_, true);
  auto* follower = store_for(mode_, false);
  replicator_ = std::make_shared<replicator>(*leader, *follower, options_.replication, metrics_);
  if (mode_ == mode::dual_sqlite) {
    // The leader's journal (and its identity) must exist before the first write; SQLite is
    // local, so create it now.
    if (auto r = ensure_journal(*sqlite_, internal_until(clock::time_point::max())); !r) {
      spdlog::error("cannot create tandem's journal on SQLite: {}", r.error().message);
    }
  }
  replicator_->start();
}

std::shared_ptr<replicator> router::replication() const {
  std::lock_guard lock(mu_);
  return replicator_;
}

void router::set_read_percent(int percent) {
  std::lock_guard lock(mu_);
  read_percent_ = std::clamp(percent, 0, 100);
}

int router::read_percent() const {
  std::lock_guard lock(mu_);
  return read_percent_;
}

void router::set_shadow_read_percent(int percent) {
  std::lock_guard lock(mu_);
  shadow_percent_ = std::clamp(percent, 0, 100);
}

int router::shadow_read_percent() const {
  std::lock_guard lock(mu_);
  return shadow_percent_;
}

void router::set_verify_writes(bool on) {
  std::lock_guard lock(mu_);
  options_.replication.verify_writes = on;  // for replicators started later (after a switch)
  if (replicator_) replicator_->set_verify_writes(on);
}

bool router::verify_writes() const {
  std::lock_guard lock(mu_);
  return options_.replication.verify_writes;
}

void router::pause_replication() {
  if (auto r = replication()) r->pause();
}

void router::resume_replication() {
  if (auto r = replication()) r->resume();
}

mode router::mode_for_request(bool may_write) {
  std::lock_guard lock(mu_);
  if (may_write && mode_ == mode::sqlite_only) ++single_writes_;
  return mode_;
}

std::string router::bookmark_floor(const client_context& client, bool follower_floor) {
  if (!d1_ || !d1_->read_replication()) return {};
  std::string b = client.d1_bookmark;
  if (client.key_given) b = std::max(b, keys_.bookmark(client.routing_key));
  if (follower_floor) b = std::max(b, d1_->latest_bookmark());
  return b;
}

void router::note_bookmark(client_context& client, const std::string& bookmark) {
  if (bookmark.empty()) return;
  if (bookmark > client.d1_bookmark) client.d1_bookmark = bookmark;
  if (client.key_given) keys_.note_bookmark(client.routing_key, bookmark);
}

backends::query_done router::noting_bookmark(client_context& client, backends::query_done done) {
  return [this, &client, done = std::move(done)](backends::outcome<query_result> r) {
    if (r) note_bookmark(client, r->meta.bookmark);
    done(std::move(r));
  };
}

backends::batch_done router::noting_bookmark(client_context& client, backends::batch_done done) {
  return [this, &client, done = std::move(done)](batch_result r) {
    if (r && !r->empty()) note_bookmark(client, r->back().meta.bookmark);
    done(std::move(r));
  };
}

void router::execute(client_context& client, protocol::statement st, backends::exec_options options,
                     backends::query_done done) {
  // SQLite judges what reads, on its copy of the schema. A statement it cannot prepare (a table
  // the follower has not received yet, or bad SQL) goes to the leader, which gives its real error.
  const bool reads = sqlite_ && d1_ && sqlite_->classify(st.sql) == backends::statement_kind::read;
  const mode m = mode_for_request(sqlite_ && d1_ && !reads);
  if (!is_dual(m)) {
    auto* on = store_for(m, true);
    if (on == d1_.get() && d1_->read_replication()) {
      options.bookmark = bookmark_floor(client, false);
      done = noting_bookmark(client, std::move(done));
    }
    on->execute(std::move(st), options, std::move(done));
    return;
  }
  if (reads) {
    read(client, std::move(st), options, std::move(done));
    return;
  }
  std::vector<protocol::statement> one;
  one.push_back(std::move(st));
  write(client, std::move(one), false, options, [done = std::move(done)](batch_result r) {
    if (r) done(std::move(r->at(0)));
    else done(std::move(r.error()));
  });
}

void router::execute_batch(client_context& client, std::vector<protocol::statement> statements,
                           backends::exec_options options, backends::batch_done done) {
  const mode m = mode_for_request(sqlite_ && d1_);
  if (!is_dual(m)) {
    auto* on = store_for(m, true);
    if (on == d1_.get() && d1_->read_replication()) {
      options.bookmark = bookmark_floor(client, false);
      done = noting_bookmark(client, std::move(done));
    }
    on->execute_batch(std::move(statements), options, std::move(done));
    return;
  }
  write(client, std::move(statements), true, options, std::move(done));
}

void router::write(client_context& client, std::vector<protocol::statement> statements, bool is_batch,
                   backends::exec_options options, std::function<void(batch_result)> done) {
  std::unique_lock lock(mu_);
  if (gate_closed_) {
    // A switch is in progress: the write waits for the new leader (bounded by the switch).
    held_.push_back([this, &client, statements = std::move(statements), is_batch, options, done = std::move(done)]() mutable {
      if (clock::now() > options.deadline) {
        done(protocol::error{errc::timeout, "the query timeout passed while writes were held for a primary switch", {}, {}});
        return;
      }
      write(client, std::move(statements), is_batch, options, std::move(done));
    });
    return;
  }
  backends::store* leader = store_for(mode_, true);
  const bool dual = is_dual(mode_);
  auto rep = replicator_;
  ++writes_in_flight_;
  lock.unlock();

  options.journal = dual;
  options.may_run_inline = false;  // writes run on the writer
  const auto start = clock::now();
  auto finish = [this, &client, rep, start, journal = std::string(leader->name()), done = std::move(done)](batch_result r) mutable {
    metrics_.primary_latency.record(ms_since(start));
    if (r && !r->empty()) note_bookmark(client, r->back().meta.bookmark);  // D1 leads, with read replication
    std::int64_t seq = r && !r->empty() ? r->front().meta.seq : 0;
    if (seq > 0) {
      metrics_.total_writes.fetch_add(1);
      client.last_write = {journal, seq};
      if (rep) rep->notify(seq);
    }
    if (r && rep) {
      // The write's own position; one that journaled nothing (it changed no row) is as new as the
      // journal's end.
      const protocol::position at{journal, seq > 0 ? seq : std::max({rep->known_leader_seq(), rep->applied(), std::int64_t{0}})};
      for (auto& one : *r) one.meta.at = at;
      note_seen(client, at);
    }
    {
      std::lock_guard lock(mu_);
      --writes_in_flight_;
    }
    cv_.notify_all();
    if (seq <= 0 || !rep || !options_.ack_both) {
      done(std::move(r));
      return;
    }
    // A follower that must be rebuilt will not apply it: no point waiting.
    rep->wait_applied(seq, rep->must_rebuild() ? clock::now() : clock::now() + options_.ack_timeout,
                      [this, seq, r = std::move(r), done = std::move(done)](bool applied) mutable {
                        if (applied || options_.continue_on_follower_failure) {
                          if (!applied) metrics_.ack_timeouts.fetch_add(1);
                          done(std::move(r));
                          return;
                        }
                        metrics_.ack_timeouts.fetch_add(1);
                        done(protocol::error{errc::unavailable,
                                             "the write committed on the leader and is journaled (seq " + std::to_string(seq) +
                                                 "), but the follower did not apply it within " +
                                                 std::to_string(options_.ack_timeout.count()) +
                                                 " ms; it will be applied when the follower is back. Do not retry it blindly",
                                             {}, {}});
                      });
  };
  if (is_batch) {
    leader->execute_batch(std::move(statements), options, std::move(finish));
  } else {
    leader->execute(std::move(statements[0]), options, [finish = std::move(finish)](backends::outcome<query_result> r) mutable {
      if (!r) {
        finish(r.error());
        return;
      }
      std::vector<query_result> v;
      v.push_back(std::move(*r));
      finish(std::move(v));
    });
  }
}

router::read_floor router::floor_of(const client_context& client, std::string_view journal, const replicator& rep) {
  read_floor f;
  f.leader = client.min_seq_leader;
  // Every position this process handed out is at most what the replicator knows of the
  // leader's journal; anything beyond is from before a restart, a restored file, or forged.
  const std::int64_t end = std::max(rep.known_leader_seq(), rep.applied());
  bool unknown = false;
  auto consider = [&](const protocol::position& p) {
    if (p.empty()) return;
    if (p.journal == journal) {
      if (p.seq > end) unknown = true;
      else f.seq = std::max(f.seq, p.seq);
    } else if (p.journal != sqlite_->name() && p.journal != d1_->name()) {
      unknown = true;
    }
    // Otherwise the journal of the store that led before a switch-primary: the switch drained it
    // to the other store, so both hold all of it and there is nothing to wait for.
  };
  consider(client.last_write);
  consider(client.min_seq);
  consider(client.key_given ? keys_.get(client.routing_key) : client.key_seen);
  if (unknown) {
    metrics_.read_positions_unknown.fetch_add(1);
    f.leader = true;
  }
  return f;
}

void router::note_seen(client_context& client, const protocol::position& p) {
  if (client.key_given) metrics_.remembered_keys.store(static_cast<std::int64_t>(keys_.note(client.routing_key, p)));
  else protocol::keep_newer(client.key_seen, p);
}

void router::count_read(const backends::store& on, const backends::outcome<query_result>& r, clock::time_point start) {
  const bool d1 = on.name() == "d1";
  (d1 ? metrics_.reads_d1 : metrics_.reads_sqlite).fetch_add(1);
  if (!r && r.error().code != errc::bad_request && r.error().code != errc::sql_error && r.error().code != errc::unsupported) {
    // The store failing, not the client's SQL: what the rollout's error guard watches.
    (d1 ? metrics_.read_errors_d1 : metrics_.read_errors_sqlite).fetch_add(1);
  }
  (d1 ? metrics_.read_latency_d1 : metrics_.read_latency_sqlite).record(ms_since(start));
}

// Runs the read again on the other store and compares, after the client has its answer: a shadow
// read adds no latency. Both answers must come from journal position leader_at: no write since
// the read started, and the follower there (waited for, within the read-your-writes bound, when
// the leader answered first). Otherwise the read counts as skipped, never as a mismatch.
void router::shadow(shadow_read s, const query_result& answer) {
  metrics_.shadow_reads.fetch_add(1);
  auto expected = std::make_shared<query_result>(answer);
  auto rep = s.rep;
  const std::int64_t leader_at = s.leader_at;
  auto at_same_position = [rep, leader_at] { return !rep || (rep->known_leader_seq() == leader_at && rep->applied() == leader_at); };
  auto compare = [this, expected, at_same_position, s]() mutable {
    // On D1's replicas: at least as new as what the leader answered from.
    s.options.bookmark = s.other == d1_.get() && d1_->read_replication() ? d1_->latest_bookmark() : std::string();
    const std::string sql = s.copy.sql;
    backends::store* other = s.other;
    other->execute(std::move(s.copy), s.options, [this, expected, sql, other, at_same_position](backends::outcome<query_result> r) {
      // An answer D1 could not give in its exact form (meta.exact false: EXPLAIN, an untyped
      // statement) proves nothing either way.
      if (!at_same_position() || !expected->meta.exact || (r && !r->meta.exact)) {
        metrics_.shadow_skipped.fetch_add(1);
        return;
      }
      if (r && same_rows(*expected, *r)) return;
      metrics_.shadow_mismatches.fetch_add(1);
      spdlog::warn("shadow read mismatch on {} (query {:016x}: {:.80})", other->name(), fnv1a(sql), sql);
    });
  };
  if (rep && (rep->known_leader_seq() != leader_at || (!s.answered_by_leader && s.follower_at != leader_at))) {
    metrics_.shadow_skipped.fetch_add(1);
  } else if (rep && rep->applied() < leader_at) {
    auto shared = std::make_shared<decltype(compare)>(std::move(compare));
    rep->wait_applied(leader_at, clock::now() + options_.read_your_writes_wait, [this, shared](bool applied) {
      if (applied) (*shared)();
      else metrics_.shadow_skipped.fetch_add(1);
    });
  } else {
    compare();
  }
}

void router::read(client_context& client, protocol::statement st, backends::exec_options options,
                  backends::query_done done) {
  // The lock covers only the four fields it guards: the I/O threads all read through here.
  const int bucket = bucket_of(client.routing_key);
  std::unique_lock lock(mu_);
  const bool to_d1 = bucket < read_percent_;
  backends::store* leader = store_for(mode_, true);
  const int shadow_percent = shadow_percent_;
  auto rep = replicator_;
  lock.unlock();
  backends::store* target = to_d1 ? static_cast<backends::store*>(d1_.get()) : sqlite_.get();
  bool shadowed = sample(shadow_percent);
  // A follower that must be rebuilt holds no copy to read from (or to compare with).
  if (rep && rep->must_rebuild()) {
    target = leader;
    shadowed = false;
  }
  const std::string_view journal = leader->name();  // a store's name is a literal
  const read_floor floor = rep ? floor_of(client, journal, *rep) : read_floor{};
  // Where the stores stand as the read starts: a shadow comparison means something only when
  // both answer from the same journal position (a lagging follower is not a mismatch).
  const std::int64_t leader_at = shadowed && rep ? rep->known_leader_seq() : 0;
  const std::int64_t follower_at = shadowed && rep ? rep->applied() : 0;

  auto run = [this, &client, options, done = std::move(done), shadowed, rep, leader, leader_at, follower_at, journal,
              floor](backends::store* on, protocol::statement st, bool on_callers_thread) mutable {
    const auto start = clock::now();
    // D1 as follower at a journal position: also at least as new as the replicator's writes.
    if (on == d1_.get()) options.bookmark = bookmark_floor(client, on != leader && floor.seq > 0);
    protocol::statement copy;
    if (shadowed) copy = st;
    // Only the caller's own thread may run the read inline (not the replicator's, after a wait),
    // and the shadow read never: it must not delay the answer.
    auto first = options;
    first.may_run_inline = options.may_run_inline && on_callers_thread;
    options.may_run_inline = false;
    on->execute(std::move(st), first,
                [this, &client, on, start, shadowed, copy = std::move(copy), options, rep, leader, leader_at, follower_at,
                 journal, floor, done = std::move(done)](backends::outcome<query_result> r) mutable {
                  const bool d1 = on->name() == "d1";
                  if (r && d1) note_bookmark(client, r->meta.bookmark);
                  if (r && rep) {
                    // At least what the read saw: the follower's applied position (it only grows),
                    // or the leader's end once it answered (an overestimate, which is the safe side
                    // for the reads that follow).
                    const std::int64_t seen = on == leader ? rep->known_leader_seq() : floor.seq;
                    r->meta.at = {std::string(journal), std::max({seen, rep->applied(), std::int64_t{0}})};
                    note_seen(client, r->meta.at);
                  }
                  count_read(*on, r, start);
                  // The shadow runs on the store that did not answer.
                  backends::store* other = on == d1_.get() ? static_cast<backends::store*>(sqlite_.get()) : d1_.get();
                  if (shadowed && r) shadow({other, std::move(copy), options, rep, leader_at, follower_at, on == leader}, *r);
                  done(std::move(r));
                });
  };
  // Read-your-writes and monotonic reads: the follower must have reached the client's position.
  if (target != leader && floor.leader) {
    run(leader, std::move(st), true);
    return;
  }
  if (target != leader && rep && floor.seq > 0 && rep->applied() < floor.seq) {
    metrics_.read_your_writes_waits.fetch_add(1);
    auto shared_run = std::make_shared<decltype(run)>(std::move(run));
    auto pending = std::make_shared<protocol::statement>(std::move(st));
    rep->wait_applied(floor.seq, clock::now() + options_.read_your_writes_wait,
                      [this, shared_run, pending, target, leader](bool applied) {
                        if (!applied) metrics_.read_your_writes_fallbacks.fetch_add(1);
                        (*shared_run)(applied ? target : leader, std::move(*pending), false);
                      });
    return;
  }
  run(target, std::move(st), true);
}

backends::outcome<void> router::hold_writes(std::unique_lock<std::mutex>& lock, clock::time_point deadline) {
  gate_closed_ = true;
  if (!cv_.wait_until(lock, deadline, [&] { return writes_in_flight_ == 0; })) {
    release_writes(lock);
    return protocol::error{errc::timeout, "writes in flight did not finish in time; nothing changed", {}, {}};
  }
  return {};
}

backends::outcome<void> router::commit(std::unique_lock<std::mutex>& lock, const commit_hook& before_commit, mode to) {
  if (!before_commit) return {};
  lock.unlock();
  auto c = before_commit(to);
  lock.lock();
  return c;
}

void router::release_writes(std::unique_lock<std::mutex>& lock) {
  gate_closed_ = false;
  auto held = std::move(held_);
  held_.clear();
  lock.unlock();
  for (auto& w : held) w();
  lock.lock();
}

backends::outcome<switch_report> router::switch_primary(std::chrono::milliseconds max_pause, const commit_hook& before_commit) {
  std::unique_lock lock(mu_);
  if (!is_dual(mode_)) {
    return protocol::error{errc::bad_request,
                           "switch-primary needs a dual mode (dual-sqlite or dual-d1); the mode is " + std::string(to_string(mode_)), {}, {}};
  }
  if (stopped_) return protocol::error{errc::unavailable, "tandem is shutting down", {}, {}};
  if (replicator_->paused()) {
    // The follower cannot catch up while paused: say so now rather than after max_pause.
    return protocol::error{errc::bad_request, "replication is paused, so the follower cannot catch up; resume-replication first", {}, {}};
  }
  const auto start = clock::now();
  const auto deadline = start + max_pause;
  switch_report report;
  report.from = mode_;
  report.to = mode_ == mode::dual_sqlite ? mode::dual_d1 : mode::dual_sqlite;
  if (auto h = hold_writes(lock, deadline); !h) return h.error();
  auto rep = replicator_;
  const std::int64_t applied_before = rep->applied();
  lock.unlock();
  // The follower applies everything the leader committed; no new write can commit meanwhile.
  const bool caught_up = rep->wait_caught_up(deadline);
  auto fail = [&](std::string why) -> backends::outcome<switch_report> {
    lock.lock();
    release_writes(lock);
    return protocol::error{errc::unavailable, why + "; nothing changed, " + std::string(to_string(report.from)) + " continues", {}, {}};
  };
  if (!caught_up) {
    return fail("the follower did not catch up within " + std::to_string(max_pause.count()) + " ms (" +
                (rep->last_error().empty() ? "still applying" : rep->last_error()) + ")");
  }
  rep->stop();
  backends::store* new_leader = store_for(report.to, true);
  backends::store* new_follower = store_for(report.to, false);
  // The new follower already holds everything: it starts after the new leader's last entry.
  backends::exec_options o;
  o.internal = true;
  o.deadline = deadline;
  // Where the new leader's journal ends: its high-water mark, which pruning keeps.
  auto journal = ensure_journal(*new_leader, o);
  auto marked = journal ? run_batch(*new_follower, {backends::applied_statement(new_leader->name(), journal->id, journal->high_water)}, o)
                        : backends::outcome<std::vector<query_result>>(journal.error());
  // The marker on the new follower is true either way: it holds everything the new leader
  // journaled. So after a refused commit the old direction simply goes on.
  auto committed = !marked || !before_commit ? backends::outcome<void>{} : before_commit(report.to);
  if (!marked || !committed) {
    lock.lock();
    start_replication_locked();  // the old direction again
    release_writes(lock);
    if (!committed) {
      return protocol::error{committed.error().code,
                             committed.error().message + "; nothing changed, " + std::string(to_string(report.from)) + " continues",
                             {}, {}};
    }
    return protocol::error{errc::unavailable,
                           "cannot prepare " + std::string(new_leader->name()) + " to lead: " + marked.error().message +
                               "; nothing changed, " + std::string(to_string(report.from)) + " continues",
                           {}, {}};
  }
  lock.lock();
  report.drained = rep->applied() - applied_before;
  mode_ = report.to;
  start_replication_locked();
  report.paused_ms = ms_since(start);
  release_writes(lock);
  spdlog::info("switched primary: {} -> {} (writes held {:.1f} ms, {} entries drained)", to_string(report.from),
               to_string(report.to), report.paused_ms, report.drained);
  return report;
}

std::int64_t router::sqlite_applied_from_d1(const replicator& rep, clock::time_point deadline) {
  if (const auto a = rep.applied(); a >= 0) return a;
  // The replicator has not read it yet (D1 down since it started, or paused first): SQLite holds
  // it locally.
  backends::exec_options o;
  o.internal = true;
  o.deadline = deadline;
  auto r = run_batch(*sqlite_, {backends::applied_position_statement(d1_->name())}, o);
  return r ? backends::read_applied_position(r->at(0)).seq : 0;
}

std::int64_t router::d1_entries_sqlite_lacks() {
  auto rep = replication();
  if (!rep || current_mode() != mode::dual_d1) return 0;
  return std::max<std::int64_t>(rep->known_leader_seq() - sqlite_applied_from_d1(*rep, clock::now() + std::chrono::seconds(5)), 0);
}

backends::outcome<force_report> router::force_sqlite_leader(std::chrono::milliseconds max_pause, const commit_hook& before_commit) {
  std::unique_lock lock(mu_);
  if (mode_ != mode::dual_d1) {
    return protocol::error{errc::bad_request,
                           "a forced fallback is for when D1 leads (dual-d1); the mode is " + std::string(to_string(mode_)), {}, {}};
  }
  if (stopped_) return protocol::error{errc::unavailable, "tandem is shutting down", {}, {}};
  const auto start = clock::now();
  if (auto h = hold_writes(lock, start + max_pause); !h) {
    return protocol::error{errc::timeout,
                           "writes sent to D1 are still in flight after " + std::to_string(max_pause.count()) +
                               " ms (their outcome is unknown until they time out); nothing changed, try again",
                           {}, {}};
  }
  // Nothing below can fail: this is the point of no return.
  if (auto c = commit(lock, before_commit, mode::sqlite_only); !c) {
    release_writes(lock);
    return protocol::error{c.error().code, c.error().message + "; nothing changed, dual-d1 continues", {}, {}};
  }
  auto rep = std::move(replicator_);
  lock.unlock();
  rep->stop();
  if (options_.lease) options_.lease->release();  // D1 is likely out of reach: bounded, then it expires
  force_report report;
  report.d1_journal_end = rep->known_leader_seq();
  report.sqlite_applied = sqlite_applied_from_d1(*rep, clock::now() + max_pause);
  report.unapplied = std::max<std::int64_t>(report.d1_journal_end - report.sqlite_applied, 0);
  // D1 holds writes SQLite lacks: it is no copy of SQLite any more, and must be rebuilt from it.
  auto marked = mark_follower_stale(*sqlite_, "forced fallback at " + backends::utc_now() + ": D1 holds " + std::to_string(report.unapplied) +
                                                  " journal entries SQLite lacks, and writes made since are not journaled",
                                    clock::now() + max_pause);
  if (!marked) spdlog::critical("cannot record on SQLite that D1 must be rebuilt: {}", marked.error().message);
  lock.lock();
  mode_ = mode::sqlite_only;
  read_percent_ = 0;
  stale_marked_at_.reset();  // never taken back by itself
  release_writes(lock);
  spdlog::critical(
      "forced fallback: SQLite leads alone (sqlite-only); it lacks {} D1 journal entries ({} applied, D1 journal end {}); "
      "rebuild D1 from SQLite before a dual mode again",
      report.unapplied, report.sqlite_applied, report.d1_journal_end);
  return report;
}

namespace {
protocol::error abandoned(const protocol::error& e, mode from) {
  return protocol::error{e.code, e.message + "; nothing changed, " + std::string(to_string(from)) + " continues", {}, {}};
}
}  // namespace

backends::outcome<switch_report> router::set_mode(mode m, std::chrono::milliseconds max_pause, const commit_hook& before_commit) {
  std::unique_lock lock(mu_);
  const mode from = mode_;
  const mode_plan plan = plan_mode_change(from, m, {only_ != nullptr, sqlite_ != nullptr, d1_ != nullptr, options_.lease != nullptr});
  switch (plan.path) {
    case mode_path::none: return switch_report{from, m, 0, 0};
    case mode_path::refused: return protocol::error{errc::bad_request, plan.refusal, {}, {}};
    case mode_path::switch_primary: lock.unlock(); return switch_primary(max_pause, before_commit);
    case mode_path::leave_dual:
    case mode_path::enter_dual: break;
  }
  // Entering a dual mode takes D1's replication lease first: one attempt, outside the lock (a
  // D1 request); another instance that holds it refuses the change.
  if (plan.takes_lease) {
    lock.unlock();
    if (auto a = options_.lease->acquire(clock::now()); !a) return a.error();
    lock.lock();
    if (mode_ != from) {
      return protocol::error{errc::unavailable, "the mode changed meanwhile (it is " + std::string(to_string(mode_)) + "); nothing changed", {}, {}};
    }
  }
  const auto start = clock::now();
  if (auto h = hold_writes(lock, start + max_pause); !h) {
    if (plan.takes_lease) {
      lock.unlock();
      options_.lease->release();
    }
    return h.error();
  }
  // Each step releases the writes it held and says what continues when it fails.
  auto changed = plan.path == mode_path::leave_dual ? leave_dual(lock, from, m, plan, start + max_pause, before_commit)
                                                    : enter_dual(lock, from, m, plan, start + max_pause, before_commit);
  if (!changed) return changed.error();
  mode_ = m;
  if (plan.starts_replication) start_replication_locked();
  switch_report report{from, m, ms_since(start), 0};
  release_writes(lock);
  spdlog::info("mode {} -> {}", to_string(from), to_string(m));
  return report;
}

// A dual mode to its leader alone. The store that goes on alone records that the other one stops
// receiving its writes, before any such write: a later dual mode then knows the follower lacks them.
backends::outcome<void> router::leave_dual(std::unique_lock<std::mutex>& lock, mode from, mode m, const mode_plan& plan,
                                           clock::time_point deadline, const commit_hook& before_commit) {
  auto rep = replicator_;
  lock.unlock();
  rep->stop();
  backends::store& leading = *plan.marks_stale == store_side::sqlite ? static_cast<backends::store&>(*sqlite_) : *d1_;
  auto marked = mark_follower_stale(leading, std::string(to_string(m)) + " since " + backends::utc_now() + ": writes made in " +
                                                 std::string(to_string(m)) + " are not journaled",
                                    deadline);
  lock.lock();
  if (!marked) {
    start_replication_locked();
    release_writes(lock);
    return abandoned(protocol::error{errc::unavailable, "cannot record on " + std::string(leading.name()) +
                                                            " that the other store stops following: " + marked.error().message, {}, {}},
                     from);
  }
  replicator_.reset();
  if (*marked) stale_marked_at_ = single_writes_;
  // The point of no return: every step that can fail is done.
  if (auto c = commit(lock, before_commit, m); !c) {
    if (*marked) {
      // Back to following: take the mark back (writes were held, none went by it).
      lock.unlock();
      auto cleared = run_batch(leading, {backends::follower_stale_statement("")}, internal_until(deadline));
      lock.lock();
      if (!cleared) {
        spdlog::error("cannot take back the stale mark on {}: {}; the other store must be rebuilt from it", leading.name(),
                      cleared.error().message);
      } else {
        spdlog::info("{}: the stale mark is taken back ({} abandoned, no write went by)", leading.name(), to_string(m));
      }
      stale_marked_at_.reset();
    }
    start_replication_locked();  // the lease is still held: released only once the change stands
    release_writes(lock);
    return abandoned(c.error(), from);
  }
  if (plan.releases_lease) {
    lock.unlock();
    options_.lease->release();  // nothing replicates from here on
    lock.lock();
  }
  return {};
}

// sqlite-only to dual-sqlite. D1 follows from where it stood when no write went by meanwhile.
backends::outcome<void> router::enter_dual(std::unique_lock<std::mutex>& lock, mode from, mode m, const mode_plan& plan,
                                           clock::time_point deadline, const commit_hook& before_commit) {
  if (auto c = commit(lock, before_commit, m); !c) {
    // The point of no return (before a stale mark is taken back below, which may fail).
    release_writes(lock);
    if (plan.takes_lease) {
      lock.unlock();
      options_.lease->release();
    }
    return abandoned(c.error(), from);
  }
  if (plan.may_clear_stale_mark && stale_marked_at_ && *stale_marked_at_ == single_writes_) {
    // Nothing was written since this process marked D1 stale: D1 lacks nothing, take it back.
    lock.unlock();
    auto cleared = run_batch(*sqlite_, {backends::follower_stale_statement("")}, internal_until(deadline));
    lock.lock();
    if (!cleared) spdlog::warn("cannot take back D1's stale mark on SQLite: {}", cleared.error().message);
    else spdlog::info("no write went by in sqlite-only: D1 follows SQLite's journal again from where it stood");
    stale_marked_at_.reset();
  }
  return {};
}

backends::outcome<void> router::begin_backfill() {
  auto rep = replication();
  if (!rep || current_mode() != mode::dual_sqlite) {
    return protocol::error{errc::bad_request, "a live backfill copies SQLite into D1 in dual-sqlite; the mode is " +
                                                  std::string(to_string(current_mode())), {}, {}};
  }
  rep->pause();
  // D1 is to be rebuilt from a snapshot taken after this point: a journal kept for a follower
  // that had to be rebuilt anyway is of no use, and one whose bound stopped it journals again.
  auto journal = ensure_journal(*sqlite_, internal_until(clock::now() + std::chrono::seconds(30)));
  if (journal && (!journal->follower_stale.empty() || sqlite_->journaling_stopped())) {
    if (auto r = run_batch(*sqlite_, {backends::journal_clear_statement()}, internal_until(clock::time_point::max())); r) {
      sqlite_->journal_pruned(std::max<std::int64_t>(sqlite_->journal_bytes(), 0));
      spdlog::info("live backfill: {} journal entries D1 will not need were deleted", r->at(0).meta.changes);
    }
    sqlite_->resume_journal();
  }
  return {};
}

backends::outcome<void> router::end_backfill(std::int64_t seq, std::chrono::milliseconds max_wait) {
  auto rep = replication();
  if (!rep || current_mode() != mode::dual_sqlite || !rep->paused()) {
    return protocol::error{errc::bad_request, "backfill-end needs dual-sqlite with replication paused by backfill-begin", {}, {}};
  }
  const auto deadline = clock::now() + max_wait;
  auto journal = ensure_journal(*sqlite_, internal_until(deadline));
  if (!journal) return protocol::error{errc::unavailable, "cannot read SQLite's journal: " + journal.error().message + "; replication stays paused", {}, {}};
  if (seq > journal->high_water) {
    return protocol::error{errc::bad_request,
                           "SQLite's journal ends at " + std::to_string(journal->high_water) + ", before " + std::to_string(seq) +
                               ": that is no snapshot of this file; replication stays paused",
                           {}, {}};
  }
  if (auto r = run_batch(*d1_, {backends::applied_statement("sqlite", journal->id, seq)}, internal_until(deadline)); !r) {
    return protocol::error{errc::unavailable,
                           "cannot record D1's position " + std::to_string(seq) + ": " + r.error().message + "; replication stays paused", {}, {}};
  }
  // D1 is a copy of SQLite again: the reason it had to be rebuilt is gone.
  if (auto r = run_batch(*sqlite_, {backends::follower_stale_statement("")}, internal_until(deadline)); !r) {
    return protocol::error{errc::unavailable, "cannot take back D1's stale mark on SQLite: " + r.error().message + "; replication stays paused", {}, {}};
  }
  {
    std::lock_guard lock(mu_);
    stale_marked_at_.reset();
  }
  rep->reread_position();
  rep->resume();
  return {};
}

void router::shutdown() {
  std::shared_ptr<replicator> rep;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    rep = std::move(replicator_);
  }
  // Replication first (its batch in flight uses the stores), then the stores finish what they
  // accepted.
  if (rep) rep->stop();
  if (options_.lease) options_.lease->release();
  if (sqlite_) sqlite_->shutdown();
  if (d1_) d1_->shutdown();
  if (only_) only_->shutdown();
}

}  // namespace tandem::proxy
