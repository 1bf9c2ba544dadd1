#include "proxy/replication_step.hpp"

#include <algorithm>

namespace tandem::proxy {

loop_step next_step(const loop_state& s) {
  if (s.stop) return {loop_action::stop, 0};
  if (s.paused) return {loop_action::wait, 0};
  // The leader stopped journaling (its bound): what follows is not in the journal.
  if (s.ready && s.leader_journaling_stopped) return {loop_action::refuse, 0};
  if (!s.ready) return {loop_action::prepare, 0};
  return {loop_action::fetch, s.applied < s.single_until ? std::size_t{1} : s.batch_entries};
}

retry_wait next_retry(std::chrono::milliseconds backoff, std::chrono::milliseconds max, double draw) {
  const auto low = backoff.count() / 2;
  const auto wait = low + static_cast<std::int64_t>(draw * static_cast<double>(backoff.count() - low + 1));
  return {std::chrono::milliseconds(std::min<std::int64_t>(wait, backoff.count())), std::min(backoff * 2, max)};
}

std::chrono::steady_clock::time_point next_wake(std::chrono::steady_clock::time_point now,
                                                std::optional<std::chrono::steady_clock::time_point> earliest_waiter,
                                                std::chrono::milliseconds poll) {
  const auto wake = now + poll;
  return earliest_waiter ? std::min(wake, *earliest_waiter) : wake;
}

failure_plan plan_failure(const protocol::error& e, std::size_t entries) {
  failure_plan p;
  if (e.index == std::size_t{0} && e.message.find(backends::k_position_moved) != std::string::npos) {
    p.kind = batch_failure::late_commit;
    p.counts_as_failure = false;
    return p;
  }
  if (e.message.find(k_permit_fence_failed) != std::string::npos) {
    p.kind = batch_failure::fenced;
    p.counts_as_failure = false;
    return p;
  }
  const bool outage = protocol::is_transient(e);
  p.kind = outage ? batch_failure::outage : batch_failure::refused;
  p.isolate = entries > 1;
  p.stop_at_entry = entries == 1 && !outage;
  return p;
}

namespace {
// The entry's statement the follower named by its batch index (0 is the guard), if any.
const protocol::statement* named_statement(const backends::journal_entry& e, std::optional<std::size_t> index) {
  return index && *index >= 1 && *index - 1 < e.statements.size() ? &e.statements[*index - 1] : nullptr;
}
}  // namespace

std::string failing_sql(const backends::journal_entry& e, std::optional<std::size_t> index) {
  if (const auto* st = named_statement(e, index)) return st->sql;
  std::string sql;
  for (const auto& st : e.statements) {
    if (sql.size() > 2000) return sql + "; …";
    sql += (sql.empty() ? "" : "; ") + st.sql;
  }
  return sql;
}

std::string batch_name(const std::vector<backends::journal_entry>& entries, std::optional<std::size_t> index) {
  if (entries.empty()) return "an empty batch";
  std::string what = "seq " + std::to_string(entries.front().seq);
  if (entries.size() > 1) return what + "-" + std::to_string(entries.back().seq);
  if (const auto* st = named_statement(entries[0], index)) what += " (statement: " + st->sql + ")";
  return what;
}

}  // namespace tandem::proxy
