#include "tools/bench/local_d1.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace tandem::tools {

std::string shell_output(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("cannot run " + cmd);
  char buf[4096];
  while (auto n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  if (::pclose(p) != 0) throw std::runtime_error(cmd + " failed: " + out);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string default_d1_local_dir(const std::string& binary) {
  return (std::filesystem::path(binary).parent_path() / "../../tools/d1-local").string();
}

d1_local_process::d1_local_process(std::string tools_dir, std::string state) : tools_(std::move(tools_dir)), state_(std::move(state)) {
  start();
}

d1_local_process::~d1_local_process() { stop(); }

void d1_local_process::start() {
  url_ = shell_output(tools_ + "/start.sh --state " + state_ + (port_.empty() ? "" : " --port " + port_));
  port_ = url_.substr(url_.rfind(':') + 1);
}

void d1_local_process::stop() { std::system((tools_ + "/stop.sh --state " + state_ + " >/dev/null 2>&1").c_str()); }

std::string d1_local_process::fresh(int nn) {
  char id[64];
  std::snprintf(id, sizeof id, "00000000-0000-4000-8000-0000000000%02d", nn);
  shell_output(std::string("curl -sf --retry 2 --max-time 30 -X POST -H 'Authorization: Bearer ") + k_token + "' " + url_ +
               "/client/v4/accounts/" + k_account + "/d1/database/" + id + "/reset");
  return id;
}

backends::d1_options d1_local_process::options(const std::string& database, backends::d1_transport transport) const {
  backends::d1_options d;
  d.transport = transport;
  d.endpoint = transport == backends::d1_transport::bridge ? url_ + "/bridge/" + database : url_;
  d.account_id = k_account;
  d.database_id = database;
  d.api_token = k_token;
  return d;
}

std::string d1_local_process::config(const std::string& database, backends::d1_transport transport) const {
  if (transport == backends::d1_transport::bridge) {
    return "\"d1\": {\"transport\": \"bridge\", \"endpoint\": \"" + url_ + "/bridge/" + database +
           "\", \"token_env\": \"TANDEM_BENCH_D1_TOKEN\"}";
  }
  return "\"d1\": {\"endpoint\": \"" + url_ + "\", \"account_id\": \"" + k_account + "\", \"database_id\": \"" + database +
         "\", \"token_env\": \"TANDEM_BENCH_D1_TOKEN\"}";
}

std::int64_t d1_local_process::requests(const std::string& database) const {
  const std::string out = shell_output(std::string("curl -sf --max-time 10 -X POST -H 'Authorization: Bearer ") + k_token + "' " + url_ +
                                       "/client/v4/accounts/" + k_account + "/d1/database/" + database + "/fault -d '{\"status\":true}'");
  const auto at = out.find("\"requests\":");
  if (at == std::string::npos) throw std::runtime_error("the local D1 gave no request count: " + out);
  return std::stoll(out.substr(at + 11));
}

}  // namespace tandem::tools
