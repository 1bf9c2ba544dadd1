// The tandem executable: one binary, one subcommand per job.
#include <CLI/CLI.hpp>

#include <charconv>
#include <iostream>

#include "proxy/config.hpp"
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tandem: a SQL proxy that moves a live application from SQLite to Cloudflare D1"};
  app.require_subcommand(1);
  app.set_version_flag("--version", TANDEM_VERSION);

  // serve
  auto* serve = app.add_subcommand("serve", "run the proxy");
  std::string config_path, listen, sqlite_path, log_level, synchronous, mode;
  serve->add_option("-c,--config", config_path, "configuration file (JSON with comments)")->check(CLI::ExistingFile);
  serve->add_option("--listen", listen, "HOST:PORT to listen on (overrides listen.*)");
  serve->add_option("--sqlite", sqlite_path, "SQLite database file (overrides sqlite.path)");
  serve->add_option("--mode", mode, "mode at start-up (overrides mode)")
      ->check(CLI::IsMember({"sqlite-only", "dual-sqlite", "dual-d1", "d1-only"}));
  serve->add_option("--synchronous", synchronous, "SQLite synchronous (overrides sqlite.synchronous)")
      ->check(CLI::IsMember({"OFF", "NORMAL", "FULL", "EXTRA"}));
  double wait_for_owner = -1;
  serve->add_option("--wait-for-owner", wait_for_owner,
                    "seconds to wait at start for another tandem that owns the SQLite file or the D1 replication lease to "
                    "let go (overrides ownership.wait_for_owner_ms; 0: do not wait)")
      ->check(CLI::Range(0.0, 86400.0));
  serve->add_option("--log-level", log_level, "trace, debug, info, warn, error or off (overrides log.level)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));

  // shell
  auto* shell = app.add_subcommand("shell", "interactive SQL shell (reads a script from stdin when not a terminal)");
  tandem::tools::shell_options so;
  shell->add_option("--url", so.url, "tandem://host:port/?token=...&tls=1")->capture_default_str();
  shell->add_option("--token-env", so.token_env, "environment variable holding the token");
  shell->add_option("-c,--command", so.command, "run this SQL (or dot-command) and exit");
  shell->add_option("--mode", so.mode, "output mode")->check(CLI::IsMember({"table", "json", "line", "list"}))->capture_default_str();
  shell->add_flag("--bail", so.bail, "stop at the first error");

  // bench
  auto* bench = app.add_subcommand("bench", "measure tandem against in-process SQLite and a minimal TCP server");
  tandem::tools::bench_options bo;
  bench->add_option("--url", bo.url, "benchmark a running tandem instead of starting one");
  bench->add_option("--token-env", bo.token_env, "environment variable holding the token (with --url)");
  bench->add_option("--connections", bo.connections, "connection counts to measure")->delimiter(',')->capture_default_str();
  bench->add_option("--rows", bo.rows, "rows in the point-select table")->capture_default_str();
  bench->add_option("--seconds", bo.seconds, "duration of each measurement")->capture_default_str();
  bench->add_option("--synchronous", bo.synchronous, "SQLite synchronous for both sides")
      ->check(CLI::IsMember({"OFF", "NORMAL", "FULL", "EXTRA"}))->capture_default_str();
  bench->add_option("--dir", bo.dir, "directory for the database files (default: a temporary one)");
  bench->add_option("--store", bo.store, "sqlite; d1: tandem in d1-only mode against the local D1; dual: sqlite-only vs dual-sqlite inserts, replication catch-up and lag")
      ->check(CLI::IsMember({"sqlite", "d1", "dual"}))->capture_default_str();
  bench->add_option("--d1-local", bo.d1_local, "the tools/d1-local folder (default: found from the binary)");

  // ctl
  auto* ctl = app.add_subcommand("ctl", "send a command to a running tandem's control socket (tandem ctl help)");
  tandem::tools::ctl_options co;
  ctl->add_option("--socket", co.socket, "the control socket (control.socket in the config)")->capture_default_str();
  ctl->add_flag("--raw", co.raw, "print the answer line as it came (one JSON object)");
  bool ctl_force = false;
  ctl->add_flag("--force", ctl_force, "with fallback: make SQLite lead even when D1 leads and cannot be reached");
  ctl->add_option("command", co.words, "the command and its arguments, e.g. split 25")->expected(0, -1);
  ctl->footer("commands: help, status, metrics, mode <mode>, split <0-100>, shadow <0-100>, pause-replication,\n"
              "          resume-replication, switch-primary, verify <on|off>, next, prev, hold, release,\n"
              "          fallback [--force], reload");

  // migrate, validate, backup, restore (tools/commands.hpp), and bench migrate (tools/bench/commands.hpp)
  tandem::tools::move_commands move;
  move.add(app);
  tandem::tools::bench_commands bench_commands;
  bench_commands.add(*bench);

  CLI11_PARSE(app, argc, argv);

  try {
    if (serve->parsed()) {
      // The config file with the command line's overrides; read again on SIGHUP and reload.
      auto read = [=] {
        tandem::proxy::config c;
        if (!config_path.empty()) c = tandem::proxy::load_config(config_path);
        if (!listen.empty()) apply_listen(c, listen);
        if (!sqlite_path.empty()) c.sqlite.path = sqlite_path;
        if (!mode.empty()) c.mode = mode;
        if (!synchronous.empty()) c.sqlite.synchronous = synchronous;
        if (!log_level.empty()) c.log.level = log_level;
        if (wait_for_owner >= 0) c.ownership.wait_for_owner_ms = static_cast<int>(wait_for_owner * 1000);
        return c;
      };
      const auto c = read();
      tandem::proxy::setup_logging(c.log.level);
      if (config_path.empty()) return tandem::proxy::serve(c);
      return tandem::proxy::serve(c, read);
    }
    if (auto status = bench_commands.run()) return *status;
    if (shell->parsed()) return tandem::tools::run_shell(so);
    if (auto status = move.run([](const std::string& path, tandem::tools::d1_settings& d1) {
          const auto c = tandem::proxy::load_config(path).d1;
          if (d1.transport.empty()) d1.transport = c.transport;
          if (d1.endpoint.empty()) d1.endpoint = c.endpoint;
          if (d1.account_id.empty()) d1.account_id = c.account_id;
          if (d1.database_id.empty()) d1.database_id = c.database_id;
          if (d1.token_env.empty() || d1.token_env == "CLOUDFLARE_API_TOKEN") d1.token_env = c.token_env;
          if (d1.ca_file.empty()) d1.ca_file = c.ca_file;
          d1.verify_tls = c.verify_tls;
        }))
      return *status;
    if (bench->parsed()) return tandem::tools::run_bench(bo);
    if (ctl->parsed()) {
      if (ctl_force) co.words.emplace_back("--force");
      return tandem::tools::run_ctl(co);
    }
  } catch (const tandem::proxy::config_error& e) {
    std::cerr << "tandem: configuration error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "tandem: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
