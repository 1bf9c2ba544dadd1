#include "proxy/control.hpp"

#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "backends/journal.hpp"
#include "protocol/json_reader.hpp"
#include "proxy/await.hpp"
#include "proxy/config.hpp"
#include "proxy/d1_lease.hpp"

namespace tandem::proxy {
namespace asio = boost::asio;
namespace json = boost::json;
using local = asio::local::stream_protocol;

namespace {

constexpr auto k_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t k_max_line = 4096;
constexpr std::size_t k_max_events = 100;

constexpr control_command k_commands[] = {
    {"help", "", "list the commands"},
    {"status", "", "the runtime state, replication, the lease, the rollout, metrics and recent events"},
    {"metrics", "", "the dual-write metrics"},
    {"mode", "<sqlite-only|dual-sqlite|dual-d1|d1-only>", "change the mode (saved before it takes effect)"},
    {"split", "<0-100>", "routing keys (percent) whose reads go to D1"},
    {"shadow", "<0-100>", "reads (percent) also run on the other store and compared"},
    {"pause-replication", "", "stop applying the journal to the follower (dual modes)"},
    {"resume-replication", "", "apply it again"},
    {"switch-primary", "", "swap leader and follower (dual-sqlite <-> dual-d1), the follower drained first"},
    {"verify", "<on|off>", "compare each replicated write on the follower: its changed-row counts, and the rows of a write replicated as rows"},
    {"next", "", "rollout: the next stage"},
    {"prev", "", "rollout: the stage before"},
    {"hold", "", "rollout: stop advancing by itself"},
    {"release", "", "rollout: advance by itself again"},
    {"fallback", "[--force]", "reads back to SQLite, SQLite leading (--force: even when D1 leads and cannot be reached)"},
    {"reload", "", "read the config file again and apply what can change while running"},
    {"backfill-begin", "", "live backfill (tandem migrate --via-control): pause replication for the copy"},
    {"backfill-end", "<seq>", "live backfill: the snapshot at <seq> is copied; replication goes on after it"},
    {"skip", "<seq>", "go past the journal entry the follower refuses (audited)"},
};

// Whether `args` fit a command's argument spec (control_command::arguments).
bool fits(std::string_view spec, const std::vector<std::string>& args) {
  std::size_t next = 0;
  for (std::istringstream words{std::string(spec)}; !words.eof();) {
    std::string want;
    if (!(words >> want)) break;
    if (want.front() == '[') {
      if (next < args.size() && args[next] == want.substr(1, want.size() - 2)) ++next;
    } else if (next++ >= args.size()) {
      return false;
    }
  }
  return next == args.size();
}

// A journal sequence number, in decimal; -1 when the word is none.
std::int64_t sequence(const std::string& word) {
  if (word.empty() || word.size() >= 19 || word.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(word);
}

std::optional<int> percent(const std::string& word) {
  if (word.empty() || word.size() > 3 || word.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  const int v = std::stoi(word);
  if (v > 100) return std::nullopt;
  return v;
}

// Runs blocking work (switch-primary waits for the follower) off the I/O threads, in order.
class worker {
 public:
  worker() : thread_([this] { loop(); }) {}
  ~worker() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void post(std::function<void()> f) {
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(std::move(f));
    }
    cv_.notify_all();
  }
  // Returns once no job is queued or running, the job's captures released: a completion it
  // holds refers to the io_context, which the owner may destroy next.
  void drain() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return jobs_.empty() && !running_; });
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> f;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        f = std::move(jobs_.front());
        jobs_.pop_front();
        running_ = true;
      }
      f();
      f = nullptr;
      {
        std::lock_guard lock(mu_);
        running_ = false;
      }
      cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  bool running_ = false;
  std::thread thread_;
};

}  // namespace

std::span<const control_command> control_commands() { return k_commands; }

std::string control_commands_line() {
  std::string line;
  for (const auto& c : k_commands) {
    if (!line.empty()) line += " | ";
    line += c.name;
    if (!c.arguments.empty()) line += " " + std::string(c.arguments);
  }
  return line;
}

parsed_command parse_command(const std::string& line) {
  std::istringstream words(line);
  std::vector<std::string> w;
  for (std::string x; words >> x;) w.push_back(x);
  parsed_command p;
  if (w.empty()) {
    p.error = "empty command; try help";
    return p;
  }
  const std::vector<std::string> args(w.begin() + 1, w.end());
  for (const auto& c : k_commands) {
    if (c.name == w[0] && fits(c.arguments, args)) {
      p.name = w[0];
      p.args = args;
      return p;
    }
  }
  p.error = "unknown command or wrong arguments: '" + line + "'; commands: " + control_commands_line();
  return p;
}

json::object to_json(const runtime_state& s) {
  return {{"mode", to_string(s.current)},
          {"readPercent", s.read_percent},
          {"shadowReadPercent", s.shadow_read_percent},
          {"verifyWrites", s.verify_writes},
          {"replicationPaused", s.replication_paused},
          {"stage", s.stage},
          {"held", s.held}};
}

dual_metrics& metrics_now(router& r) {
  auto& m = r.metrics();
  m.mode.store(static_cast<std::int64_t>(r.current_mode()));
  m.read_percent.store(r.read_percent());
  m.shadow_read_percent.store(r.shadow_read_percent());
  if (const auto* s = r.sqlite()) {
    if (const auto bytes = s->journal_bytes(); bytes >= 0) m.journal_bytes.store(bytes);
    m.journal_max_bytes.store(s->journal_max_bytes());
    m.journaling_stopped.store(s->journaling_stopped() ? 1 : 0);
  }
  return m;
}

json::object status_of(router& r, const rollout* ro) {
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
  json::object out{{"at", backends::utc_now()}, {"atMs", now_ms.count()}, {"state", to_json(current_state(r, ro))}};
  if (auto rep = r.replication()) out["replication"] = rep->status();
  if (auto* lease = r.lease()) out["lease"] = lease->status();
  if (ro) out["rollout"] = ro->status();
  out["metrics"] = metrics_now(r).snapshot();
  return out;
}

runtime_state current_state(router& r, const rollout* ro) {
  runtime_state s;
  if (ro) {
    s.stage = ro->stage();
    s.held = ro->held();
  }
  s.current = r.current_mode();
  s.read_percent = r.read_percent();
  s.shadow_read_percent = r.shadow_read_percent();
  s.verify_writes = r.verify_writes();
  auto rep = r.replication();
  s.replication_paused = rep && rep->paused();
  return s;
}

std::optional<runtime_state> load_runtime_state(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  auto doc = protocol::read_json(text.str());
  const json::object* o = doc.ok() ? doc.value.if_object() : nullptr;
  auto bad = [&](const std::string& why) -> runtime_state {
    throw config_error(path + ": the runtime state file is unreadable (" + why +
                       "); fix or remove it (tandem then starts from the config)");
  };
  if (o == nullptr) return bad(doc.ok() ? "not a JSON object" : doc.error);
  runtime_state s;
  auto get = [&](const char* key) -> const json::value& {
    const auto* v = o->if_contains(key);
    if (v == nullptr) bad(std::string("no '") + key + "'");
    return *v;
  };
  const auto& m = get("mode");
  auto parsed = m.is_string() ? mode_from_string(std::string(m.get_string())) : std::nullopt;
  if (!parsed) return bad("'mode' is not a mode");
  s.current = *parsed;
  for (auto [key, target] : {std::pair{"readPercent", &s.read_percent}, std::pair{"shadowReadPercent", &s.shadow_read_percent}}) {
    const auto& v = get(key);
    if (!v.is_int64() || v.get_int64() < 0 || v.get_int64() > 100) return bad(std::string("'") + key + "' is not 0-100");
    *target = static_cast<int>(v.get_int64());
  }
  for (auto [key, target] : {std::pair{"verifyWrites", &s.verify_writes}, std::pair{"replicationPaused", &s.replication_paused}}) {
    const auto& v = get(key);
    if (!v.is_bool()) return bad(std::string("'") + key + "' is not true or false");
    *target = v.get_bool();
  }
  // The rollout's place (absent in files written before the rollout existed).
  if (const auto* v = o->if_contains("stage")) {
    if (!v->is_int64() || v->get_int64() < -1 || v->get_int64() > 1000) return bad("'stage' is not a stage");
    s.stage = static_cast<int>(v->get_int64());
  }
  if (const auto* v = o->if_contains("held")) {
    if (!v->is_bool()) return bad("'held' is not true or false");
    s.held = v->get_bool();
  }
  return s;
}

std::string save_runtime_state(const std::string& path, const runtime_state& s) {
  auto o = to_json(s);
  o["updated"] = backends::utc_now();
  const std::string text = json::serialize(o) + "\n";
  const std::string tmp = path + ".tmp";
  const auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  // "cannot write the runtime state to var/tandem.state.json (open var/tandem.state.json.tmp: No space left on device)"
  auto failed = [&](const std::string& step, int err) {
    return "cannot write the runtime state to " + path + " (" + step + ": " + std::strerror(err) + ")";
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return failed("open " + tmp, errno);
  for (std::size_t done = 0; done < text.size();) {
    const auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::close(fd);
      ::unlink(tmp.c_str());
      return failed("write " + tmp, err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return failed("fsync " + tmp, err);
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return failed("close " + tmp, err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return failed("rename " + tmp + " to " + path, err);
  }
  // The rename itself is durable only once the folder is.
  const std::string dir = parent.empty() ? "." : parent.string();
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return failed("open " + dir, errno);
  const int synced = ::fsync(dfd) == 0 ? 0 : errno;
  ::close(dfd);
  if (synced != 0) return failed("fsync " + dir, synced);
  return {};
}

struct control_server::impl : std::enable_shared_from_this<impl> {
  impl(control_options o, router& r) : options(std::move(o)), route(r) {}

  // One operator's connection: command lines, one at a time, with no bound (an operator's
  // terminal may sit idle).
  struct command_connection final : connection, std::enable_shared_from_this<command_connection> {
    command_connection(local::socket s, std::shared_ptr<impl> server) : socket(std::move(s)), server(std::move(server)) {}
    asio::awaitable<void> run() override { return server->serve(shared_from_this()); }
    void stop() override {
      boost::system::error_code ignored;
      socket.close(ignored);
    }
    asio::any_io_executor executor() override { return socket.get_executor(); }

    local::socket socket;
    std::shared_ptr<impl> server;
  };

  unix_listener::factory connections() {
    return [self = shared_from_this()](local::socket socket, std::size_t) {
      return std::make_shared<command_connection>(std::move(socket), self);
    };
  }

  asio::awaitable<void> serve(std::shared_ptr<command_connection> c) {
    local::socket& s = c->socket;
    ucred cred{};
    socklen_t len = sizeof cred;
    const std::uint32_t uid = ::getsockopt(s.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? cred.uid : ~0u;
    std::string buf;
    for (;;) {
      auto [ec, n] = co_await asio::async_read_until(s, asio::dynamic_buffer(buf, k_max_line), '\n', k_tuple);
      std::string answer;
      if (ec == asio::error::not_found) {
        answer = json::serialize(json::object{{"ok", false}, {"error", "a command line is at most 4096 bytes"}}) + "\n";
        co_await asio::async_write(s, asio::buffer(answer), k_tuple);
        break;
      }
      if (ec) break;
      std::string line = buf.substr(0, n - 1);
      buf.erase(0, n);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      auto self = shared_from_this();
      // Named, not a temporary in the co_await expression (GCC PR 101367, see await.hpp).
      auto run = [self, line, uid](auto done) {
        self->blocking.post([self, line, uid, done]() mutable { done(self->execute(line, uid)); });
      };
      answer = co_await await_callback<std::string>(std::move(run));
      answer += "\n";
      auto [wec, wn] = co_await asio::async_write(s, asio::buffer(answer), k_tuple);
      if (wec) break;
    }
    boost::system::error_code ignored;
    s.close(ignored);
  }

  // What a command that can be undone puts back when its state cannot be saved.
  struct snapshot {
    runtime_state state;
    std::optional<rollout::place> place;
  };
  snapshot take_snapshot() {
    snapshot s{current_state(route, ro), std::nullopt};
    if (ro) s.place = ro->where();
    return s;
  }
  void undo(const snapshot& s) {
    if (ro && s.place) ro->restore(*s.place);
    route.set_read_percent(s.state.read_percent);
    route.set_shadow_read_percent(s.state.shadow_read_percent);
    route.set_verify_writes(s.state.verify_writes);
    if (auto rep = route.replication(); rep && rep->paused() != s.state.replication_paused) {
      if (s.state.replication_paused) route.pause_replication();
      else route.resume_replication();
    }
  }

  // What a command changed, for the answer and for saving it.
  struct change {
    std::optional<switch_report> report;  // a mode change's pause
    bool undoable = true;                 // undone when its state cannot be saved (mode changes are written ahead instead)
  };

  std::string execute(const std::string& line, std::uint32_t uid) {
    const parsed_command cmd = parse_command(line);
    {
      // The file fell behind (a failed save): any command tries again first.
      std::lock_guard lock(mu);
      if (behind) save_locked();
    }
    const snapshot before = take_snapshot();
    json::object out{{"command", line}};
    auto refuse = [&](const std::string& why) {
      out["ok"] = false;
      out["error"] = why;
      out["state"] = to_json(before.state);
      return json::serialize(out);
    };
    if (!cmd.error.empty()) return refuse(cmd.error);
    if (answer_query(cmd.name, out)) return json::serialize(out);
    change done;
    if (auto why = act(cmd, before.state, out, done); !why.empty()) return refuse(why);
    return conclude(line, uid, before, out, done, refuse);
  }

  // The commands that only look (help, status, metrics): true when `name` is one, `out` holding
  // its answer.
  bool answer_query(const std::string& name, json::object& out) {
    if (name != "help" && name != "status" && name != "metrics") return false;
    out["ok"] = true;
    if (name == "help") out["commands"] = control_commands_line();
    else if (name == "status") for (auto& [k, v] : status()) out[k] = std::move(v);
    else out["metrics"] = metrics_now(route).snapshot();
    return true;
  }

  // Runs a command that changes something (its words already checked against the table).
  // Returns "" when it acted, else why it refused (nothing changed).
  std::string act(const parsed_command& cmd, const runtime_state& before, json::object& out, change& done) {
    const std::string& command = cmd.name;
    const std::string arg = cmd.args.empty() ? "" : cmd.args[0];
    if (command == "split" || command == "shadow") {
      auto p = percent(arg);
      if (!p) return command + " takes a percentage from 0 to 100, not '" + arg + "'";
      if (command == "split") route.set_read_percent(*p);
      else route.set_shadow_read_percent(*p);
    } else if (command == "verify") {
      if (arg != "on" && arg != "off") return "verify takes on or off, not '" + arg + "'";
      route.set_verify_writes(arg == "on");
    } else if (command == "pause-replication" || command == "resume-replication") {
      if (!route.replication()) return command + " needs a dual mode; the mode is " + std::string(to_string(before.current));
      if (command == "pause-replication") route.pause_replication();
      else route.resume_replication();
      if (auto why = route.replication()->rebuild_needed()) out["warning"] = "nothing is applied until the follower is rebuilt: " + *why;
    } else if (command == "switch-primary" || command == "mode") {
      done.undoable = false;
      auto m = command == "mode" ? mode_from_string(arg) : std::optional<mode>();
      if (command == "mode" && !m) return "unknown mode '" + arg + "' (sqlite-only, dual-sqlite, dual-d1, d1-only)";
      auto r = m ? route.set_mode(*m, options.max_pause, write_ahead()) : route.switch_primary(options.max_pause, write_ahead());
      if (!r) return r.error().message;
      done.report = *r;
    } else if (command == "next" || command == "prev" || command == "hold" || command == "release") {
      return step_rollout(command);
    } else if (command == "fallback") {
      done.undoable = false;
      fallback(!cmd.args.empty(), out, done.report);
    } else if (command == "backfill-begin" || command == "backfill-end") {
      return backfill(command, arg, before, out);
    } else if (command == "skip") {
      return skip(arg, before, out);
    } else if (command == "reload") {
      // Not undone: what it changes in the runtime state (a rollout stage's percentage) comes
      // from the config file, which a restart reads again.
      done.undoable = false;
      if (!reload) return "reload needs tandem started with a config file (tandem serve --config FILE)";
      try {
        out["reload"] = reload();
      } catch (const std::exception& e) {
        return std::string("the config was not reloaded, the running one is kept: ") + e.what();
      }
    }
    return {};
  }

  std::string step_rollout(const std::string& command) {
    if (ro == nullptr) return command + ": there is no rollout (rollout.stages is empty)";
    if (command == "next") return ro->next();
    if (command == "prev") return ro->prev();
    if (command == "hold") ro->hold();
    else ro->release();
    return {};
  }

  // A live backfill (tandem migrate --via-control). begin: replication pauses so that D1 holds
  // still while a SQLite snapshot taken at journal sequence S is copied into it. end: the copy of
  // the snapshot at S is complete, D1 stands at S, the replicator goes on at S+1. Undone (paused
  // again) when the state cannot be saved: D1's recorded position stays, and backfill-end can
  // simply be run again.
  std::string backfill(const std::string& command, const std::string& arg, const runtime_state& before, json::object& out) {
    if (command == "backfill-begin") {
      if (before.current != mode::dual_sqlite) return "a live backfill copies SQLite into D1 in dual-sqlite; the mode is " + std::string(to_string(before.current));
      if (before.read_percent != 0 || before.shadow_read_percent != 0) return "reads on D1 would see a partial copy: split 0 and shadow 0 first";
      if (auto r = route.begin_backfill(); !r) return r.error().message;
      return {};
    }
    const std::int64_t seq = sequence(arg);
    if (seq < 0) return "backfill-end takes the journal sequence of the copied snapshot, not '" + arg + "'";
    if (auto r = route.end_backfill(seq, options.max_pause); !r) return r.error().message;
    out["backfilledTo"] = seq;
    return {};
  }

  // The operator's way past an entry the follower refuses (see `status`: replication.stopped).
  // Audited: the event names the entry, its SQL and the follower's error.
  std::string skip(const std::string& arg, const runtime_state& before, json::object& out) {
    auto rep = route.replication();
    if (!rep) return "skip needs a dual mode; the mode is " + std::string(to_string(before.current));
    const std::int64_t seq = sequence(arg);
    const auto st = rep->stopped();
    if (seq < 1) return "skip takes the sequence number of the stopped entry, not '" + arg + "'";
    if (auto r = rep->skip(seq, backends::clock::now() + options.max_pause); !r) return r.error().message;
    out["skipped"] = json::object{{"seq", seq},
                                  {"sql", st ? st->sql : ""},
                                  {"followerError", st ? st->error : ""},
                                  {"note", "the follower does not have this write: validate (tandem validate) and repair it, or rebuild it"}};
    return {};
  }

  // After a command acted: saves the state it changed (or undoes it when that fails and it can
  // be undone), answers with the state before and after, and records the event.
  template <class Refuse>
  std::string conclude(const std::string& line, std::uint32_t uid, const snapshot& before_snapshot, json::object& out, const change& done,
                       Refuse& refuse) {
    const runtime_state& before = before_snapshot.state;
    {
      std::lock_guard lock(mu);
      changing_to.reset();  // the mode change, if any, took effect or was abandoned
    }
    const runtime_state after = current_state(route, ro);
    const std::string unsaved = after != before ? save() : std::string();
    if (!unsaved.empty() && done.undoable) {
      // Put back what this command changed (unless tandem changed it again meanwhile: a guard's
      // move stands), then save again: the file held `before` unless the failure came after
      // its rename.
      if (current_state(route, ro) == after) undo(before_snapshot);
      save();
      spdlog::error("control: uid {} ran '{}': undone, {}", uid, line, unsaved);
      return refuse(unsaved + "; the change was undone, so that a restart cannot come back in an older state than this answer");
    }
    // A fallback that moved the reads but not the leader reports ok: false with what it did.
    if (!out.contains("ok")) out["ok"] = true;
    if (!unsaved.empty()) {
      out["ok"] = false;
      const bool reloaded = out.contains("reload");
      const std::string why = unsaved + (reloaded ? "; a restart takes this rollout state from the config file again"
                                                  : "; a restart would come back in the state saved before this command "
                                                    "until the file can be written (tandem tries again on every command)");
      if (const auto* e = out.if_contains("error")) out["error"] = std::string(e->as_string()) + "; and " + why;
      else out["error"] = why;
    }
    out["before"] = to_json(before);
    out["after"] = to_json(after);
    if (done.report) out["pausedMs"] = done.report->paused_ms, out["drained"] = done.report->drained;
    if (after != before || out.contains("reload") || out.contains("skipped")) record_command(line, uid, before, after, out, unsaved);
    return json::serialize(out);
  }

  void record_command(const std::string& line, std::uint32_t uid, const runtime_state& before, const runtime_state& after,
                      const json::object& out, const std::string& unsaved) {
    json::object event{{"at", backends::utc_now()}, {"uid", uid}, {"command", line}, {"before", to_json(before)}, {"after", to_json(after)}};
    if (const auto* forced = out.if_contains("forced")) event["details"] = *forced;
    if (const auto* reloaded = out.if_contains("reload")) event["details"] = *reloaded;
    if (const auto* skipped = out.if_contains("skipped")) event["details"] = *skipped;
    if (!unsaved.empty()) event["stateNotSaved"] = unsaved;
    spdlog::info("control: uid {} ran '{}': {} -> {}", uid, line, json::serialize(event["before"]), json::serialize(event["after"]));
    add_event(std::move(event));
  }

  // The router's point of no return for a mode change: the state with the new mode is saved
  // first (write-ahead), or the change is abandoned.
  router::commit_hook write_ahead() {
    return [this](mode to) -> backends::outcome<void> {
      std::lock_guard lock(mu);
      changing_to = to;
      auto why = save_locked();
      if (why.empty()) return {};
      changing_to.reset();
      spdlog::error("control: a change to {} abandoned: {}", to_string(to), why);
      return protocol::error{protocol::errc::unavailable, why + ", so " + std::string(to_string(to)) + " did not take effect", {}, {}};
    };
  }

  // Reads straight back to SQLite (0%, and the rollout before its first stage, held). If D1
  // leads, SQLite leads again by a switch (which drains SQLite first); if D1 cannot be reached,
  // only `--force` makes SQLite lead, without the D1 entries it has not applied, counted.
  // The reads move even when that cannot be saved (the answer then says so); a leader change
  // is written ahead like any other.
  void fallback(bool force, json::object& out, std::optional<switch_report>& report) {
    if (ro) ro->fallback();
    else route.set_read_percent(0);
    if (route.current_mode() != mode::dual_d1) return;
    save();  // the reads, before the leader change is tried (it can take max_pause)
    auto r = route.switch_primary(options.max_pause, write_ahead());
    if (r) {
      report = *r;
      return;
    }
    const std::int64_t behind_entries = route.d1_entries_sqlite_lacks();
    if (!force) {
      out["ok"] = false;
      out["error"] = "reads are back on SQLite, but D1 still leads: " + r.error().message + ". SQLite has not applied " +
                     std::to_string(behind_entries) +
                     " D1 journal entries known to this process; `fallback --force` makes SQLite lead without them "
                     "(sqlite-only; D1 keeps them and must be rebuilt from SQLite before a dual mode again)";
      out["unappliedEntries"] = behind_entries;
      return;
    }
    auto f = route.force_sqlite_leader(options.max_pause, write_ahead());
    if (!f) {
      out["ok"] = false;
      out["error"] = "reads are back on SQLite, but D1 still leads: the forced fallback failed: " + f.error().message;
      return;
    }
    out["forced"] = json::object{{"unappliedEntries", f->unapplied},
                                 {"sqliteApplied", f->sqlite_applied},
                                 {"d1JournalEnd", f->d1_journal_end},
                                 {"note", "SQLite leads alone without D1 journal entries " + std::to_string(f->sqlite_applied + 1) +
                                              ".." + std::to_string(f->d1_journal_end) +
                                              " (writes only D1 holds); rebuild D1 from SQLite (tandem migrate) before a dual mode again"}};
  }

  json::object status() {
    json::object out = status_of(route, ro);
    json::array ev;
    {
      std::lock_guard lock(mu);
      for (const auto& e : events) ev.push_back(e);
    }
    out["events"] = std::move(ev);
    return out;
  }

  void add_event(json::object event) {
    std::lock_guard lock(mu);
    events.push_back(std::move(event));
    if (events.size() > k_max_events) events.pop_front();
  }

  // Saves the current state, with the mode a change in progress is about to take (see
  // write_ahead), unless the file already holds it. "" when saved, else why not. Requires mu.
  std::string save_locked() {
    if (options.state_path.empty()) return {};
    runtime_state s = current_state(route, ro);
    if (changing_to) {
      s.current = *changing_to;
      s.replication_paused = false;  // the new mode starts its own replicator, or has none
    }
    if (saved && *saved == s) return {};
    auto why = save_runtime_state(options.state_path, s);
    if (why.empty()) {
      saved = s;
      behind = false;
    } else {
      saved.reset();  // unknown now: the next save writes, whatever it holds
      if (!behind || why != last_failure) spdlog::error("control: {}; a restart would not keep the current state", why);
      behind = true;
      last_failure = why;
    }
    route.metrics().state_unsaved.store(behind ? 1 : 0);
    return why;
  }
  std::string save() {
    std::lock_guard lock(mu);
    return save_locked();
  }

  control_options options;
  router& route;
  rollout* ro = nullptr;
  std::function<json::object()> reload;
  worker blocking;
  std::mutex mu;
  std::deque<json::object> events;
  // The state file: what it holds (when known), whether the last save failed, and the mode a
  // change in progress saves ahead. All under mu.
  std::optional<runtime_state> saved;
  bool behind = false;
  std::string last_failure;  // logged once while it repeats
  std::optional<mode> changing_to;
};

control_server::control_server(asio::io_context& ioc, control_options options, router& r)
    : impl_(std::make_shared<impl>(std::move(options), r)), listener_(std::make_shared<unix_listener>(ioc, "control", impl_->connections())) {}

control_server::~control_server() {
  stop();
  impl_->blocking.drain();
}

void control_server::start() {
  const std::string& path = impl_->options.socket_path;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) throw std::runtime_error("control socket path " + path + " is a symlink; refusing to use it");
    if (!S_ISSOCK(st.st_mode)) throw std::runtime_error("control socket path " + path + " exists and is not a socket");
    if (st.st_uid != ::geteuid()) {
      throw std::runtime_error("control socket path " + path + " belongs to uid " + std::to_string(st.st_uid) + ", not to us");
    }
    // Ours: live (another tandem is serving it) or stale (a previous run was killed).
    boost::asio::io_context probe_ctx;
    local::socket probe(probe_ctx);
    boost::system::error_code probe_ec;
    probe.connect(local::endpoint(path), probe_ec);
    if (!probe_ec) throw std::runtime_error("control socket " + path + " is in use by another tandem");
    ::unlink(path.c_str());
  }
  std::error_code ec;
  if (auto parent = std::filesystem::path(path).parent_path(); !parent.empty()) std::filesystem::create_directories(parent, ec);
  // Created 0600 from the start (umask), not chmod-ed after a window where others could connect.
  const mode_t old = ::umask(0177);
  try {
    listener_->listen(local::endpoint(path));
  } catch (const boost::system::system_error& e) {
    ::umask(old);
    throw std::runtime_error("cannot create the control socket " + path + ": " + e.code().message());
  }
  ::umask(old);
}

void control_server::stop() {
  listener_->stop({}, [path = impl_->options.socket_path] { ::unlink(path.c_str()); });
}

void control_server::set_rollout(rollout* r) { impl_->ro = r; }

json::object control_server::status() const { return impl_->status(); }

void control_server::set_reload(std::function<json::object()> reload) { impl_->reload = std::move(reload); }

void control_server::record(const std::string& what, json::object details) {
  json::object event{{"at", backends::utc_now()}, {"uid", "tandem"}, {"command", what}, {"details", std::move(details)}};
  if (auto why = impl_->save(); !why.empty()) event["stateNotSaved"] = why;
  impl_->add_event(std::move(event));
}

std::string control_server::execute(const std::string& line, std::uint32_t peer_uid) { return impl_->execute(line, peer_uid); }

}  // namespace tandem::proxy
