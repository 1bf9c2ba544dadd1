// `tandem ctl <command...>`: sends one command to tandem's control socket, pretty-prints the
// JSON answer, and exits non-zero when the command was refused.
#pragma once

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

// `v` as indented JSON (two spaces), for people.
std::string pretty_json(const std::string& compact);

}  // namespace tandem::tools
