// The local D1 (tools/d1-local) as a process the benchmarks start and stop.
#pragma once

#include <string>

#include "backends/d1_store.hpp"

namespace tandem::tools {

// Runs `cmd` through the shell and returns its stdout without the trailing newline; throws
// std::runtime_error when it exits non-zero.
std::string shell_output(const std::string& cmd);

// tools/d1-local, found from the tandem binary's place in a build folder (build/proxy/tandem).
std::string default_d1_local_dir(const std::string& binary);

// A local D1 with its state in `state`, started by the constructor and stopped by the destructor.
class d1_local_process {
 public:
  static constexpr const char* k_account = "0123456789abcdef0123456789abcdef";
  static constexpr const char* k_token = "local-dev-token";
  d1_local_process(std::string tools_dir, std::string state);
  ~d1_local_process();
  d1_local_process(const d1_local_process&) = delete;
  d1_local_process& operator=(const d1_local_process&) = delete;
  void start();  // again on the same port after stop()
  void stop();
  const std::string& url() const { return url_; }
  const std::string& tools_dir() const { return tools_; }
  // Database DBnn's id, emptied.
  std::string fresh(int nn);
  // Over `transport`: D1's REST API, or the bridge Worker the local D1 serves at /bridge/{id}.
  backends::d1_options options(const std::string& database, backends::d1_transport transport = backends::d1_transport::rest) const;
  // The "d1" section of a tandem config for `database` (token in $TANDEM_BENCH_D1_TOKEN).
  std::string config(const std::string& database, backends::d1_transport transport = backends::d1_transport::rest) const;
  // Requests the local D1 answered for `database` since it started (its /fault status).
  std::int64_t requests(const std::string& database) const;

 private:
  std::string tools_, state_, url_, port_;
};

}  // namespace tandem::tools
