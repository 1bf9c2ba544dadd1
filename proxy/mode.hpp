// tandem's four modes, and what changing from one to another takes, as a pure function:
// router::set_mode() carries the plan out (stores, locks, the lease); tests/proxy/mode_test.cpp
// walks every pair of modes without any store.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tandem::proxy {

enum class mode { sqlite_only, dual_sqlite, dual_d1, d1_only };
std::string_view to_string(mode m) noexcept;
std::optional<mode> mode_from_string(std::string_view s) noexcept;
inline bool is_dual(mode m) noexcept { return m == mode::dual_sqlite || m == mode::dual_d1; }

// What the router has, as the plan depends on it.
struct mode_context {
  bool single_store = false;  // serving one store only (no other one configured in this process)
  bool has_sqlite = true;
  bool has_d1 = true;
  bool has_lease = false;     // D1's replication lease is configured (proxy/d1_lease.hpp)
};

enum class mode_path {
  none,            // already there
  refused,         // `refusal` says why; nothing changes
  switch_primary,  // one dual mode to the other: router::switch_primary()
  leave_dual,      // a dual mode to the single mode of its leader
  enter_dual,      // sqlite-only to dual-sqlite
};

enum class store_side { sqlite, d1 };

struct mode_plan {
  mode_path path = mode_path::none;
  std::string refusal;                    // BAD_REQUEST's message, for `refused`
  bool takes_lease = false;               // first, before writes are held; another holder refuses the change
  bool stops_replication = false;         // the replicator stops before anything else
  std::optional<store_side> marks_stale;  // the store that goes on alone records that the other stops following
  bool may_clear_stale_mark = false;      // a mark this process set with no write since is taken back
  bool releases_lease = false;            // once the change stands: nothing replicates any more
  bool starts_replication = false;        // once the change stands
};

mode_plan plan_mode_change(mode from, mode to, const mode_context& context);

}  // namespace tandem::proxy
