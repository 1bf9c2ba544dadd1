// The command lines of the move tools (migrate, validate, backup, restore), so that
// main() only registers them and runs the one that was parsed.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace CLI {
class App;
}

namespace tandem::tools {

struct d1_settings;

class move_commands {
 public:
  // Fills the d1 settings from a tandem config file (its "d1" section); only fields still
  // empty are set, so flags win. Throws on a bad file (main reports it as a configuration error).
  using config_loader = std::function<void(const std::string& path, d1_settings& d1)>;

  move_commands();
  ~move_commands();

  // Adds migrate, validate, backup and restore to `app`.
  void add(CLI::App& app);

  // The exit status of the command that was parsed, or nullopt when none of them was.
  std::optional<int> run(const config_loader& load_config);

 private:
  struct state;
  std::unique_ptr<state> s_;
};

}  // namespace tandem::tools
