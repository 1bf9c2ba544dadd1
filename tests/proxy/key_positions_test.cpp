#include "proxy/key_positions.hpp"

#include <gtest/gtest.h>

namespace tandem::proxy {
namespace {

using namespace std::chrono_literals;
using protocol::position;
const auto t0 = key_positions::clock::time_point{} + 1h;

TEST(KeyPositions, KeepsTheNewestPositionPerKey) {
  key_positions keys(10, 1000ms);
  EXPECT_TRUE(keys.get("a", t0).empty());
  keys.note("a", {"sqlite", 5}, t0);
  keys.note("a", {"sqlite", 3}, t0);
  keys.note("b", {"sqlite", 1}, t0);
  EXPECT_EQ(keys.get("a", t0), (position{"sqlite", 5}));
  EXPECT_EQ(keys.get("b", t0), (position{"sqlite", 1}));
  keys.note("a", {"d1", 2}, t0);  // the other journal, after a switch: seen later, so newer
  EXPECT_EQ(keys.get("a", t0), (position{"d1", 2}));
  EXPECT_EQ(keys.size(), 2u);
}

TEST(KeyPositions, ForgetsAKeyTtlAfterItsLastNote) {
  key_positions keys(10, 1000ms);
  keys.note("a", {"sqlite", 1}, t0);
  keys.note("b", {"sqlite", 1}, t0 + 500ms);
  keys.note("a", {"sqlite", 2}, t0 + 900ms);  // restarts a's time
  EXPECT_EQ(keys.get("a", t0 + 1800ms), (position{"sqlite", 2}));
  EXPECT_TRUE(keys.get("b", t0 + 1500ms).empty());
  EXPECT_EQ(keys.size(), 1u);
  EXPECT_TRUE(keys.get("a", t0 + 1900ms).empty());
  EXPECT_EQ(keys.size(), 0u);
}

TEST(KeyPositions, HoldsAtMostMaxKeysForgettingTheLeastRecentlyNoted) {
  key_positions keys(3, 1000ms);
  for (int i = 0; i < 3; ++i) keys.note("k" + std::to_string(i), {"sqlite", i}, t0);
  keys.note("k0", {"sqlite", 10}, t0);  // k0 is now the most recent
  keys.note("k3", {"sqlite", 3}, t0);   // k1 goes
  EXPECT_EQ(keys.size(), 3u);
  EXPECT_TRUE(keys.get("k1", t0).empty());
  EXPECT_EQ(keys.get("k0", t0), (position{"sqlite", 10}));
  EXPECT_EQ(keys.get("k2", t0), (position{"sqlite", 2}));
  EXPECT_EQ(keys.get("k3", t0), (position{"sqlite", 3}));
  for (int i = 0; i < 1000; ++i) keys.note("many" + std::to_string(i), {"sqlite", i}, t0);
  EXPECT_EQ(keys.size(), 3u);
}

TEST(KeyPositions, ZeroRemembersNothing) {
  key_positions none(0, 1000ms), brief(10, 0ms);
  none.note("a", {"sqlite", 1}, t0);
  brief.note("a", {"sqlite", 1}, t0);
  EXPECT_TRUE(none.get("a", t0).empty());
  EXPECT_TRUE(brief.get("a", t0).empty());
}

}  // namespace
}  // namespace tandem::proxy
