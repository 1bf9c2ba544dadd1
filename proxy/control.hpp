// The control socket: a unix socket taking one command per line and answering one JSON object
// per line (usable with `socat - UNIX-CONNECT:PATH`, `nc -U PATH` or `tandem ctl`).
//
// Each command answers at once with the state before and after it. A refused command (unknown,
// bad argument, unsafe now) says why and changes nothing. Every change is logged as an event
// with the peer's uid and the time, kept for `status`, and the runtime state (mode, read split,
// shadow percent, verification, replication paused, rollout stage) is written to the state file,
// so that a restart (even after kill -9) resumes it instead of the config's initial values.
//
// The state is saved or the change is refused: a restart never comes back in an older state
// than the last answer showed.
//   - A command that can be undone (split, shadow, verify, pause/resume-replication, next, prev,
//     hold, release, backfill-begin/-end) acts, saves, and when the file cannot be written is
//     undone and answered ok: false with the path and the OS error.
//   - A mode change (mode, switch-primary, the leader change of fallback) cannot be undone once
//     it took effect, so it is written ahead: the router calls back at its point of no return
//     (writes held, every fallible step done), the new state is saved there, and only then does
//     the new mode take effect; when that save fails the change is abandoned, nothing changed.
//   - `fallback` moves reads back to SQLite even when that cannot be saved (it is the emergency
//     exit, and the safe direction): it then answers ok: false naming what a restart would do.
//   - A reload's effect on the rollout comes from the config file, which a restart reads again.
// After a failed save the file is behind: the gauge stateUnsaved is 1 (alert
// TandemStateNotSaved) and every later command, and every event, tries to save again.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include <boost/json/object.hpp>

#include "proxy/listener.hpp"
#include "proxy/rollout.hpp"
#include "proxy/router.hpp"

namespace tandem::proxy {

struct control_options {
  std::string socket_path = "var/tandem.sock";
  std::string state_path = "var/tandem.state.json";  // empty: state is not persisted
  std::chrono::milliseconds max_pause{30000};          // switch-primary and mode changes
};

// What the control plane changes at runtime, persisted across restarts.
struct runtime_state {
  mode current = mode::sqlite_only;
  int read_percent = 0;
  int shadow_read_percent = 0;
  bool verify_writes = true;
  bool replication_paused = false;
  int stage = -1;     // rollout stage (-1: before the first)
  bool held = false;  // rollout auto-advance held

  bool operator==(const runtime_state&) const = default;
};

// The state file's content, if there is a readable one. A corrupt file is an error (start-up
// refuses rather than silently falling back to the config). Throws config_error.
std::optional<runtime_state> load_runtime_state(const std::string& path);
// Writes the file atomically and durably (temporary file, fsync, rename, fsync of the folder).
// Returns "" once saved, else why not: the step, the path and the OS error.
std::string save_runtime_state(const std::string& path, const runtime_state& s);
// The router's (and the rollout's, if any) current runtime state.
runtime_state current_state(router& r, const rollout* ro = nullptr);
boost::json::object to_json(const runtime_state& s);

// The router's metrics with its settings (mode, read split, shadow percent) copied into their
// gauges (metrics.hpp): what every publisher (/metrics, /health/database, status) publishes.
dual_metrics& metrics_now(router& r);

// What `status` and GET /status answer (the control server adds its recent events, "events"):
// the time ("at", "atMs"), the runtime state ("state"), then, when there are any, "replication",
// "lease" and "rollout", and "metrics".
boost::json::object status_of(router& r, const rollout* ro = nullptr);

// The control commands, in one table: the control socket parses a line against it and answers
// `help` with it, and `tandem ctl --help` lists it.
struct control_command {
  std::string_view name;
  // As help shows them: "<0-100>" is one word, any value (the command checks it); "[--force]"
  // is that word or nothing.
  std::string_view arguments;
  std::string_view help;
};
std::span<const control_command> control_commands();
// "help | status | ... | skip <seq>": every command with its arguments, on one line.
std::string control_commands_line();

// A command line cut into words and checked against the table.
struct parsed_command {
  std::string name;  // a command of the table; empty when refused
  std::vector<std::string> args;
  std::string error;  // why the line is refused ("" when it parsed): a stable message
};
parsed_command parse_command(const std::string& line);

class control_server {
 public:
  control_server(boost::asio::io_context& ioc, control_options options, router& r);
  control_server(const control_server&) = delete;
  control_server& operator=(const control_server&) = delete;
  // Stops, and waits for the command the worker thread runs (a switch-primary may take
  // control_options::max_pause).
  ~control_server();

  // Adds the rollout commands (next, prev, hold, release). Call before start().
  void set_rollout(rollout* r);
  // What `reload` runs: re-reads the config and applies it, answering what it applied; throws
  // config_error to refuse (the running config is kept). Without one, `reload` is refused.
  // Call before start().
  void set_reload(std::function<boost::json::object()> reload);

  // Creates the socket (mode 0600). Refuses (throws std::runtime_error) when the path is a
  // symlink, or is something other than a socket, or belongs to another user; a stale socket
  // of ours is replaced.
  void start();
  // Stops accepting, closes connections, removes the socket (unix_listener::stop). Thread-safe.
  // Idempotent.
  void stop();
  // Records an event tandem did by itself (a guard fallback, an advance, a replication pause)
  // and saves the state. Thread-safe; must not be called with a router or rollout lock held.
  void record(const std::string& what, boost::json::object details);

  // What `status` answers: state, replication, rollout, metrics, recent events.
  boost::json::object status() const;

  // Runs one command line as if it came from `peer_uid` (the socket's sessions use this too).
  // Blocks for switch-primary and mode changes: never call it on an I/O thread.
  std::string execute(const std::string& line, std::uint32_t peer_uid);

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
  std::shared_ptr<unix_listener> listener_;
};

}  // namespace tandem::proxy
