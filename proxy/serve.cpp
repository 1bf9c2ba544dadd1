#include "proxy/serve.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json/serialize.hpp>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

#include "backends/d1_store.hpp"
#include "backends/sqlite_store.hpp"
#include "proxy/admin.hpp"
#include "proxy/control.hpp"
#include "proxy/d1_lease.hpp"
#include "proxy/rollout.hpp"
#include "proxy/router.hpp"
#include "proxy/server.hpp"
#include "proxy/store_lock.hpp"

namespace tandem::proxy {
namespace asio = boost::asio;

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("tandem");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
}

std::vector<std::string> resolve_tokens(const std::vector<std::string>& names) {
  std::vector<std::string> tokens;
  for (const auto& name : names) {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr || *v == '\0') {
      throw config_error("auth.token_envs names " + name + ", but that environment variable is unset or empty");
    }
    tokens.emplace_back(v);
  }
  return tokens;
}

std::string read_token_file(const std::string& path, const std::string& key) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw config_error(key + " names " + path + ", which cannot be read: " + std::strerror(errno));
  std::string text;
  char buf[4096];
  for (;;) {
    const auto n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw config_error(key + " names " + path + ", which cannot be read: " + std::strerror(err));
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > 65536) {
      ::close(fd);
      throw config_error(key + " names " + path + ", which is over 64 KiB: not a token");
    }
  }
  struct stat st {};
  const bool others_may_read = ::fstat(fd, &st) == 0 && (st.st_mode & 0077) != 0;
  ::close(fd);
  const auto first = text.find_first_not_of(" \t\r\n");
  const auto last = text.find_last_not_of(" \t\r\n");
  if (first == std::string::npos) throw config_error(key + " names " + path + ", which is empty");
  text = text.substr(first, last - first + 1);
  if (text.find_first_of("\r\n") != std::string::npos) throw config_error(key + " names " + path + ", which holds more than one line (one token per file)");
  if (others_may_read) spdlog::warn("{}: {} may be read by others than its owner (chmod 600 it)", key, path);
  return text;
}

std::vector<std::string> client_tokens(const config& c) {
  auto tokens = resolve_tokens(c.token_envs);
  for (std::size_t i = 0; i < c.token_files.size(); ++i) {
    tokens.push_back(read_token_file(c.token_files[i], "auth.token_files[" + std::to_string(i) + "]"));
  }
  return tokens;
}

std::string admin_token(const config& c) {
  if (!c.admin.token_file.empty()) return read_token_file(c.admin.token_file, "admin.token_file");
  if (c.admin.token_env.empty()) return {};
  const char* v = std::getenv(c.admin.token_env.c_str());
  if (v == nullptr || *v == '\0') {
    throw config_error("admin.token_env names " + c.admin.token_env + ", but that environment variable is unset or empty");
  }
  return v;
}

backends::outcome<std::unique_ptr<backends::d1_store>> open_d1(const config& c) {
  auto o = d1_options_of(c.d1);
  const char* token = std::getenv(c.d1.token_env.c_str());
  if (token == nullptr || *token == '\0') {
    throw config_error("d1.token_env names " + c.d1.token_env + ", but that environment variable is unset or empty");
  }
  o.api_token = token;
  return backends::d1_store::open(o);
}

backends::outcome<std::unique_ptr<backends::sqlite_store>> open_sqlite(const config& c) {
  const auto so = sqlite_options_of(c);
  if (auto parent = std::filesystem::path(c.sqlite.path).parent_path(); !parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
  }
  return backends::sqlite_store::open(so);
}

router_options router_options_from(const config& c) {
  router_options o;
  o.initial = *mode_from_string(c.mode);
  o.read_percent = c.dual.read_percent;
  o.shadow_read_percent = c.dual.shadow_read_percent;
  o.ack_both = c.dual.ack == "both";
  o.ack_timeout = std::chrono::milliseconds(c.dual.ack_timeout_ms);
  o.continue_on_follower_failure = c.dual.continue_on_follower_failure;
  o.read_your_writes_wait = std::chrono::milliseconds(c.dual.read_your_writes_wait_ms);
  o.key_memory = std::chrono::milliseconds(c.dual.key_memory_ms);
  o.key_memory_keys = static_cast<std::size_t>(c.dual.key_memory_keys);
  auto& r = o.replication;
  r.batch_entries = static_cast<std::size_t>(c.dual.batch_entries);
  r.batch_statements = static_cast<std::size_t>(c.d1.max_batch_statements) - 2;  // the applied marker and the fence
  r.batch_bytes = static_cast<std::size_t>(c.dual.batch_bytes);
  r.retry_min = std::chrono::milliseconds(c.dual.retry_min_ms);
  r.retry_max = std::chrono::milliseconds(c.dual.retry_max_ms);
  r.request_timeout = std::chrono::milliseconds(c.d1.request_timeout_ms);
  r.journal_retention = std::chrono::milliseconds(c.dual.journal_retention_ms);
  r.verify_writes = c.dual.verify_writes;
  r.pause_on_verification_failure = c.dual.pause_on_verification_failure;
  return o;
}

rollout_options rollout_options_from(const rollout_config& c) {
  rollout_options o;
  o.stages.clear();
  for (const auto& s : c.stages) o.stages.push_back({s.percent, s.hold});
  o.auto_advance = c.auto_advance;
  o.tick = std::chrono::milliseconds(c.tick_ms);
  auto& g = o.guards;
  g.window = c.window;
  g.max_d1_error_rate = c.max_d1_error_rate;
  g.min_reads = static_cast<std::uint64_t>(c.min_reads);
  g.max_d1_read_p99_ms = c.max_d1_read_p99_ms;
  g.max_lag_entries = c.max_lag_entries;
  g.max_lag_ms = c.max_lag_ms;
  g.max_verification_failures = static_cast<std::uint64_t>(c.max_verification_failures);
  g.max_shadow_mismatches = static_cast<std::uint64_t>(c.max_shadow_mismatches);
  return o;
}

backends::outcome<std::unique_ptr<router>> open_router(const config& c, d1_lease* lease,
                                                      std::function<void(const std::string&, boost::json::object)> replication_events) {
  std::unique_ptr<backends::sqlite_store> sqlite;
  std::unique_ptr<backends::d1_store> d1;
  if (c.mode != "d1-only") {
    auto s = open_sqlite(c);
    if (!s) return s.error();
    sqlite = std::move(*s);
  }
  // In sqlite-only mode D1 is opened when configured, so that dual-sqlite can start at runtime.
  if (c.mode != "sqlite-only" || c.d1.configured()) {
    auto d = open_d1(c);
    if (!d) return d.error();
    d1 = std::move(*d);
  }
  auto options = router_options_from(c);
  options.lease = lease;
  options.replication.on_event = std::move(replication_events);
  return std::make_unique<router>(std::move(sqlite), std::move(d1), std::move(options));
}

boost::json::object reload_into(config& current, const config& next,
                                const std::function<void(const rollout_config&)>& apply_rollout,
                                const std::function<std::vector<std::string>(const config&)>& apply_secrets) {
  validate(next);
  boost::json::array applied, restart, ignored;
  // First: reading the tokens is what can still refuse the reload.
  const auto secrets = apply_secrets ? apply_secrets(next) : std::vector<std::string>{};
  if (apply_secrets) {
    current.token_envs = next.token_envs;
    current.token_files = next.token_files;
    current.admin.token_env = next.admin.token_env;
    current.admin.token_file = next.admin.token_file;
  }
  if (next.log != current.log) {
    spdlog::set_level(spdlog::level::from_str(next.log.level));
    current.log = next.log;
    applied.emplace_back("log");
  }
  if (next.rollout != current.rollout) {
    if (apply_rollout && !next.rollout.stages.empty()) {
      apply_rollout(next.rollout);
      current.rollout = next.rollout;
      applied.emplace_back("rollout");
    } else {
      restart.emplace_back("rollout");  // a rollout starting or ending
    }
  }
  // The initial values of the runtime state: the saved state rules once tandem runs.
  auto initial_only = [](dual_config d) {
    d.read_percent = 0;
    d.shadow_read_percent = 0;
    d.verify_writes = true;
    return d;
  };
  if (next.mode != current.mode || next.dual.read_percent != current.dual.read_percent ||
      next.dual.shadow_read_percent != current.dual.shadow_read_percent || next.dual.verify_writes != current.dual.verify_writes) {
    ignored.emplace_back("mode and dual.read_percent, shadow_read_percent, verify_writes are initial values; use tandem ctl");
  }
  auto differs = [&](bool d, const char* name) {
    if (d) restart.emplace_back(name);
  };
  differs(next.listen != current.listen, "listen");
  differs(next.sqlite != current.sqlite, "sqlite");
  differs(next.d1 != current.d1, "d1");
  differs(next.token_envs != current.token_envs || next.token_files != current.token_files, "auth");
  differs(next.tls != current.tls, "tls");
  differs(next.limits != current.limits, "limits");
  differs(initial_only(next.dual) != initial_only(current.dual), "dual");
  differs(next.admin != current.admin, "admin");
  for (const auto& name : secrets) applied.emplace_back(name);
  differs(next.control != current.control, "control");
  differs(next.ownership != current.ownership, "ownership");
  differs(next.io_threads != current.io_threads || next.spin_us != current.spin_us, "io_threads/spin_us");
  return {{"applied", std::move(applied)}, {"needsRestart", std::move(restart)}, {"ignored", std::move(ignored)}};
}

int serve(const config& c) { return serve(c, nullptr); }

namespace {

// The runtime state the control plane saved, if any, which wins over the config's initial
// values: `effective` is the config with it applied.
std::optional<runtime_state> resume_saved_state(const config& c, config& effective) {
  effective = c;
  std::optional<runtime_state> saved;
  if (c.control.enabled && !c.control.state_file.empty()) saved = load_runtime_state(c.control.state_file);
  if (!saved) return saved;
  effective.mode = std::string(to_string(saved->current));
  effective.dual.read_percent = saved->read_percent;
  effective.dual.shadow_read_percent = saved->shadow_read_percent;
  effective.dual.verify_writes = saved->verify_writes;
  spdlog::info("resuming the runtime state saved in {}: mode {}, read split {}%{}", c.control.state_file, effective.mode,
               saved->read_percent, saved->replication_paused ? ", replication paused" : "");
  validate(effective);
  return saved;
}

// What this process owns before anything listens (one owner per store).
struct ownership {
  std::unique_ptr<store_lock> file_lock;
  std::unique_ptr<d1_lease> lease;
};

// The SQLite file's lock, then D1's replication lease (when SQLite and D1 are both open, a dual
// mode can start at runtime; in d1-only, several instances may share D1), both waited for
// within the same bound. Throws owner_conflict when another tandem keeps one, std::runtime_error
// when D1 cannot be opened (config_error for the configuration).
ownership take_ownership(const config& c, const config& effective, const owner_identity& self) {
  ownership owned;
  const auto wait = std::chrono::milliseconds(c.ownership.wait_for_owner_ms);
  const auto wait_until = backends::clock::now() + wait;
  const bool uses_sqlite = effective.mode != "d1-only";
  const bool uses_d1 = effective.mode != "sqlite-only" || c.d1.configured();
  if (uses_sqlite && c.sqlite.path != ":memory:") {
    owned.file_lock = store_lock::acquire(c.sqlite.path, self, wait_until, [&](const owner_identity& owner) {
      spdlog::warn("another tandem owns the SQLite database {}: {}; waiting up to {} ms for it to exit (ownership.wait_for_owner_ms, "
                   "--wait-for-owner)",
                   c.sqlite.path, owner.describe(), wait.count());
    });
  }
  if (!uses_sqlite || !uses_d1) return owned;
  auto d = open_d1(effective);
  if (!d) throw std::runtime_error(d.error().message);
  d1_lease_options lo;
  lo.duration = std::chrono::milliseconds(c.ownership.lease_ms);
  lo.database = "D1 database " + c.d1.database_id + " at " + c.d1.endpoint;
  owned.lease = std::make_unique<d1_lease>(std::move(*d), self, lo);
  if (effective.mode == "dual-sqlite" || effective.mode == "dual-d1") {
    auto taken = owned.lease->acquire(wait_until, [&](const owner_identity& holder, std::chrono::milliseconds expires_in) {
      spdlog::warn("another tandem holds the replication lease of {}: {}, for {} ms more; waiting up to {} ms for it to let go "
                   "or expire (ownership.wait_for_owner_ms, --wait-for-owner)",
                   lo.database, holder.describe(), expires_in.count(),
                   std::chrono::duration_cast<std::chrono::milliseconds>(wait_until - backends::clock::now()).count());
    });
    if (!taken) throw owner_conflict(taken.error().message);
  }
  return owned;
}

// The admin endpoint, listening (null when admin.enabled is off). Throws what start() throws.
std::unique_ptr<admin_server> start_admin(const config& c, asio::io_context& ioc, router& route, const std::string& token) {
  if (!c.admin.enabled) return nullptr;
  admin_options ao;
  ao.host = c.admin.host;
  ao.port = c.admin.port;
  ao.token = token;
  auto admin = std::make_unique<admin_server>(ioc, ao, route);
  const auto aep = admin->start();
  std::cout << "tandem admin on " << aep.address().to_string() << ":" << aep.port() << std::endl;
  return admin;
}

std::unique_ptr<control_server> make_control(const config& c, asio::io_context& ioc, router& route) {
  if (!c.control.enabled) return nullptr;
  control_options co;
  co.socket_path = c.control.socket;
  co.state_path = c.control.state_file;
  co.max_pause = std::chrono::milliseconds(c.control.max_pause_ms);
  return std::make_unique<control_server>(ioc, co, route);
}

// "var/tandem.db", "D1 database ID at URL", or both: what `mode` serves.
std::string what_is_served(const config& c, const std::string& mode) {
  const std::string d1 = "D1 database " + c.d1.database_id + " at " + c.d1.endpoint;
  if (mode == "sqlite-only") return c.sqlite.path;
  if (mode == "d1-only") return d1;
  return c.sqlite.path + " and " + d1;
}

// What is running, for the reload and the signals: the servers, the rollout, and the secrets
// and config in force (the config as started, plus what reloads applied).
struct running_process {
  running_process(const config& c, std::vector<std::string> t, std::string admin_token, server& s)
      : running(c), tokens(std::move(t)), running_admin_token(std::move(admin_token)), srv(s) {}

  config running;
  std::vector<std::string> tokens;
  std::string running_admin_token;
  server& srv;
  admin_server* admin = nullptr;
  control_server* control = nullptr;
  rollout* stages = nullptr;
  std::mutex reload_mu;

  // Rotation: the tokens the new config names (its variables, its files read again) are in force
  // for every hello and admin request from now on; sessions already authenticated keep working
  // until they close. Returns the names of what changed.
  std::vector<std::string> apply_secrets(const config& next) {
    auto next_tokens = client_tokens(next);
    const std::string next_admin = admin ? admin_token(next) : std::string();
    std::vector<std::string> changed;
    if (next_tokens != tokens) {
      srv.set_tokens(next_tokens);
      spdlog::info("reload: {} client token(s) in force; authenticated connections keep theirs", next_tokens.size());
      tokens = std::move(next_tokens);
      changed.emplace_back("auth");
    }
    if (admin && next_admin != running_admin_token) {
      admin->set_token(next_admin);
      spdlog::info("reload: the admin token changed");
      running_admin_token = next_admin;
      changed.emplace_back("admin.token");
    }
    return changed;
  }

  // SIGHUP and `tandem ctl reload`, one at a time: `reread` reads the config file again.
  boost::json::object reload(const std::function<config()>& reread) {
    std::lock_guard lock(reload_mu);
    std::function<void(const rollout_config&)> apply_rollout;
    if (stages) apply_rollout = [this](const rollout_config& rc) { stages->reconfigure(rollout_options_from(rc)); };
    return reload_into(running, reread(), apply_rollout, [this](const config& next) { return apply_secrets(next); });
  }
};

// SIGHUP reloads; the first SIGINT or SIGTERM stops gracefully, the second exits at once.
class signal_handler {
 public:
  signal_handler(asio::io_context& ioc, running_process& p, std::function<boost::json::object()> reload)
      : ioc_(ioc), signals_(ioc, SIGINT, SIGTERM, SIGHUP), p_(p), reload_(std::move(reload)) {}
  void arm() {
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) { on_signal(ec, sig); });
  }

 private:
  void on_signal(const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      if (!stopping_) arm();
      reload_on_hup();
      return;
    }
    if (stopping_) {
      // Nothing unacknowledged is lost: every acknowledged write is already committed.
      spdlog::warn("signal {} again: exiting without waiting for in-flight requests", sig);
      std::_Exit(1);
    }
    stopping_ = true;
    spdlog::info("signal {}: stopping (finishing in-flight requests; send it again to exit at once)", sig);
    // Re-arm (a second signal exits at once) before stop(): the cancel that stop() posts once the
    // last session ended must find the wait armed, or the control context never runs out of work.
    arm();
    if (p_.admin) p_.admin->stop();
    if (p_.control) p_.control->stop();
    p_.srv.stop([this] { asio::post(ioc_, [this] { signals_.cancel(); }); });
  }

  void reload_on_hup() {
    if (!reload_) {
      spdlog::warn("SIGHUP: nothing to reload (tandem was started without --config)");
      return;
    }
    try {
      auto r = reload_();
      spdlog::info("SIGHUP: config reloaded: {}", boost::json::serialize(r));
      if (p_.control) p_.control->record("reload (SIGHUP)", std::move(r));
    } catch (const std::exception& e) {
      spdlog::error("SIGHUP: the config was not reloaded, the running one is kept: {}", e.what());
      if (p_.control) p_.control->record("reload refused (SIGHUP)", boost::json::object{{"error", e.what()}});
    }
  }

  asio::io_context& ioc_;
  asio::signal_set signals_;
  running_process& p_;
  std::function<boost::json::object()> reload_;
  bool stopping_ = false;
};

}  // namespace

// Each step has its own function above; what stays here is their order (owners before the
// router, listeners before the control socket saves anything, the signals before the I/O
// threads), which reads best in one place.
int serve(const config& c, std::function<config()> reread) {
  validate(c);
  auto tokens = client_tokens(c);
  config effective;
  const std::optional<runtime_state> saved = resume_saved_state(c, effective);
  auto self = owner_identity::self();
  ownership owned;
  try {
    owned = take_ownership(c, effective, self);
  } catch (const owner_conflict& e) {
    spdlog::critical("{}", e.what());
    return 3;
  } catch (const std::runtime_error& e) {
    if (dynamic_cast<const config_error*>(&e)) throw;
    spdlog::critical("{}", e.what());
    return 1;
  }
  // The replicator's own events (a pause after a verification failure) go to the operator log
  // and the state file once the control server runs; its thread starts with the router.
  std::atomic<control_server*> events_to{nullptr};
  auto opened = open_router(effective, owned.lease.get(), [&events_to](const std::string& what, boost::json::object details) {
    if (auto* c = events_to.load()) c->record(what, std::move(details));
  });
  if (!opened) {
    spdlog::critical("{}", opened.error().message);
    return 1;
  }
  router& route = **opened;
  if (saved && saved->replication_paused) route.pause_replication();

  io_pool pool(c.io_threads, std::chrono::microseconds(c.spin_us));
  asio::io_context& ioc = pool.control();
  server srv(pool, server_options{c.listen, c.tls, c.limits, tokens}, route);
  asio::ip::tcp::endpoint ep;
  try {
    ep = srv.start();
  } catch (const std::exception& e) {
    spdlog::critical("cannot listen on {}:{}: {}", c.listen.host, c.listen.port, e.what());
    return 1;
  }
  running_process p(c, tokens, c.admin.enabled ? admin_token(c) : std::string(), srv);
  std::unique_ptr<admin_server> admin;
  try {
    admin = start_admin(c, ioc, route, p.running_admin_token);
  } catch (const std::exception& e) {
    spdlog::critical("cannot listen for admin HTTP on {}:{}: {}", c.admin.host, c.admin.port, e.what());
    return 1;
  }
  std::unique_ptr<control_server> control = make_control(c, ioc, route);
  // The rollout resumes where the saved state left it, else before its first stage (the read
  // split from the config, or saved by `split`, stays until the operator's first `next`).
  std::unique_ptr<rollout> stages;
  if (!c.rollout.stages.empty()) {
    stages = std::make_unique<rollout>(route, rollout_options_from(c.rollout), saved ? saved->stage : -1, saved && saved->held,
                                       [&control](const std::string& what, boost::json::object details) {
                                         if (control) control->record(what, std::move(details));
                                       });
    stages->start();
    if (control) control->set_rollout(stages.get());
  }
  p.admin = admin.get();
  p.control = control.get();
  p.stages = stages.get();
  std::function<boost::json::object()> reload;
  if (reread) reload = [&p, reread] { return p.reload(reread); };
  if (admin && control) admin->set_status([&control] { return control->status(); });
  if (control) {
    control->set_reload(reload);
    try {
      control->start();
    } catch (const std::exception& e) {
      spdlog::critical("{}", e.what());
      return 1;
    }
    events_to.store(control.get());
  }
  signal_handler signals(ioc, p, reload);
  signals.arm();
  spdlog::info("tandem {} serving {} in {} mode on {}:{}{}{}", TANDEM_VERSION, what_is_served(c, effective.mode), effective.mode,
               ep.address().to_string(), ep.port(), c.tls.enabled ? " with TLS" : "", p.tokens.empty() ? " without authentication" : "");
  self.listen = ep.address().to_string() + ":" + std::to_string(ep.port());
  if (owned.file_lock) owned.file_lock->describe(self);
  if (owned.lease) owned.lease->describe(self);
  std::cout << "tandem listening on " << ep.address().to_string() << ":" << ep.port() << std::endl;

  // Until the signal handler's graceful stop has ended the last session and let go of signals.
  pool.run();
  if (stages) stages->stop();
  route.shutdown();
  events_to.store(nullptr);
  spdlog::info("stopped");
  return 0;
}

}  // namespace tandem::proxy
