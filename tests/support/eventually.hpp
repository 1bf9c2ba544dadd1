// Waiting on a condition in a test: one bounded poll with a message.
//
//   ASSERT_TRUE(eventually("the follower applied seq 7", [&] { return rep->applied() >= 7; }));
//
// The bound is a hang guard, not a speed limit: a test never asserts how long something took.
// It is long (a minute by default) so that a machine busy with other builds does not fail a test
// that is merely slow; a condition that never holds fails with what was awaited and how long the
// test waited for it, instead of hanging until ctest's timeout names nothing.
#pragma once

#include <chrono>
#include <string_view>
#include <thread>

#include <gtest/gtest.h>

namespace tandem::testing {

inline constexpr std::chrono::milliseconds k_eventually_bound{60'000};
inline constexpr std::chrono::milliseconds k_eventually_poll{20};

// Calls `done` until it returns true, sleeping `poll` between calls, for at most `bound`.
// Success as soon as it holds; once `bound` has passed with it still false, a failure whose
// message names `what`. Use it with ASSERT_TRUE or EXPECT_TRUE; more context can be streamed in:
//   EXPECT_TRUE(eventually("lease renewed", [&] { … })) << json::serialize(status);
template <class Condition>
[[nodiscard]] ::testing::AssertionResult eventually(std::string_view what, Condition&& done,
                                                    std::chrono::milliseconds bound = k_eventually_bound,
                                                    std::chrono::milliseconds poll = k_eventually_poll) {
  const auto start = std::chrono::steady_clock::now();
  const auto until = start + bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) {
      const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
      return ::testing::AssertionFailure() << "timed out waiting for: " << what << " (gave up after " << waited.count()
                                           << " ms) ";
    }
    std::this_thread::sleep_for(poll);
  }
  return ::testing::AssertionSuccess();
}

}  // namespace tandem::testing
