// `tandem ctl <command...>`: sends one command to tandem's control socket, pretty-prints the
// JSON answer, and exits non-zero when the command was refused.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace tandem::tools {

struct ctl_options {
  std::string socket = "var/tandem.sock";
  std::vector<std::string> words;  // the command and its arguments
  bool raw = false;                 // print the answer line as it came
};

// 0 when the command succeeded, 1 when tandem refused it, 2 when tandem could not be reached.
int run_ctl(const ctl_options& options);

// Sends one command line to the control socket at `socket` and returns the answer line (without
// its newline), or nullopt with `error` saying why (cannot connect, no answer).
std::optional<std::string> control_exchange(const std::string& socket, const std::string& line, std::string& error);

// `v` as indented JSON (two spaces), for people.
std::string pretty_json(const std::string& compact);

}  // namespace tandem::tools
