// `tandem bench`: point-select and single-row insert throughput and latency through tandem,
// side by side with the same work on in-process SQLite (the floor) and a minimal TCP
// request/response server (the network floor).
#pragma once

#include <string>
#include <vector>

namespace tandem::tools {

struct bench_options {
  std::string url;              // use a running tandem; empty: start one on a temporary file
  std::string token_env;        // token for --url
  std::string tandem_binary;    // the executable to run `serve` from (default: this one)
  std::vector<int> connections{1, 16, 64};
  std::vector<std::string> workloads{"ping", "select", "insert"};  // which rows of the table run
  int rows = 10000;
  double seconds = 2.0;         // per measurement
  std::string synchronous = "FULL";
  std::string dir;              // working directory for the database files (default: a temp dir)
  std::string store = "sqlite"; // "sqlite", or "d1": tandem in d1-only mode against the local D1
  std::string d1_local;         // tools/d1-local (default: found next to the source tree)
};

// Prints the comparison table to stdout. Returns 0, or 1 if something could not run.
int run_bench(const bench_options& options);

}  // namespace tandem::tools
