// The tandem executable: one binary, one subcommand per job.
#include <CLI/CLI.hpp>

#include <charconv>
#include <iostream>

#include "backends/d1_store.hpp"
#include "proxy/config.hpp"
#include "proxy/control.hpp"
#include "proxy/serve.hpp"
#include "tools/bench/bench.hpp"
#include "tools/bench/commands.hpp"
#include "tools/commands.hpp"
#include "tools/ctl.hpp"
#include "tools/move/database.hpp"
#include "tools/shell.hpp"

namespace {

// "host:port" or ":port" or "[v6]:port".
void apply_listen(tandem::proxy::config& c, const std::string& hostport) {
  const auto colon = hostport.rfind(':');
  if (colon == std::string::npos) throw tandem::proxy::config_error("--listen must be HOST:PORT, not '" + hostport + "'");
  std::string host = hostport.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  const auto p = hostport.substr(colon + 1);
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
  if (ec != std::errc() || end != p.data() + p.size() || port > 65535)
    throw tandem::proxy::config_error("--listen has a bad port '" + p + "'");
  if (!host.empty()) c.listen.host = host;
  c.listen.port = static_cast<std::uint16_t>(port);
}

// `tandem serve`'s command line: the config file and what overrides it.
struct serve_command {
  CLI::App* app = nullptr;
  std::string config_path, listen, sqlite_path, log_level, synchronous, mode;
  double wait_for_owner = -1;

  void add(CLI::App& parent) {
    app = parent.add_subcommand("serve", "run the proxy");
    app->add_option("-c,--config", config_path, "configuration file (JSON with comments)")->check(CLI::ExistingFile);
    app->add_option("--listen", listen, "HOST:PORT to listen on (overrides listen.*)");
    app->add_option("--sqlite", sqlite_path, "SQLite database file (overrides sqlite.path)");
    app->add_option("--mode", mode, "mode at start-up (overrides mode)")
        ->check(CLI::IsMember({"sqlite-only", "dual-sqlite", "dual-d1", "d1-only"}));
    app->add_option("--synchronous", synchronous, "SQLite synchronous (overrides sqlite.synchronous)")
        ->check(CLI::IsMember({"OFF", "NORMAL", "FULL", "EXTRA"}));
    app->add_option("--wait-for-owner", wait_for_owner,
                    "seconds to wait at start for another tandem that owns the SQLite file or the D1 replication lease to "
                    "let go (overrides ownership.wait_for_owner_ms; 0: do not wait)")
        ->check(CLI::Range(0.0, 86400.0));
    app->add_option("--log-level", log_level, "trace, debug, info, warn, error or off (overrides log.level)")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  }

  // The config file with the command line's overrides; read again on SIGHUP and reload.
  tandem::proxy::config read() const {
    tandem::proxy::config c;
    if (!config_path.empty()) c = tandem::proxy::load_config(config_path);
    if (!listen.empty()) apply_listen(c, listen);
    if (!sqlite_path.empty()) c.sqlite.path = sqlite_path;
    if (!mode.empty()) c.mode = mode;
    if (!synchronous.empty()) c.sqlite.synchronous = synchronous;
    if (!log_level.empty()) c.log.level = log_level;
    if (wait_for_owner >= 0) c.ownership.wait_for_owner_ms = static_cast<int>(wait_for_owner * 1000);
    return c;
  }

  int run() const {
    const auto c = read();
    tandem::proxy::setup_logging(c.log.level);
    if (config_path.empty()) return tandem::proxy::serve(c);
    return tandem::proxy::serve(c, [self = *this] { return self.read(); });
  }
};

CLI::App* add_shell(CLI::App& app, tandem::tools::shell_options& so) {
  auto* shell = app.add_subcommand("shell", "interactive SQL shell (reads a script from stdin when not a terminal)");
  shell->add_option("--url", so.url, "tandem://host:port/?token=...&tls=1")->capture_default_str();
  shell->add_option("--token-env", so.token_env, "environment variable holding the token");
  shell->add_option("-c,--command", so.command, "run this SQL (or dot-command) and exit");
  shell->add_option("--mode", so.mode, "output mode")->check(CLI::IsMember({"table", "json", "line", "list"}))->capture_default_str();
  shell->add_flag("--bail", so.bail, "stop at the first error");
  return shell;
}

CLI::App* add_bench(CLI::App& app, tandem::tools::bench_options& bo) {
  auto* bench = app.add_subcommand("bench", "measure tandem against in-process SQLite and a minimal TCP server");
  bench->add_option("--url", bo.url, "benchmark a running tandem instead of starting one");
  bench->add_option("--token-env", bo.token_env, "environment variable holding the token (with --url)");
  bench->add_option("--connections", bo.connections, "connection counts to measure")->delimiter(',')->capture_default_str();
  bench->add_option("--workloads", bo.workloads, "workloads to measure (ping, select, insert): a subset, e.g. for a profile")
      ->delimiter(',')->check(CLI::IsMember({"ping", "select", "insert"}))->capture_default_str();
  bench->add_option("--rows", bo.rows, "rows in the point-select table")->capture_default_str();
  bench->add_option("--seconds", bo.seconds, "duration of each measurement")->capture_default_str();
  bench->add_option("--synchronous", bo.synchronous, "SQLite synchronous for both sides")
      ->check(CLI::IsMember({"OFF", "NORMAL", "FULL", "EXTRA"}))->capture_default_str();
  bench->add_option("--dir", bo.dir, "directory for the database files (default: a temporary one)");
  bench->add_option("--store", bo.store, "sqlite; d1: tandem in d1-only mode against the local D1; dual: sqlite-only vs dual-sqlite inserts, replication catch-up and lag")
      ->check(CLI::IsMember({"sqlite", "d1", "dual"}))->capture_default_str();
  bench->add_option("--d1-local", bo.d1_local, "the tools/d1-local folder (default: found from the binary)");
  return bench;
}

// `tandem ctl --help`'s list of commands, from the control socket's own table.
std::string ctl_commands_help() {
  std::string text = "commands:";
  for (const auto& c : tandem::proxy::control_commands()) {
    std::string usage = std::string(c.name) + (c.arguments.empty() ? "" : " " + std::string(c.arguments));
    if (usage.size() < 28) usage.resize(28, ' ');
    text += "\n  " + usage + " " + std::string(c.help);
  }
  return text;
}

// `tandem ctl`: --force is a flag of its own (CLI11 would take it for one anyway), put back as
// the command's word.
struct ctl_command {
  CLI::App* app = nullptr;
  tandem::tools::ctl_options options;
  bool force = false;

  void add(CLI::App& parent) {
    app = parent.add_subcommand("ctl", "send a command to a running tandem's control socket (tandem ctl help)");
    app->add_option("--socket", options.socket, "the control socket (control.socket in the config)")->capture_default_str();
    app->add_flag("--raw", options.raw, "print the answer line as it came (one JSON object)");
    app->add_flag("--force", force, "with fallback: make SQLite lead even when D1 leads and cannot be reached");
    app->add_option("command", options.words, "the command and its arguments, e.g. split 25")->expected(0, -1);
    app->footer(ctl_commands_help());
  }

  int run() {
    if (force) options.words.emplace_back("--force");
    return tandem::tools::run_ctl(options);
  }
};

// The move tools' --config: what their command line left blank comes from the config's d1
// section, mapped as tandem serve maps it (d1_options_of), its timeouts and attempts included.
void d1_from_config(const std::string& path, tandem::tools::d1_settings& d1) {
  const auto c = tandem::proxy::load_config(path).d1;
  const auto o = tandem::proxy::d1_options_of(c);
  if (d1.transport.empty()) d1.transport = c.transport;
  if (d1.endpoint.empty()) d1.endpoint = o.endpoint;
  if (d1.account_id.empty()) d1.account_id = o.account_id;
  if (d1.database_id.empty()) d1.database_id = o.database_id;
  if (d1.token_env.empty() || d1.token_env == "CLOUDFLARE_API_TOKEN") d1.token_env = c.token_env;
  if (d1.ca_file.empty()) d1.ca_file = o.ca_file;
  d1.verify_tls = o.verify_tls;
  d1.tuning = o;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tandem: a SQL proxy that moves a live application from SQLite to Cloudflare D1"};
  app.require_subcommand(1);
  app.set_version_flag("--version", TANDEM_VERSION);
  serve_command serve;
  serve.add(app);
  tandem::tools::shell_options so;
  auto* shell = add_shell(app, so);
  tandem::tools::bench_options bo;
  auto* bench = add_bench(app, bo);
  ctl_command ctl;
  ctl.add(app);
  // migrate, validate, backup, restore (tools/commands.hpp), and bench migrate (tools/bench/commands.hpp)
  tandem::tools::move_commands move;
  move.add(app);
  tandem::tools::bench_commands bench_commands;
  bench_commands.add(*bench);

  CLI11_PARSE(app, argc, argv);

  try {
    if (serve.app->parsed()) return serve.run();
    if (auto status = bench_commands.run()) return *status;
    if (shell->parsed()) return tandem::tools::run_shell(so);
    if (auto status = move.run(d1_from_config)) return *status;
    if (bench->parsed()) return tandem::tools::run_bench(bo);
    if (ctl.app->parsed()) return ctl.run();
  } catch (const tandem::proxy::config_error& e) {
    std::cerr << "tandem: configuration error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "tandem: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
