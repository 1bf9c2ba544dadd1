// The command line of `tandem bench migrate`, so that main() only registers it and runs it when
// it was parsed. It lives with the benchmarks, not with the move tools' commands
// (tools/commands.hpp): the front-ends of the move tools do not link the benchmark code.
#pragma once

#include <memory>
#include <optional>

namespace CLI {
class App;
}

namespace tandem::tools {

class bench_commands {
 public:
  bench_commands();
  ~bench_commands();

  // Adds migrate to `bench` (the `tandem bench` subcommand).
  void add(CLI::App& bench);

  // The exit status of `bench migrate` when it was parsed, else nullopt.
  std::optional<int> run();

 private:
  struct state;
  std::unique_ptr<state> s_;
};

}  // namespace tandem::tools
