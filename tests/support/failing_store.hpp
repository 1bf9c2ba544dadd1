// A store that fails one call of its choosing, for testing what calls a store (the replicator,
// the router) through every failure it can meet: the n-th call to execute or execute_batch fails
// either before it reaches the real store (nothing ran) or after (it ran, and the answer was lost
// on the way back, as with a D1 request that timed out and committed late). Running an operation
// once for every n in turn, both ways, is Boost.MySQL's way of testing its state machines.
#pragma once

#include <atomic>

#include "backends/store.hpp"

namespace tandem::testing {

class failing_store final : public backends::store {
 public:
  enum class fault { before, after };

  // fail_at 0: never fails (a clean run, to count the calls).
  failing_store(backends::store& inner, int fail_at, fault how) : inner_(inner), fail_at_(fail_at), how_(how) {}

  std::string_view name() const noexcept override { return inner_.name(); }

  void execute(protocol::statement st, backends::exec_options options, backends::query_done done) override {
    const bool fail = next_fails();
    if (fail && how_ == fault::before) return done(injected());
    if (!fail) return inner_.execute(std::move(st), std::move(options), std::move(done));
    inner_.execute(std::move(st), std::move(options), [done = std::move(done)](auto) { done(injected()); });
  }

  void execute_batch(std::vector<protocol::statement> statements, backends::exec_options options, backends::batch_done done) override {
    const bool fail = next_fails();
    if (fail && how_ == fault::before) return done(injected());
    if (!fail) return inner_.execute_batch(std::move(statements), std::move(options), std::move(done));
    inner_.execute_batch(std::move(statements), std::move(options), [done = std::move(done)](auto) { done(injected()); });
  }

  // The real store's owner shuts it down.
  void shutdown() override {}

  int calls() const { return calls_.load(); }
  bool failed() const { return calls() >= fail_at_ && fail_at_ > 0; }

 private:
  bool next_fails() { return ++calls_ == fail_at_; }
  static protocol::error injected() {
    return protocol::error{protocol::errc::unavailable, "injected failure (tests/support/failing_store.hpp)", {}, {}};
  }

  backends::store& inner_;
  const int fail_at_;
  const fault how_;
  std::atomic<int> calls_{0};
};

}  // namespace tandem::testing
