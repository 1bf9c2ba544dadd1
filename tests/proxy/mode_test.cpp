// Every change of mode (proxy/mode.hpp) as router::set_mode() will carry it out, without any store.
#include "proxy/mode.hpp"

#include <gtest/gtest.h>

namespace tandem::proxy {
namespace {

constexpr mode k_modes[] = {mode::sqlite_only, mode::dual_sqlite, mode::dual_d1, mode::d1_only};

TEST(ModeChange, OnlyTheMigrationPathIsAllowed) {
  const mode_context both{false, true, true, true};
  for (mode from : k_modes) {
    for (mode to : k_modes) {
      const auto p = plan_mode_change(from, to, both);
      const bool forward = (from == mode::sqlite_only && to == mode::dual_sqlite) || (from == mode::dual_d1 && to == mode::d1_only);
      const bool back = from == mode::dual_sqlite && to == mode::sqlite_only;
      mode_path expected = mode_path::refused;
      if (from == to) expected = mode_path::none;
      else if (is_dual(from) && is_dual(to)) expected = mode_path::switch_primary;
      else if (forward && from == mode::sqlite_only) expected = mode_path::enter_dual;
      else if (forward || back) expected = mode_path::leave_dual;
      EXPECT_EQ(p.path, expected) << to_string(from) << " -> " << to_string(to);
      if (p.path == mode_path::refused) {
        EXPECT_NE(p.refusal.find("the path is sqlite-only, dual-sqlite, dual-d1 (switch-primary), d1-only"), std::string::npos);
      }
    }
  }
  // d1-only back to anything needs a copy first.
  EXPECT_NE(plan_mode_change(mode::d1_only, mode::dual_d1, both).refusal.find("going back from d1-only needs D1 copied to SQLite first"),
            std::string::npos);
}

TEST(ModeChange, LeavingADualModeMarksTheStoreThatGoesOnAloneAndReleasesTheLease) {
  const mode_context with_lease{false, true, true, true};
  auto to_sqlite = plan_mode_change(mode::dual_sqlite, mode::sqlite_only, with_lease);
  EXPECT_TRUE(to_sqlite.stops_replication);
  ASSERT_TRUE(to_sqlite.marks_stale);
  EXPECT_EQ(*to_sqlite.marks_stale, store_side::sqlite);
  EXPECT_TRUE(to_sqlite.releases_lease);
  EXPECT_FALSE(to_sqlite.starts_replication);
  EXPECT_FALSE(to_sqlite.takes_lease);
  auto to_d1 = plan_mode_change(mode::dual_d1, mode::d1_only, with_lease);
  ASSERT_TRUE(to_d1.marks_stale);
  EXPECT_EQ(*to_d1.marks_stale, store_side::d1);
  // Without a lease configured there is none to release.
  EXPECT_FALSE(plan_mode_change(mode::dual_d1, mode::d1_only, {false, true, true, false}).releases_lease);
}

TEST(ModeChange, EnteringDualSqliteTakesTheLeaseFirstAndMayTakeBackAStaleMark) {
  auto p = plan_mode_change(mode::sqlite_only, mode::dual_sqlite, {false, true, true, true});
  EXPECT_TRUE(p.takes_lease);
  EXPECT_TRUE(p.may_clear_stale_mark);
  EXPECT_TRUE(p.starts_replication);
  EXPECT_FALSE(p.marks_stale);
  EXPECT_FALSE(plan_mode_change(mode::sqlite_only, mode::dual_sqlite, {false, true, true, false}).takes_lease);
}

TEST(ModeChange, ADualModeNeedsBothStores) {
  auto no_d1 = plan_mode_change(mode::sqlite_only, mode::dual_sqlite, {false, true, false, false});
  EXPECT_EQ(no_d1.path, mode_path::refused);
  EXPECT_NE(no_d1.refusal.find("dual-sqlite needs both stores, and D1 is not configured"), std::string::npos) << no_d1.refusal;
  // Serving one store only (tandem serve with one store): no change of mode at all.
  EXPECT_EQ(plan_mode_change(mode::sqlite_only, mode::dual_sqlite, {true, true, false, false}).path, mode_path::refused);
  EXPECT_EQ(plan_mode_change(mode::sqlite_only, mode::sqlite_only, {true, true, false, false}).path, mode_path::none);
}

TEST(ModeChange, NamesRoundTrip) {
  for (mode m : k_modes) EXPECT_EQ(mode_from_string(to_string(m)), m);
  EXPECT_FALSE(mode_from_string("dual"));
}

}  // namespace
}  // namespace tandem::proxy
