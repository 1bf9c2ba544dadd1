#include "proxy/mode.hpp"

namespace tandem::proxy {

std::string_view to_string(mode m) noexcept {
  switch (m) {
    case mode::sqlite_only: return "sqlite-only";
    case mode::dual_sqlite: return "dual-sqlite";
    case mode::dual_d1: return "dual-d1";
    case mode::d1_only: return "d1-only";
  }
  return "?";
}

std::optional<mode> mode_from_string(std::string_view s) noexcept {
  for (mode m : {mode::sqlite_only, mode::dual_sqlite, mode::dual_d1, mode::d1_only}) {
    if (to_string(m) == s) return m;
  }
  return std::nullopt;
}

mode_plan plan_mode_change(mode from, mode to, const mode_context& context) {
  mode_plan p;
  if (from == to) return p;
  if (is_dual(from) && is_dual(to)) {
    p.path = mode_path::switch_primary;
    return p;
  }
  const bool allowed = (from == mode::sqlite_only && to == mode::dual_sqlite) || (from == mode::dual_sqlite && to == mode::sqlite_only) ||
                       (from == mode::dual_d1 && to == mode::d1_only);
  if (!allowed || context.single_store) {
    p.path = mode_path::refused;
    p.refusal = "cannot go from " + std::string(to_string(from)) + " to " + std::string(to_string(to)) +
                " directly: the path is sqlite-only, dual-sqlite, dual-d1 (switch-primary), d1-only; "
                "going back from d1-only needs D1 copied to SQLite first";
    return p;
  }
  if (!context.has_sqlite || !context.has_d1) {
    p.path = mode_path::refused;
    p.refusal = std::string(to_string(to)) + " needs both stores, and " + (context.has_d1 ? "SQLite" : "D1") +
                " is not configured (set d1.account_id, d1.database_id and d1.token_env, or d1.transport \"bridge\", d1.endpoint and "
                "d1.token_env, then restart)";
    return p;
  }
  if (is_dual(from)) {
    p.path = mode_path::leave_dual;
    p.stops_replication = true;
    p.marks_stale = to == mode::sqlite_only ? store_side::sqlite : store_side::d1;
    p.releases_lease = context.has_lease;
    return p;
  }
  p.path = mode_path::enter_dual;
  p.takes_lease = context.has_lease;
  p.may_clear_stale_mark = from == mode::sqlite_only;
  p.starts_replication = true;
  return p;
}

}  // namespace tandem::proxy
