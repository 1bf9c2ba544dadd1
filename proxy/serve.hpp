// `tandem serve`: runs the proxy until SIGINT or SIGTERM; SIGHUP re-reads the config.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <boost/json/object.hpp>

#include <boost/asio/io_context.hpp>

#include "backends/store.hpp"
#include "proxy/config.hpp"
#include "proxy/router.hpp"

namespace tandem::proxy {

// Takes ownership of the stores (proxy/store_lock.hpp, proxy/d1_lease.hpp; waiting up to
// ownership.wait_for_owner_ms for another owner to let go, else returning 3 with the owner
// named), opens them, listens, and serves until SIGINT/SIGTERM, then stops gracefully: no new
// connections, in-flight requests answered, the lease released, stores closed. Prints one line
// "tandem listening on HOST:PORT" to stdout once ready (scripts and `tandem bench` wait for it).
// Returns the process exit status. Throws config_error for configuration problems.
int serve(const config& c);
// The same, and SIGHUP or `tandem ctl reload` call `reread` (the config file read again with the
// command line's overrides applied) and apply what can change while running (see reload_into).
int serve(const config& c, std::function<config()> reread);

// Applies to the running `current` what `next` changes and can change while running: the log
// level, the rollout (through `apply_rollout`, null when no rollout runs) and the secrets
// (through `apply_secrets`, called first: it reads the tokens `next` names, throws config_error
// to refuse the whole reload before anything applied, else puts them in force and returns the
// names of what changed, e.g. "auth"; null: auth and the admin token need a restart). Returns
// {"applied": [...], "needsRestart": [...], "ignored": [...]} naming config sections. Throws
// config_error, changing nothing, when `next` is invalid.
boost::json::object reload_into(config& current, const config& next,
                                const std::function<void(const rollout_config&)>& apply_rollout,
                                const std::function<std::vector<std::string>(const config&)>& apply_secrets = {});

class d1_lease;

// Opens the stores the mode calls for (and D1 in sqlite-only mode when it is configured, so
// that dual-sqlite can start at runtime), and the router over them, keeping `lease` (may be null;
// see router_options::lease); `replication_events` gets what the replicator does by itself
// (replicator_options::on_event). Throws config_error for a missing token variable.
backends::outcome<std::unique_ptr<router>> open_router(
    const config& c, d1_lease* lease = nullptr,
    std::function<void(const std::string&, boost::json::object)> replication_events = {});

// Sets up spdlog (stderr) at the given level ("info", "debug", ...).
void setup_logging(const std::string& level);

// Reads the client tokens from the environment variables the config names. Throws config_error
// when one is unset or empty (authentication must never be silently off).
std::vector<std::string> resolve_tokens(const std::vector<std::string>& names);
// The token a file holds (its content, surrounding whitespace and the final newline dropped).
// Throws config_error naming `key` (the config key that names the file) when it cannot be read,
// is empty or holds more than one line. Warns when others than its owner may read it.
std::string read_token_file(const std::string& path, const std::string& key);
// The accepted client tokens: auth.token_envs' values, then auth.token_files' contents.
std::vector<std::string> client_tokens(const config& c);
// The admin bearer token (admin.token_env or admin.token_file); "" when none is configured.
std::string admin_token(const config& c);

}  // namespace tandem::proxy
