// `tandem shell`: an interactive SQL shell over protocol v1, in the manner of sqlite3.
#pragma once

#include <string>

namespace tandem::tools {

struct shell_options {
  std::string url = "tandem://127.0.0.1:6440";
  std::string token_env;  // environment variable holding the token (overrides the URL's)
  std::string command;    // -c: run this SQL (or dot-command) and exit
  std::string mode = "table";  // table, json, line, list
  bool bail = false;      // stop at the first error
};

// Runs the shell on stdin/stdout. Returns 0 when every statement succeeded, 1 otherwise.
int run_shell(const shell_options& options);

}  // namespace tandem::tools
