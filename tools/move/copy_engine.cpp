#include "tools/move/copy_engine.hpp"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <future>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include "backends/journal.hpp"
#include "protocol/codec.hpp"
#include "protocol/json_reader.hpp"
#include "protocol/text.hpp"

namespace tandem::tools {

namespace {

constexpr const char* k_guard = "tandem: this batch does not continue the checkpoint";

error unsupported(std::string m) { return error{errc::unsupported, std::move(m), {}, {}}; }

std::size_t bytes_of(const value& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return s->size();
  if (const auto* b = std::get_if<protocol::blob>(&v)) return b->bytes.size();
  return 0;
}

std::string hex_literal(std::string_view bytes) { return sql_literal(value{protocol::blob{std::string(bytes)}}); }

}  // namespace

// ---- insert statements ----------------------------------------------------------------------------

insert_limits insert_limits::for_d1(const backends::d1_limits& l) {
  return insert_limits{true, l.max_bound_parameters, l.max_statement_bytes, l.max_value_bytes};
}

insert_limits insert_limits::for_sqlite() {
  // SQLite takes 32766 parameters since 3.32; a few hundred rows per statement is plenty.
  return insert_limits{false, 999, 1000000000, 1000000000};
}

// Long (~120 lines) on purpose: one pass cuts the rows under the three limits at once and carries
// a statement's size and parameters across rows; pieces would have to pass all of that around.
outcome<std::vector<statement>> build_inserts(const table_info& t, const std::vector<row>& rows, const insert_limits& limits) {
  std::string head = "INSERT INTO " + quote_name(t.name) + " (";
  for (std::size_t i = 0; i < t.copy_columns.size(); ++i) head += (i ? ", " : "") + quote_name(t.copy_columns[i]);
  head += ") VALUES ";
  std::vector<statement> out;
  statement cur;
  std::size_t cur_rows = 0, cur_bytes = 0;
  auto flush = [&] {
    if (cur_rows == 0) return;
    out.push_back(std::move(cur));
    cur = {};
    cur_rows = 0;
    cur_bytes = 0;
  };

  for (const auto& r : rows) {
    if (r.size() != t.copy_columns.size()) return error{errc::internal, "a row of " + t.name + " has the wrong number of values", {}, {}};
    for (std::size_t c = 0; c < r.size(); ++c) {
      if (bytes_of(r[c]) > limits.max_value_bytes) {
        return unsupported("table " + t.name + ", row " + show_key(t.key_names(), t.key_of(r)) + ", column " + t.copy_columns[c] + ": " +
                           std::to_string(bytes_of(r[c])) + " bytes, over D1's limit of " + std::to_string(limits.max_value_bytes) +
                           " bytes per value");
      }
    }
    // Each cell's text in the VALUES tuple, and whether it binds a parameter. For D1 values are
    // exact literals (fewer, larger statements: D1's cost is mostly per statement), except
    // floats and text too large for a statement, which are bound.
    std::vector<std::string> cells(r.size());
    std::vector<bool> bound(r.size(), false);
    std::vector<bool> big(r.size(), false);
    for (std::size_t c = 0; c < r.size(); ++c) {
      const auto& v = r[c];
      if (!limits.d1) {
        cells[c] = "?";
        bound[c] = true;
        continue;
      }
      // A float with a fraction is exact as JSON; a whole one becomes an exact literal in
      // to_d1_statement. Products of powers of two (exact_float_literal) would be exact too,
      // but cost D1 more than a bound parameter.
      if (std::holds_alternative<double>(v) && std::isfinite(std::get<double>(v))) {
        cells[c] = "?";
        bound[c] = true;
        continue;
      }
      cells[c] = sql_literal(v);
      if (const auto* s = std::get_if<std::string>(&v); s && cells[c].size() > limits.max_sql_bytes / 4) {
        if (s->find('\0') != std::string::npos || !protocol::is_valid_utf8(*s)) {
          return unsupported("table " + t.name + ", row " + show_key(t.key_names(), t.key_of(r)) + ", column " + t.copy_columns[c] +
                             ": text of " + std::to_string(s->size()) + " bytes that is not valid UTF-8 cannot travel to D1 (store it as a blob)");
        }
        cells[c] = "?";
        bound[c] = true;
      }
    }
    auto tuple_size = [&] {
      std::size_t n = 2;
      for (const auto& s : cells) n += s.size() + 2;
      return n;
    };
    // A row too large for one statement: its largest blobs are appended afterwards.
    while (limits.d1 && head.size() + tuple_size() + 64 > limits.max_sql_bytes) {
      std::size_t largest = r.size();
      for (std::size_t c = 0; c < r.size(); ++c) {
        if (!big[c] && std::holds_alternative<protocol::blob>(r[c]) && (largest == r.size() || cells[c].size() > cells[largest].size())) largest = c;
      }
      if (largest == r.size()) {
        return unsupported("table " + t.name + ", row " + show_key(t.key_names(), t.key_of(r)) + ": the row does not fit in one " +
                           std::to_string(limits.max_sql_bytes) + "-byte D1 statement");
      }
      big[largest] = true;
      cells[largest] = "X''";
    }
    std::size_t params = 0;
    for (bool b : bound) params += b;
    const std::size_t size = tuple_size();
    const bool has_big = std::find(big.begin(), big.end(), true) != big.end();
    if (cur_rows > 0 && (has_big || cur.params.positional.size() + params > limits.max_params ||
                         cur_bytes + size + 2 > limits.max_sql_bytes)) {
      flush();
    }
    if (cur_rows == 0) {
      cur.sql = head;
      cur_bytes = head.size();
    } else {
      cur.sql += ", ";
    }
    cur.sql += '(';
    for (std::size_t c = 0; c < r.size(); ++c) {
      cur.sql += (c ? ", " : "") + cells[c];
      if (bound[c]) cur.params.positional.push_back(r[c]);
    }
    cur.sql += ')';
    cur_bytes += size + 2;
    ++cur_rows;
    if (!has_big) continue;
    flush();
    const auto key = t.key_of(r);
    for (std::size_t c = 0; c < r.size(); ++c) {
      if (!big[c]) continue;
      const auto& bytes = std::get<protocol::blob>(r[c]).bytes;
      const auto q = quote_name(t.copy_columns[c]);
      const std::string prefix = "UPDATE " + quote_name(t.name) + " SET " + q + " = CAST(" + q + " || ";
      const std::string suffix = " AS BLOB) WHERE " + t.equals_predicate();
      const std::size_t piece = (limits.max_sql_bytes - prefix.size() - suffix.size() - 256) / 2;
      for (std::size_t at = 0; at < bytes.size(); at += piece) {
        statement up{prefix + hex_literal(std::string_view(bytes).substr(at, piece)) + suffix, {}};
        up.params.positional = key;
        out.push_back(std::move(up));
      }
    }
  }
  flush();
  if (limits.d1) {
    const backends::d1_limits dl{limits.max_params, limits.max_sql_bytes, limits.max_value_bytes, 1000};
    for (const auto& st : out) {
      if (auto ok = backends::to_d1_statement(st, dl); !ok) {
        return unsupported("table " + t.name + ": " + ok.error().message);
      }
    }
  }
  return out;
}

// ---- keys and the checkpoint --------------------------------------------------------------------------

std::string encode_key(const row& key) {
  std::string out = "[";
  for (std::size_t i = 0; i < key.size(); ++i) {
    if (i) out += ',';
    protocol::append_value(out, key[i]);
  }
  return out + "]";
}

std::optional<row> decode_key(std::string_view text) {
  auto doc = protocol::read_json(text);
  if (!doc.ok() || !doc.value.is_array()) return std::nullopt;
  row out;
  for (const auto& j : doc.value.get_array()) {
    switch (j.kind()) {
      case boost::json::kind::null: out.emplace_back(value{}); break;
      case boost::json::kind::int64: out.emplace_back(j.get_int64()); break;
      case boost::json::kind::double_: out.emplace_back(j.get_double()); break;
      case boost::json::kind::string: out.emplace_back(std::string(j.get_string())); break;
      case boost::json::kind::object: {
        const auto* b = j.get_object().if_contains("base64");
        if (b == nullptr || !b->is_string()) return std::nullopt;
        auto bytes = protocol::base64_decode(std::string_view(b->get_string()));
        if (!bytes) return std::nullopt;
        out.emplace_back(protocol::blob{std::move(*bytes)});
        break;
      }
      default: return std::nullopt;
    }
  }
  return out;
}

outcome<std::vector<checkpoint_row>> read_checkpoint(backends::store& target) {
  std::vector<checkpoint_row> out;
  auto exists = run_sync(target, {{std::string("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '") + k_checkpoint_table + "'", {}}});
  if (!exists) return exists.error();
  const auto& cell = exists->at(0).rows.at(0).at(0);
  if (!std::holds_alternative<std::int64_t>(cell) || std::get<std::int64_t>(cell) == 0) return out;
  auto rows = run_sync(target, {{std::string("SELECT tbl, source, after, copied, done, batch FROM ") + k_checkpoint_table + " ORDER BY tbl", {}}});
  if (!rows) return rows.error();
  for (const auto& r : rows->at(0).rows) {
    checkpoint_row c;
    c.table = std::get_if<std::string>(&r[0]) ? std::get<std::string>(r[0]) : "";
    c.source = std::get_if<std::string>(&r[1]) ? std::get<std::string>(r[1]) : "";
    if (const auto* a = std::get_if<std::string>(&r[2])) c.after = decode_key(*a);
    c.copied = std::get_if<std::int64_t>(&r[3]) ? std::get<std::int64_t>(r[3]) : 0;
    c.done = std::get_if<std::int64_t>(&r[4]) && std::get<std::int64_t>(r[4]) != 0;
    c.batch = std::get_if<std::string>(&r[5]) ? std::get<std::string>(r[5]) : "";
    out.push_back(std::move(c));
  }
  return out;
}

outcome<void> drop_checkpoint(backends::store& target, std::chrono::milliseconds timeout) {
  return run_until_known(target, {{std::string("DROP TABLE IF EXISTS ") + k_checkpoint_table, {}}}, timeout);
}

bool copy_result::ok() const {
  if (!error.empty()) return false;
  return std::all_of(tables.begin(), tables.end(), [](const table_copy& t) { return t.done && t.error.empty(); });
}

std::int64_t copy_result::total_rows() const {
  std::int64_t n = 0;
  for (const auto& t : tables) n += t.total;
  return n;
}

std::int64_t copy_result::copied_rows() const {
  std::int64_t n = 0;
  for (const auto& t : tables) n += t.copied;
  return n;
}

std::int64_t copy_result::failed_rows() const {
  std::int64_t n = 0;
  for (const auto& t : tables) n += t.failed;
  return n;
}

// ---- the engine ---------------------------------------------------------------------------------------

namespace {

enum class status { waiting, active, done, failed };

struct table_state {
  const table_info* info = nullptr;
  table_copy result;
  status state = status::waiting;
  int owner = -1;
  bool solo = false;  // failed inside a batch with other tables: copied alone from now on
  // What the target holds (the last committed checkpoint).
  std::optional<row> committed_after;
  std::int64_t committed = 0;
  std::string committed_batch;  // the batch id in its checkpoint row; empty: no row yet
  // How far this table's owner has read (into batches not yet committed).
  std::optional<row> read_after;
  std::int64_t read = 0;
  bool read_done = false;
};

// One batch: rows of one or more tables, and each table's checkpoint after it.
struct batch {
  std::vector<statement> statements;
  std::vector<table_state*> tables;                   // in the order they were added
  std::vector<std::optional<row>> after;              // per table: its last key in this batch
  std::vector<std::int64_t> read;                     // per table: rows read up to this batch's end
  std::vector<bool> done;                             // per table: the batch ends it
  std::size_t rows = 0;
  std::string id;
  bool empty() const { return tables.empty(); }
  bool has(const table_state* t) const { return std::find(tables.begin(), tables.end(), t) != tables.end(); }
  bool has_solo() const {
    return std::any_of(tables.begin(), tables.end(), [](const table_state* t) { return t->solo; });
  }
};

class engine {
 public:
  engine(reader& source, const std::vector<table_info>& tables, backends::store& target, const copy_options& o, copy_observer* obs)
      : source_(source), target_(target), o_(o), obs_(obs) {
    for (const auto& t : tables) {
      auto& s = states_.emplace_back();
      s.info = &t;
      s.result.table = t.name;
    }
    std::random_device rd;
    run_id_ = std::to_string(rd()) + "-" + std::to_string(backends::wall_ms());
  }

  copy_result run() {
    if (auto ok = prepare(); !ok) {
      result_.error = ok.error().message;
      collect();
      return result_;
    }
    const int workers = std::max(1, o_.parallel_tables);
    std::vector<std::thread> threads;
    for (int w = 1; w < workers; ++w) threads.emplace_back([this, w] { work(w); });
    work(0);
    for (auto& t : threads) t.join();
    collect();
    return result_;
  }

 private:
  // Counts, the checkpoint, and the emptiness of tables the checkpoint does not cover.
  // Long (~85 lines): the checks before the first batch, in the order their refusals must come.
  outcome<void> prepare() {
    std::vector<statement> counts;
    for (const auto& s : states_) counts.push_back({"SELECT count(*) FROM " + quote_name(s.info->name), {}});
    if (!counts.empty()) {
      auto c = source_.query(std::move(counts));
      if (!c) return error{c.error().code, "counting the source's rows: " + c.error().message, {}, {}};
      for (std::size_t i = 0; i < states_.size(); ++i) {
        const auto& cell = (*c)[i].rows.at(0).at(0);
        states_[i].result.total = std::holds_alternative<std::int64_t>(cell) ? std::get<std::int64_t>(cell) : 0;
      }
    }
    if (!o_.dry_run) {
      auto made = run_until_known(target_, {{std::string("CREATE TABLE IF NOT EXISTS ") + k_checkpoint_table +
                                                 " (tbl TEXT PRIMARY KEY, source TEXT NOT NULL, after TEXT, copied INTEGER NOT NULL, "
                                                 "done INTEGER NOT NULL, batch TEXT NOT NULL, updated_ms INTEGER NOT NULL)",
                                             {}}},
                                  o_.timeout);
      if (!made) return error{made.error().code, "creating the checkpoint table in the target: " + made.error().message, {}, {}};
    }
    auto cp = read_checkpoint(target_);
    if (!cp) return error{cp.error().code, "reading the target's checkpoint: " + cp.error().message, {}, {}};
    if (!cp->empty() && !o_.resume) {
      return error{errc::bad_request,
                   "the target holds the checkpoint of an earlier, unfinished copy from " + cp->front().source + " (" +
                       std::to_string(cp->size()) + " table(s) started): run again with --resume to continue it, or drop table " +
                       k_checkpoint_table + " in the target to start over",
                   {}, {}};
    }
    for (const auto& c : *cp) {
      if (c.source != o_.source_id) {
        return error{errc::bad_request, "the target's checkpoint is of a copy from " + c.source + ", not from " + o_.source_id +
                                            ": resuming would mix two sources", {}, {}};
      }
    }
    auto names = run_sync(target_, {{"SELECT name FROM sqlite_schema WHERE type = 'table'", {}}}, backends::clock::now() + o_.timeout);
    if (!names) return error{names.error().code, "reading the target's schema: " + names.error().message, {}, {}};
    auto in_target = [&](const std::string& table) {
      for (const auto& r : names->at(0).rows)
        if (const auto* n = std::get_if<std::string>(&r[0]); n && *n == table) return true;
      return false;
    };
    std::vector<statement> probes;
    std::vector<table_state*> probed;
    std::string missing;
    for (auto& s : states_) {
      if (!in_target(s.info->name)) {
        missing += (missing.empty() ? "" : ", ") + s.info->name;
        continue;
      }
      const auto it = std::find_if(cp->begin(), cp->end(), [&](const checkpoint_row& c) { return c.table == s.info->name; });
      if (it != cp->end()) {
        s.committed_after = it->after;
        s.committed_batch = it->batch;
        s.committed = s.read = s.result.copied = s.result.resumed = it->copied;
        s.read_after = it->after;
        if (it->done) {
          s.state = status::done;
          s.result.done = true;
          s.read_done = true;
        }
        continue;
      }
      probes.push_back({"SELECT EXISTS (SELECT 1 FROM " + quote_name(s.info->name) + ")", {}});
      probed.push_back(&s);
    }
    if (!missing.empty() && !o_.dry_run) {
      return error{errc::bad_request, "the target has no table(s) " + missing + " (create the schema first)", {}, {}};
    }
    if (!probes.empty()) {
      auto r = run_sync(target_, std::move(probes), backends::clock::now() + o_.timeout);
      if (!r) return error{r.error().code, "looking at the target's tables: " + r.error().message, {}, {}};
      std::string full;
      for (std::size_t i = 0; i < probed.size(); ++i) {
        const auto& cell = (*r)[i].rows.at(0).at(0);
        if (std::holds_alternative<std::int64_t>(cell) && std::get<std::int64_t>(cell) != 0)
          full += (full.empty() ? "" : ", ") + probed[i]->info->name;
      }
      if (!full.empty()) {
        return error{errc::bad_request, "the target's table(s) " + full +
                                            " already hold rows that no checkpoint of tandem's accounts for: copying would duplicate "
                                            "or mix them (empty them, or restore with --force)",
                     {}, {}};
      }
    }
    return {};
  }

  void collect() {
    for (const auto& s : states_) result_.tables.push_back(s.result);
  }

  // Parents are the tables its foreign keys reference that come earlier in the order (in a
  // cycle, the later ones are not waited for).
  bool parents_ready(const table_state& s, int me) const {
    for (const auto& p : s.info->parents) {
      for (const auto& other : states_) {
        if (&other == &s) break;
        if (other.info->name != p) continue;
        const bool ok = other.state == status::done || other.state == status::failed ||
                        (other.state == status::active && other.owner == me && other.read_done);
        if (!ok) return false;
      }
    }
    return true;
  }

  // The next table for worker `me` to read into `b`, or null.
  table_state* next_table(int me, const batch& b, std::vector<table_state*>& mine) {
    std::lock_guard lock(mu_);
    for (auto* s : mine) {
      if (!s->read_done && s->state == status::active) {
        if (!b.empty() && (s->solo || b.has_solo()) && !b.has(s)) return nullptr;
        return s;
      }
    }
    if (stop_ || (!b.empty() && b.has_solo())) return nullptr;
    for (auto& s : states_) {
      if (s.state != status::waiting || !parents_ready(s, me)) continue;
      if (!b.empty() && s.solo) continue;
      s.state = status::active;
      s.owner = me;
      mine.push_back(&s);
      if (obs_) obs_->started(s.result);
      return &s;
    }
    return nullptr;
  }

  // Reads up to `want` rows of `s` into `b`. False (with `failure` set) on a read error.
  bool fill(table_state& s, batch& b, std::size_t want, std::string& failure) {
    const auto& t = *s.info;
    select_spec spec;
    spec.table = t.name;
    spec.columns = t.copy_columns;
    spec.order_by = t.key_expr();
    spec.limit = want;
    if (s.read_after) {
      spec.where = t.after_predicate();
      spec.params = *s.read_after;
    }
    auto rows = source_.select_one(spec);
    if (!rows) {
      failure = "reading table " + t.name + " from " + source_.describe() + ": " + rows.error().message;
      return false;
    }
    auto sts = build_inserts(t, *rows, o_.limits);
    if (!sts) {
      failure = sts.error().message;
      return false;
    }
    for (auto& st : *sts) b.statements.push_back(std::move(st));
    if (!rows->empty()) s.read_after = t.key_of(rows->back());
    s.read += static_cast<std::int64_t>(rows->size());
    s.read_done = rows->size() < want;
    b.rows += rows->size();
    auto it = std::find(b.tables.begin(), b.tables.end(), &s);
    if (it == b.tables.end()) {
      b.tables.push_back(&s);
      b.after.push_back(s.read_after);
      b.read.push_back(s.read);
      b.done.push_back(s.read_done);
    } else {
      const auto k = static_cast<std::size_t>(it - b.tables.begin());
      b.after[k] = s.read_after;
      b.read[k] = s.read;
      b.done[k] = s.read_done;
    }
    return true;
  }

  // The batch as sent: deferred foreign keys, a guard per table (json() of text that is not JSON
  // raises an error, aborting the batch, unless the table's checkpoint is where this batch
  // continues from), the rows, then each table's new checkpoint.
  std::vector<statement> wire(const batch& b) const {
    std::vector<statement> out;
    out.reserve(b.statements.size() + 2 * b.tables.size() + 1);
    out.push_back({"PRAGMA defer_foreign_keys = ON", {}});
    for (const auto* t : b.tables) {
      statement guard;
      if (t->committed_batch.empty()) {
        guard.sql = std::string("SELECT json('") + k_guard + "') WHERE EXISTS (SELECT 1 FROM " + k_checkpoint_table + " WHERE tbl = ?)";
        guard.params.positional = {value{t->info->name}};
      } else {
        guard.sql = std::string("SELECT json('") + k_guard + "') WHERE NOT EXISTS (SELECT 1 FROM " + k_checkpoint_table +
                    " WHERE tbl = ? AND batch = ?)";
        guard.params.positional = {value{t->info->name}, value{t->committed_batch}};
      }
      out.push_back(std::move(guard));
    }
    out.insert(out.end(), b.statements.begin(), b.statements.end());
    for (std::size_t k = 0; k < b.tables.size(); ++k) {
      statement cp{std::string("INSERT OR REPLACE INTO ") + k_checkpoint_table +
                       " (tbl, source, after, copied, done, batch, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   {}};
      cp.params.positional = {value{b.tables[k]->info->name},
                              value{o_.source_id},
                              b.after[k] ? value{encode_key(*b.after[k])} : value{},
                              value{std::int64_t{b.read[k]}},
                              value{std::int64_t{b.done[k] ? 1 : 0}},
                              value{b.id},
                              value{backends::wall_ms()}};
      out.push_back(std::move(cp));
    }
    return out;
  }

  std::future<outcome<std::vector<protocol::query_result>>> send(const batch& b) {
    auto done = std::make_shared<std::promise<outcome<std::vector<protocol::query_result>>>>();
    auto f = done->get_future();
    if (o_.dry_run) {
      done->set_value(std::vector<protocol::query_result>{});
      return f;
    }
    backends::exec_options eo;
    eo.internal = true;
    eo.deadline = backends::clock::now() + o_.timeout;
    target_.execute_batch(wire(b), eo, [done](outcome<std::vector<protocol::query_result>> r) { done->set_value(std::move(r)); });
    return f;
  }

  // Whether the batch `id` committed, from the checkpoint of its first table; nullopt when the
  // target cannot say (unreachable).
  std::optional<bool> committed(const batch& b) {
    statement q{std::string("SELECT batch FROM ") + k_checkpoint_table + " WHERE tbl = ?", {}};
    q.params.positional = {value{b.tables.front()->info->name}};
    std::vector<statement> sts;
    sts.push_back(std::move(q));
    auto r = run_sync(target_, std::move(sts), backends::clock::now() + std::chrono::seconds(10));
    if (!r) return std::nullopt;
    const auto& rows = r->at(0).rows;
    return !rows.empty() && std::get_if<std::string>(&rows[0][0]) && std::get<std::string>(rows[0][0]) == b.id;
  }

  // Sends `b` until it is known to have committed or to have failed. Empty string: committed.
  std::string deliver(const batch& b, std::future<outcome<std::vector<protocol::query_result>>> first) {
    const auto deadline = backends::clock::now() + o_.timeout;
    auto backoff = std::chrono::milliseconds(200);
    auto pending = std::move(first);
    for (;;) {
      auto r = pending.get();
      if (r) return {};
      if (r.error().message.find("malformed JSON") != std::string::npos) {
        // A guard fired: the checkpoint is not where this batch continues from. Either this very
        // batch is already in (sent twice), or someone else moved it.
        const auto in = committed(b);
        if (in && *in) return {};
        return "fatal:the checkpoint of table " + b.tables.front()->info->name +
               " changed during the copy: is another tandem migrate writing to this database?";
      }
      if (!protocol::is_transient(r.error())) return "error:" + r.error().message;
      // D1 did not answer, or not in time: find out whether the batch is in before sending it again.
      for (;;) {
        if (backends::clock::now() > deadline) {
          return "fatal:the target did not answer for " + std::to_string(o_.timeout.count()) + " ms (MIGRATION_TIMEOUT); last error: " +
                 r.error().message;
        }
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
        const auto in = committed(b);
        if (!in) continue;
        if (*in) return {};
        break;
      }
      {
        std::lock_guard lock(mu_);
        ++result_.resent;
      }
      pending = send(b);
    }
  }

  // The batch's tables go back to what the target holds.
  void rewind(const batch& b) {
    std::lock_guard lock(mu_);
    for (auto* s : b.tables) {
      s->read_after = s->committed_after;
      s->read = s->committed;
      s->read_done = false;
    }
  }

  void commit(const batch& b) {
    std::lock_guard lock(mu_);
    ++result_.batches;
    result_.statements += b.statements.size();
    ++committed_batches_;
    for (std::size_t k = 0; k < b.tables.size(); ++k) {
      auto* s = b.tables[k];
      s->committed_after = b.after[k];
      s->committed_batch = b.id;
      s->committed = b.read[k];
      s->result.copied = b.read[k];
      if (obs_) obs_->progressed(s->result);
      if (b.done[k]) {
        s->state = status::done;
        s->result.done = true;
        if (obs_) obs_->finished(s->result);
      }
    }
    cv_.notify_all();
  }

  void fail_table(table_state& s, const std::string& why) {
    std::lock_guard lock(mu_);
    s.state = status::failed;
    s.result.error = why;
    s.result.failed = std::max<std::int64_t>(0, s.result.total - s.committed);
    if (obs_) obs_->finished(s.result);
    if (!o_.continue_on_error) stop(why);
    cv_.notify_all();
  }

  void stop(const std::string& why) {
    if (!stop_) result_.error = why;
    stop_ = true;
    cv_.notify_all();
  }

  // Handles a batch that will not commit: one table fails, or the tables retry one by one.
  void failed(const batch& b, const std::string& why) {
    rewind(b);
    if (b.tables.size() > 1) {
      std::lock_guard lock(mu_);
      for (auto* s : b.tables) s->solo = true;
      return;
    }
    fail_table(*b.tables.front(), "table " + b.tables.front()->info->name + ": " + why);
  }

  void maybe_stall() {
    if (o_.stall_after_batches < 0) return;
    std::unique_lock lock(mu_);
    if (committed_batches_ != static_cast<std::size_t>(o_.stall_after_batches)) return;
    std::cerr << "tandem: stalling after " << committed_batches_ << " committed batches (test hook)" << std::endl;
    for (;;) cv_.wait(lock);  // until the process is killed
  }

  void work(int me) {
    std::vector<table_state*> mine;
    std::optional<batch> inflight;
    std::future<outcome<std::vector<protocol::query_result>>> inflight_result;
    batch pending;
    auto new_id = [&] { return run_id_ + "-" + std::to_string(me) + "-" + std::to_string(++sent_); };
    for (;;) {
      std::string read_failure;
      table_state* reading = nullptr;
      while (pending.rows < o_.batch_rows && read_failure.empty()) {
        reading = next_table(me, pending, mine);
        if (reading == nullptr) break;
        if (!fill(*reading, pending, o_.batch_rows - pending.rows, read_failure)) break;
      }
      if (!read_failure.empty()) {
        // A read error or a value over the limits: that table fails; the rest is read again.
        if (inflight) {
          handle(*inflight, deliver(*inflight, std::move(inflight_result)));
          inflight.reset();
        }
        rewind(pending);
        pending = {};
        fail_table(*reading, read_failure);
        continue;
      }
      if (inflight) {
        const auto r = deliver(*inflight, std::move(inflight_result));
        const bool ok = handle(*inflight, r);
        inflight.reset();
        if (!ok) {
          rewind(pending);
          pending = {};
          continue;
        }
      }
      bool stopping;
      {
        std::lock_guard lock(mu_);
        stopping = stop_;
      }
      if (stopping) {
        rewind(pending);
        return;
      }
      if (!pending.empty()) {
        pending.id = new_id();
        maybe_stall_send(pending);
        inflight = std::move(pending);
        inflight_result = send(*inflight);
        pending = {};
        continue;
      }
      // Nothing to read and nothing in flight: done, or waiting for another worker's parents.
      std::unique_lock lock(mu_);
      std::erase_if(mine, [](table_state* s) { return s->state == status::done || s->state == status::failed; });
      const bool more = std::any_of(states_.begin(), states_.end(), [](const table_state& s) { return s.state == status::waiting; });
      if (stop_ || (!more && mine.empty())) return;
      cv_.wait_for(lock, std::chrono::milliseconds(200));
    }
  }

  void maybe_stall_send(const batch& b) {
    if (o_.stall_after_batches < 0) return;
    std::size_t n;
    {
      std::lock_guard lock(mu_);
      n = committed_batches_;
    }
    if (n != static_cast<std::size_t>(o_.stall_after_batches)) return;
    auto f = send(b);  // in flight when the process is killed
    maybe_stall();
  }

  // Applies a delivered batch's outcome. False when it did not commit.
  bool handle(const batch& b, const std::string& outcome_text) {
    if (outcome_text.empty()) {
      commit(b);
      return true;
    }
    if (outcome_text.rfind("fatal:", 0) == 0) {
      rewind(b);
      std::lock_guard lock(mu_);
      stop(outcome_text.substr(6) + "; run again with --resume to continue");
      return false;
    }
    failed(b, outcome_text.substr(6));
    return false;
  }

  reader& source_;
  backends::store& target_;
  const copy_options& o_;
  copy_observer* obs_;
  std::deque<table_state> states_;
  copy_result result_;
  std::string run_id_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::size_t committed_batches_ = 0;
  std::atomic<std::size_t> sent_{0};
};

}  // namespace

copy_result copy_tables(reader& source, const std::vector<table_info>& tables, backends::store& target, const copy_options& options,
                        copy_observer* observer) {
  engine e(source, tables, target, options, observer);
  return e.run();
}

}  // namespace tandem::tools
