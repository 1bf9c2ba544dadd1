#include "backends/sqlite_store.hpp"

#include <sys/statvfs.h>

#include <ctime>
#include <filesystem>

#include "backends/journal.hpp"

namespace tandem::backends {
namespace {

using protocol::errc;
using protocol::error;

error unavailable_error(std::string why) { return error{errc::unavailable, std::move(why), "sqlite", {}}; }

constexpr std::size_t k_max_remembered_kinds = 65536;

std::atomic<std::uint64_t> g_next_store_id{1};

// The calling thread's inline connection to the store it used last (a thread serves one store
// almost always). Keyed by the store's id, never reused, so a store that is gone never matches.
struct inline_cache {
  std::uint64_t store = 0;
  sqlite_connection* conn = nullptr;
};
thread_local inline_cache t_inline;

}  // namespace

sqlite_store::sqlite_store(const sqlite_store_options& options) : options_(options), id_(g_next_store_id.fetch_add(1)) {}

template <class Ready>
void sqlite_store::spin_until(Ready ready) const {
  // Waking a sleeping thread costs tens of microseconds on a mostly idle machine, more than a
  // point select takes. A worker that just finished therefore watches its queue for a short
  // while before it sleeps; yielding keeps the spin from starving other threads on a busy box.
  if (options_.spin.count() <= 0) return;
  const auto until = clock::now() + options_.spin;
  while (!ready() && clock::now() < until) std::this_thread::yield();
}

outcome<std::unique_ptr<sqlite_store>> sqlite_store::open(const sqlite_store_options& options) {
  if (options.db.path.empty() || options.db.path == ":memory:" || options.db.path.rfind("file:", 0) == 0) {
    return error{errc::bad_request, "the SQLite store needs a plain file path (readers share it with the writer)", "sqlite", {}};
  }
  std::unique_ptr<sqlite_store> s(new sqlite_store(options));
  sqlite_options write_opts = options.db;
  if (options.follower_row_limit) write_opts.max_length = options.follower_limits.max_value_bytes;
  auto writer = sqlite_connection::open(write_opts);
  if (!writer) return writer.error();
  s->writer_conn_ = std::move(*writer);
  sqlite_options read_opts = options.db;
  read_opts.read_only = true;
  // One extra read-only connection serves classify() for the router.
  const std::size_t readers = std::max<std::size_t>(options.readers, 1);
  for (std::size_t i = 0; i < readers + 1; ++i) {
    auto r = sqlite_connection::open(read_opts);
    if (!r) return r.error();
    s->reader_conns_.push_back(std::move(*r));
  }
  s->writer_ = std::thread([p = s.get()] { p->writer_loop(); });
  for (std::size_t i = 0; i < readers; ++i) {
    s->readers_.emplace_back([p = s.get(), c = s->reader_conns_[i].get()] { p->reader_loop(*c); });
  }
  return s;
}

sqlite_store::~sqlite_store() { shutdown(); }

void sqlite_store::shutdown() {
  closed_.store(true, std::memory_order_release);
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  reader_cv_.notify_all();
  for (auto& t : readers_) t.join();
  // Readers may have forwarded writes while draining: the writer finishes those too.
  {
    std::lock_guard lock(mu_);
    writer_stop_ = true;
  }
  writer_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

void sqlite_store::execute(protocol::statement st, exec_options options, query_done done) {
  if (options.may_run_inline && !options.internal && options_.inline_read_budget > 0 && try_inline(st, options, done)) return;
  job j;
  j.statements.push_back(std::move(st));
  j.options = options;
  j.on_query = std::move(done);
  submit(std::move(j));
}

void sqlite_store::execute_batch(std::vector<protocol::statement> statements, exec_options options,
                                 batch_done done) {
  job j;
  j.statements = std::move(statements);
  j.is_batch = true;
  j.options = options;
  j.on_batch = std::move(done);
  submit(std::move(j));
}

sqlite_connection* sqlite_store::inline_connection() {
  if (t_inline.store == id_) return t_inline.conn;
  std::lock_guard lock(inline_mu_);
  auto& conn = inline_conns_[std::this_thread::get_id()];
  if (!conn) {
    sqlite_options o = options_.db;
    o.read_only = true;
    o.busy_timeout_ms = 0;  // never wait on the I/O thread: a busy database sends the read to a reader
    auto opened = sqlite_connection::open(o);
    if (!opened) {
      inline_conns_.erase(std::this_thread::get_id());
      return nullptr;
    }
    conn = std::move(*opened);
    conn->set_budget(options_.inline_read_budget);
  }
  t_inline = {id_, conn.get()};
  return conn.get();
}

bool sqlite_store::try_inline(protocol::statement& st, const exec_options& options, query_done& done) {
  if (closed_.load(std::memory_order_acquire)) return false;
  sqlite_connection* conn = inline_connection();
  if (conn == nullptr) return false;
  // Prepared (and cached) on this connection: a write, or a statement that does not prepare here
  // (its table may be created by a write still queued), goes the usual way, which orders it.
  auto kind = conn->classify(st.sql);
  if (!kind || *kind != statement_kind::read) return false;
  auto r = conn->execute(st, options.deadline);
  // Too long for an I/O thread, or the database busy: run again, from the start, on a reader (a
  // read changed nothing).
  if (!r && (conn->budget_spent() || r.error().code == errc::unavailable)) return false;
  auto d = std::move(done);
  d(std::move(r));
  return true;
}

void sqlite_store::submit(job j) {
  // Classify before queueing, on the caller's thread, so that writes reach the writer in the
  // order they were submitted. Usually a cache hit; on a miss, a prepare (no execution). A
  // statement that cannot be prepared yet (its table may be created by a write still queued)
  // goes to the writer, which runs it in order and reports its real error.
  const bool is_write = j.is_batch || (j.options.internal ? internal_is_write(j.statements[0].sql)
                                                           : classify(j.statements[0].sql) != statement_kind::read);
  std::unique_lock lock(mu_);
  if (stopping_) {
    lock.unlock();
    j.failure = unavailable_error("the SQLite store is shutting down");
    complete(j);
    return;
  }
  if (is_write) {
    writes_.push_back(std::move(j));
    pending_writes_.fetch_add(1, std::memory_order_release);
    lock.unlock();
    writer_cv_.notify_one();
  } else {
    reads_.push_back(std::move(j));
    pending_reads_.fetch_add(1, std::memory_order_release);
    lock.unlock();
    reader_cv_.notify_one();
  }
}

bool sqlite_store::internal_is_write(const std::string& sql) {
  std::lock_guard lock(classify_mu_);
  auto kind = reader_conns_.back()->classify_internal(sql);
  return !kind || *kind != statement_kind::read;
}

void sqlite_store::remember(const std::string& sql, statement_kind kind) {
  std::unique_lock lock(kinds_mu_);
  if (kinds_.size() >= k_max_remembered_kinds) kinds_.clear();
  kinds_.emplace(sql, kind);
}

std::optional<statement_kind> sqlite_store::classify(const std::string& sql) {
  {
    std::shared_lock lock(kinds_mu_);
    if (auto it = kinds_.find(sql); it != kinds_.end()) return it->second;
  }
  std::lock_guard lock(classify_mu_);
  auto kind = reader_conns_.back()->classify(sql);
  if (!kind) return std::nullopt;
  remember(sql, *kind);
  return *kind;
}

void sqlite_store::reader_loop(sqlite_connection& conn) {
  for (;;) {
    job j;
    spin_until([&] { return pending_reads_.load(std::memory_order_acquire) > 0; });
    {
      std::unique_lock lock(mu_);
      reader_cv_.wait(lock, [&] { return stopping_ || !reads_.empty(); });
      if (reads_.empty()) return;  // stopping, and nothing left to drain
      j = std::move(reads_.front());
      reads_.pop_front();
      pending_reads_.fetch_sub(1, std::memory_order_relaxed);
    }
    const auto& st = j.statements[0];
    auto r = conn.execute(st, j.options.deadline, j.options.internal);
    if (r) j.results.push_back(std::move(*r));
    else j.failure = r.error();
    complete(j);
  }
}

void sqlite_store::writer_loop() {
  std::vector<job> group;
  for (;;) {
    spin_until([&] { return pending_writes_.load(std::memory_order_acquire) > 0; });
    {
      std::unique_lock lock(mu_);
      writer_cv_.wait(lock, [&] { return writer_stop_ || !writes_.empty(); });
      if (writes_.empty()) return;
      const std::size_t n = std::min(writes_.size(), std::max<std::size_t>(options_.max_group_size, 1));
      group.clear();
      for (std::size_t i = 0; i < n; ++i) {
        group.push_back(std::move(writes_.front()));
        writes_.pop_front();
      }
      pending_writes_.fetch_sub(n, std::memory_order_relaxed);
    }
    commit_group(group);
    group.clear();  // release the completions (and what they hold) now, not at the next wake-up
  }
}

// Commits the jobs of `group` in one transaction, in order. Each job runs inside its own
// savepoint, so a failing job is undone alone and the others still commit. If SQLite rolls back
// the whole transaction by itself (an interrupted write, I/O error, disk full), the failing job
// gets its error and the others are run again in a fresh transaction: none of them was
// acknowledged, so none is lost or applied twice.
void sqlite_store::commit_group(std::vector<job>& group) {
  sqlite_connection& conn = *writer_conn_;
  while (!group.empty()) {
    for (auto& j : group) {
      j.results.clear();
      j.failure.reset();
    }
    if (auto b = conn.exec_internal("BEGIN IMMEDIATE"); !b) {
      for (auto& j : group) {
        j.failure = b.error();
        complete(j);
      }
      return;
    }
    const bool several = group.size() > 1;
    std::optional<std::size_t> lost;
    bool marked_in_transaction = false;  // the follower_stale mark, when journaling stopped
    for (std::size_t i = 0; i < group.size() && !lost; ++i) {
      job& j = group[i];
      // Outside the job's savepoint: the mark must commit with every write not journaled, even
      // when this job fails.
      if (j.options.journal && !check_journal_bound(conn, marked_in_transaction, j.failure)) continue;
      if (several) {
        if (auto s = conn.exec_internal("SAVEPOINT tandem_job"); !s) {
          j.failure = s.error();
          lost = conn.in_transaction() ? std::nullopt : std::optional<std::size_t>(i);
          continue;
        }
      }
      std::optional<row_recorder> rows;
      bool record = false;
      std::string plan_reason;
      if (j.options.journal && !journal_off_.load(std::memory_order_relaxed)) {
        auto plan = plan_journal(conn, j);
        if (!plan) {
          j.failure = plan.error();
          if (several) conn.exec_internal("RELEASE tandem_job");
          continue;
        }
        record = plan->record;
        plan_reason = plan->why_rows;
        if (plan->row_images) {
          const auto& limits = options_.follower_limits;
          auto rec = row_recorder::start(conn.handle(), limits.max_batch_statements - k_batch_overhead);
          if (!rec) {
            j.failure = rec.error();
            if (several) conn.exec_internal("RELEASE tandem_job");
            continue;
          }
          rows.emplace(std::move(*rec));
        }
      }
      for (std::size_t k = 0; k < j.statements.size(); ++k) {
        auto r = conn.execute(j.statements[k], j.options.deadline, j.options.internal);
        if (!r) {
          j.failure = r.error();
          if (j.is_batch) {
            j.failure->index = k;
            j.failure->message = "statement " + std::to_string(k) + ": " + j.failure->message +
                                 " (the batch was rolled back)";
          }
          break;
        }
        j.results.push_back(std::move(*r));
      }
      if (!j.failure && record && conn.in_transaction()) {
        if (auto seq = append_journal(conn, j, rows ? &*rows : nullptr); !seq) {
          j.failure = seq.error();
          if (rows && j.failure->code == errc::unsupported) {
            j.failure->message = "refused, nothing was written: this write is replicated as the rows it changes (" +
                                 plan_reason + "), and " + j.failure->message;
          }
        } else {
          for (auto& r : j.results) r.meta.seq = *seq;
        }
      }
      rows.reset();
      if (!conn.in_transaction()) {
        lost = i;
        break;
      }
      if (several) {
        if (j.failure) conn.exec_internal("ROLLBACK TO tandem_job");
        conn.exec_internal("RELEASE tandem_job");
      }
    }
    if (lost) {
      complete(group[*lost]);
      group.erase(group.begin() + static_cast<std::ptrdiff_t>(*lost));
      continue;
    }
    if (!several && group[0].failure) {
      conn.exec_internal("ROLLBACK");
      complete(group[0]);
      return;
    }
    if (auto c = conn.exec_internal("COMMIT"); !c) {
      if (conn.in_transaction()) conn.exec_internal("ROLLBACK");
      for (auto& j : group) {
        if (!j.failure) {
          j.failure = c.error();
          j.failure->message = "commit failed, nothing was written: " + j.failure->message;
        }
      }
    } else {
      if (marked_in_transaction) stale_pending_ = false;
      std::lock_guard lock(mu_);
      ++stats_.groups;
      stats_.group_jobs += group.size();
    }
    for (auto& j : group) complete(j);
    return;
  }
}

// Whether (and how) a job is journaled: not at all when it only reads; as its statements when
// their SQL alone determines the result and D1 can run them as they are; otherwise as row images,
// which need every written table's rows to be addressable and no schema change among the
// statements (a schema change has no rows). What D1 could never take is refused here, before
// anything commits.
outcome<sqlite_store::journal_plan> sqlite_store::plan_journal(sqlite_connection& conn, const job& j) {
  journal_plan plan;
  std::string volatile_reason;
  std::vector<statement_info> infos;
  for (const auto& st : j.statements) {
    auto info = conn.inspect(st.sql);
    if (!info) return journal_plan{true, false, {}};  // execution reports the statement's own error
    if (info->kind == statement_kind::write) plan.record = true;
    if (volatile_reason.empty() && !info->nondeterministic.empty()) volatile_reason = "it uses " + info->nondeterministic;
    infos.push_back(std::move(*info));
  }
  if (!plan.record) return plan;
  const auto& limits = options_.follower_limits;
  const std::size_t max_statements = limits.max_batch_statements - k_batch_overhead;
  auto refuse = [](std::string why) {
    return error{errc::unsupported, "refused, nothing was written: " + std::move(why), "sqlite", {}};
  };
  if (j.statements.size() > max_statements) {
    return refuse("D1, the follower, runs at most " + std::to_string(max_statements) +
                  " statements of a replicated batch atomically, and this batch has " + std::to_string(j.statements.size()) +
                  ": split it into smaller batches (each is atomic on its own)");
  }
  if (volatile_reason.empty()) {
    for (std::size_t k = 0; k < j.statements.size(); ++k) {
      auto on_d1 = to_d1_statement(j.statements[k], limits);
      if (!on_d1 && on_d1.error().code == errc::unsupported) {
        volatile_reason = "D1 could not run " + (j.is_batch ? "statement " + std::to_string(k) : std::string("it")) +
                          " as written: " + on_d1.error().message;
        break;
      }
    }
    if (volatile_reason.empty()) return plan;
  }
  for (const auto& info : infos) {
    if (info.schema_change) {
      return refuse(volatile_reason + ", so it must be replicated as the rows it changes, and a schema change has no rows. " +
                    "Run the schema change on its own, and bind such values as parameters");
    }
    if (!info.tables_without_row_images.empty()) {
      return refuse(volatile_reason + ", so it must be replicated as the rows it changes, and " + info.tables_without_row_images[0] +
                    ". Compute the value in the application and bind it as a parameter");
    }
  }
  plan.row_images = true;
  plan.why_rows = std::move(volatile_reason);
  return plan;
}

outcome<std::int64_t> sqlite_store::append_journal(sqlite_connection& conn, const job& j, row_recorder* rows) {
  protocol::statement entry;
  entry.sql = journal_append_sql("?");
  if (rows != nullptr) {
    const auto& limits = options_.follower_limits;
    auto images = rows->finish(limits, limits.max_batch_statements - k_batch_overhead);
    if (!images) return images.error();
    if (images->statements.empty()) return std::int64_t{0};  // it changed no row: nothing for the follower to do
    // The `changes` column of a row-image entry holds what the follower must hold after it.
    entry.params.positional = {std::int64_t{static_cast<int>(entry_kind::row_images)}, encode_statements(images->statements),
                               encode_checks(images->checks), wall_ms()};
  } else {
    entry.params.positional = {std::int64_t{static_cast<int>(entry_kind::statements)}, encode_statements(j.statements),
                               encode_changes(j.results), wall_ms()};
  }
  const auto* body = std::get_if<std::string>(&entry.params.positional[1]);
  const auto* changes = std::get_if<std::string>(&entry.params.positional[2]);
  const auto size = static_cast<std::int64_t>((body ? body->size() : 0) + (changes ? changes->size() : 0));
  auto r = conn.execute(entry, clock::time_point::max(), true);
  if (!r) {
    auto e = r.error();
    e.message = "cannot append to the journal, nothing was written: " + e.message;
    return e;
  }
  if (journal_bytes_.load(std::memory_order_relaxed) >= 0) journal_bytes_.fetch_add(size, std::memory_order_relaxed);
  return r->meta.last_row_id;
}

bool sqlite_store::check_journal_bound(sqlite_connection& conn, bool& marked_in_transaction, std::optional<error>& failure) {
  if (journal_resumed_.exchange(false)) {
    journal_bytes_.store(-1);  // emptied by the backfill: counted again below
    stale_pending_ = false;
  }
  if (!journal_off_.load(std::memory_order_relaxed)) {
    const auto& o = options_;
    if (o.journal_max_bytes <= 0 && o.min_free_disk_bytes <= 0) return true;
    if (journal_bytes_.load(std::memory_order_relaxed) < 0) {
      // Once per start (and after a backfill): the entries' text, as append_journal counts it.
      auto r = conn.execute(journal_bytes_statement(), clock::time_point::max(), true);
      journal_bytes_.store(r ? read_figure(*r) : 0);
    }
    std::string why;
    const std::int64_t bytes = journal_bytes_.load(std::memory_order_relaxed);
    if (o.journal_max_bytes > 0 && bytes >= o.journal_max_bytes) {
      why = "the journal holds " + std::to_string(bytes) + " bytes of entries not yet pruned, and dual.max_journal_bytes is " +
            std::to_string(o.journal_max_bytes);
    } else if (o.min_free_disk_bytes > 0 && clock::now() >= next_disk_check_) {
      next_disk_check_ = clock::now() + std::chrono::seconds(1);
      const auto dir = std::filesystem::absolute(o.db.path).parent_path();
      struct statvfs fs {};
      if (statvfs(dir.c_str(), &fs) == 0) {
        const auto free = static_cast<std::int64_t>(fs.f_bavail) * static_cast<std::int64_t>(fs.f_frsize);
        if (free < o.min_free_disk_bytes) {
          why = "only " + std::to_string(free) + " bytes are free on the disk of " + dir.string() + ", and dual.min_free_disk_bytes is " +
                std::to_string(o.min_free_disk_bytes);
        }
      }
    }
    if (why.empty()) return true;
    {
      std::lock_guard lock(mu_);
      stop_reason_ = "journaling stopped at " + utc_now() + ": " + why + "; writes since are not journaled";
    }
    journal_off_.store(true, std::memory_order_release);
    stale_pending_ = true;
  }
  if (stale_pending_ && !marked_in_transaction) {
    auto r = conn.execute(follower_stale_statement(journal_stop_reason()), clock::time_point::max(), true);
    if (!r) {
      failure = r.error();
      failure->message = "journaling stopped (" + journal_stop_reason() + ") and that cannot be recorded, nothing was written: " + failure->message;
      return false;
    }
    marked_in_transaction = true;
  }
  return true;
}

std::string sqlite_store::journal_stop_reason() const {
  std::lock_guard lock(mu_);
  return stop_reason_;
}

void sqlite_store::resume_journal() {
  {
    std::lock_guard lock(mu_);
    stop_reason_.clear();
  }
  journal_resumed_.store(true);
  journal_off_.store(false, std::memory_order_release);
}

void sqlite_store::journal_pruned(std::int64_t bytes) {
  if (bytes <= 0) return;
  std::int64_t now = journal_bytes_.load(std::memory_order_relaxed);
  while (now >= 0 && !journal_bytes_.compare_exchange_weak(now, std::max<std::int64_t>(now - bytes, 0))) {
  }
  exec_options o;
  o.internal = true;
  execute_batch({{"PRAGMA incremental_vacuum", {}}}, o, [](auto) {});
}

void sqlite_store::complete(job& j) {
  // Moved out first so the completion (and whatever it keeps alive) is gone once it returns.
  if (j.is_batch) {
    auto done = std::move(j.on_batch);
    if (j.failure) done(std::move(*j.failure));
    else done(std::move(j.results));
  } else {
    auto done = std::move(j.on_query);
    if (j.failure) done(std::move(*j.failure));
    else done(std::move(j.results.at(0)));
  }
}

sqlite_store_stats sqlite_store::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace tandem::backends
