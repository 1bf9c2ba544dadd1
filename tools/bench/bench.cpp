#include "tools/bench/bench.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>
#include <thread>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "backends/journal.hpp"
#include "backends/d1_store.hpp"
#include "backends/sqlite_connection.hpp"
#include "protocol/client.hpp"
#include "tools/bench/local_d1.hpp"

namespace tandem::tools {
namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

struct figures {
  double ops = 0;  // per second
  double p50_us = 0;
  double p99_us = 0;
  std::uint64_t errors = 0;
  bool ran = false;
  std::size_t requests = 0;  // answered in the measurement
  double server_cpu_us = 0;  // the tandem process's CPU time per request, when the bench started it
};

// One operation; returns false on error. Created per thread, outside the timed part.
using operation = std::function<bool()>;

// `f` (its errors counted) with the rate and percentiles of `latencies_us` over `elapsed` s.
figures summarize(std::vector<float> latencies_us, double elapsed, figures f) {
  if (latencies_us.empty()) return f;
  std::sort(latencies_us.begin(), latencies_us.end());
  f.requests = latencies_us.size();
  f.ops = static_cast<double>(f.requests) / elapsed;
  f.p50_us = latencies_us[latencies_us.size() / 2];
  f.p99_us = latencies_us[std::min(latencies_us.size() - 1, latencies_us.size() * 99 / 100)];
  f.ran = true;
  return f;
}

figures measure(int threads, double seconds, const std::function<operation(int)>& make) {
  std::vector<std::vector<float>> lat(threads);
  std::vector<std::uint64_t> errors(threads, 0);
  std::vector<operation> ops(threads);
  for (int i = 0; i < threads; ++i) ops[i] = make(i);
  std::barrier sync(threads + 1);
  std::atomic<bool> stop{false};
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      lat[i].reserve(1 << 16);
      sync.arrive_and_wait();
      while (!stop.load(std::memory_order_relaxed)) {
        const auto t0 = steady::now();
        const bool ok = ops[i]();
        const auto t1 = steady::now();
        if (!ok) ++errors[i];
        lat[i].push_back(std::chrono::duration<float, std::micro>(t1 - t0).count());
      }
    });
  }
  sync.arrive_and_wait();
  const auto start = steady::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : pool) t.join();
  const double elapsed = std::chrono::duration<double>(steady::now() - start).count();
  std::vector<float> all;
  figures f;
  for (int i = 0; i < threads; ++i) {
    all.insert(all.end(), lat[i].begin(), lat[i].end());
    f.errors += errors[i];
  }
  return summarize(std::move(all), elapsed, f);
}

// ---- in-process SQLite (the floor) -------------------------------------------------------------

using db_ptr = backends::sqlite_db_ptr;
using stmt_ptr = backends::sqlite_stmt_ptr;

db_ptr open_db(const std::string& path, const std::string& sync) {
  auto opened = backends::open_sqlite(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (!opened) throw std::runtime_error(opened.error().message);
  db_ptr db = std::move(*opened);
  sqlite3* d = db.get();
  sqlite3_busy_timeout(d, 60000);
  const std::string pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=" + sync;
  sqlite3_exec(d, pragmas.c_str(), nullptr, nullptr, nullptr);
  return db;
}

void exec(sqlite3* d, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(d, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    throw std::runtime_error(sql + ": " + msg);
  }
}

constexpr const char* k_schema =
    "CREATE TABLE IF NOT EXISTS bench(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, payload BLOB);"
    "CREATE TABLE IF NOT EXISTS bench_insert(id INTEGER PRIMARY KEY, worker INTEGER, n INTEGER, name TEXT);";
constexpr const char* k_ping_line = "{\"id\":1,\"op\":\"ping\"}\n";  // what the load generator sends for a ping
constexpr const char* k_select = "SELECT id, name, score, payload FROM bench WHERE id = ?";
constexpr const char* k_insert = "INSERT INTO bench_insert(worker, n, name) VALUES (?, ?, ?)";
constexpr const char* k_select_d1 = "SELECT id, name, score FROM bench WHERE id = ?";

void load(const std::string& path, int rows, const std::string& sync) {
  auto db = open_db(path, sync);
  exec(db.get(), k_schema);
  exec(db.get(), "DELETE FROM bench; DELETE FROM bench_insert; BEGIN");
  sqlite3_stmt* raw = nullptr;
  sqlite3_prepare_v2(db.get(), "INSERT INTO bench VALUES (?, ?, ?, randomblob(32))", -1, &raw, nullptr);
  stmt_ptr ins(raw);
  for (int i = 1; i <= rows; ++i) {
    const std::string name = "user-" + std::to_string(i);
    sqlite3_bind_int64(raw, 1, i);
    sqlite3_bind_text(raw, 2, name.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(raw, 3, i * 0.5);
    sqlite3_step(raw);
    sqlite3_reset(raw);
  }
  exec(db.get(), "COMMIT");
}

struct inproc_worker {
  db_ptr db;
  stmt_ptr st;
  std::mt19937_64 rng;
  int n = 0;
};

operation inproc_select(const std::string& path, int rows, const std::string& sync, int thread) {
  auto w = std::make_shared<inproc_worker>();
  w->db = open_db(path, sync);
  sqlite3_stmt* raw = nullptr;
  sqlite3_prepare_v2(w->db.get(), k_select, -1, &raw, nullptr);
  w->st.reset(raw);
  w->rng.seed(thread + 1);
  return [w, rows] {
    sqlite3_stmt* s = w->st.get();
    sqlite3_bind_int64(s, 1, static_cast<std::int64_t>(w->rng() % rows) + 1);
    int rc;
    // Read every column as tandem does, so the floor does the same work minus the proxy.
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      for (int c = 0; c < 4; ++c) {
        (void)sqlite3_column_type(s, c);
        (void)sqlite3_column_blob(s, c);
        (void)sqlite3_column_bytes(s, c);
      }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE;
  };
}

operation inproc_insert(const std::string& path, const std::string& sync, int thread) {
  auto w = std::make_shared<inproc_worker>();
  w->db = open_db(path, sync);
  sqlite3_stmt* raw = nullptr;
  sqlite3_prepare_v2(w->db.get(), k_insert, -1, &raw, nullptr);
  w->st.reset(raw);
  return [w, thread] {
    sqlite3_stmt* s = w->st.get();
    sqlite3_bind_int64(s, 1, thread);
    sqlite3_bind_int64(s, 2, ++w->n);
    sqlite3_bind_text(s, 3, "inserted", -1, SQLITE_STATIC);
    const int rc = sqlite3_step(s);  // autocommit: one transaction per insert
    sqlite3_reset(s);
    return rc == SQLITE_DONE;
  };
}

// ---- through tandem ----------------------------------------------------------------------------

std::unique_ptr<protocol::client> connect_or_throw(const protocol::client_options& o) {
  auto c = protocol::client::connect(o);
  if (!c) throw std::runtime_error("cannot connect to tandem: " + c.error().message);
  return std::move(*c);
}

operation tandem_select(const protocol::client_options& o, int rows, int thread) {
  auto c = std::shared_ptr<protocol::client>(connect_or_throw(o));
  auto rng = std::make_shared<std::mt19937_64>(thread + 1);
  return [c, rng, rows] {
    protocol::params p;
    p.positional.emplace_back(static_cast<std::int64_t>((*rng)() % rows) + 1);
    return c->query(k_select, std::move(p)).has_value();
  };
}

operation tandem_insert(const protocol::client_options& o, int thread) {
  auto c = std::shared_ptr<protocol::client>(connect_or_throw(o));
  auto n = std::make_shared<int>(0);
  return [c, n, thread] {
    protocol::params p;
    p.positional = {std::int64_t{thread}, std::int64_t{++*n}, std::string("inserted")};
    return c->query(k_insert, std::move(p)).has_value();
  };
}

operation tandem_ping(const protocol::client_options& o) {
  auto c = std::shared_ptr<protocol::client>(connect_or_throw(o));
  return [c] { return c->ping().has_value(); };
}

// ---- a minimal request/response TCP server (the network floor) ---------------------------------

// Answers each line with a line, one thread per connection, blocking I/O: about the least work
// a request/response server over loopback TCP can do.
class echo_server {
 public:
  echo_server() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 128) != 0)
      throw std::runtime_error("echo server: cannot listen");
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] {
      for (;;) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        int one = 1;
        ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        workers_.emplace_back([c] {
          char buf[4096];
          for (;;) {
            const ssize_t n = ::read(c, buf, sizeof buf);
            if (n <= 0) break;
            if (::write(c, "{\"ok\":true}\n", 12) != 12) break;
          }
          ::close(c);
        });
      }
    });
  }
  ~echo_server() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    acceptor_.join();
    for (auto& w : workers_) w.join();
  }
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread acceptor_;
  std::vector<std::thread> workers_;
};

// 127.0.0.1:port (0: any free port when bound).
sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}

// ---- the load generator: one thread and epoll, the shape of redis-benchmark's client ------------

// Drives `conns` connections to 127.0.0.1:`port` from this one thread, each with one request in
// flight, for `seconds`: redis-benchmark's shape, so that a tandem figure and a redis figure
// differ by their servers, not by their clients (a thread per connection spends most of a small
// machine on waking threads). `next(conn)` gives the next request line, newline included; an
// answer counts as an error unless it starts with `ok_prefix`. `hello`, when not empty, is sent
// first on each connection (a token). Throws when it cannot connect.
figures measure_loop(std::uint16_t port, int conns, double seconds, const std::function<std::string(int)>& next,
                     std::string_view ok_prefix, const std::string& hello = {}) {
  struct conn {
    int fd = -1;
    std::string in;
    steady::time_point sent;
  };
  std::vector<conn> cs(static_cast<std::size_t>(conns));
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  const auto cleanup = [&] {
    for (auto& c : cs) {
      if (c.fd >= 0) ::close(c.fd);
    }
    ::close(ep);
  };
  const auto send_all = [](int fd, const std::string& line) {
    return ::send(fd, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size());
  };
  for (int i = 0; i < conns; ++i) {
    auto& c = cs[static_cast<std::size_t>(i)];
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto a = loopback(port);
    int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(c.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      cleanup();
      throw std::runtime_error("load generator: cannot connect to 127.0.0.1:" + std::to_string(port));
    }
    if (!hello.empty()) {
      char buf[4096];
      const ssize_t n = send_all(c.fd, hello) ? ::recv(c.fd, buf, sizeof buf, 0) : -1;
      if (n <= 0 || std::string_view(buf, static_cast<std::size_t>(n)).find("\"ok\":true") == std::string_view::npos) {
        cleanup();
        throw std::runtime_error("load generator: hello refused (wrong token?)");
      }
    }
    ::fcntl(c.fd, F_SETFL, ::fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<std::uint32_t>(i);
    ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
  }
  std::vector<float> lat;
  lat.reserve(1 << 20);
  figures f;
  const auto start = steady::now();
  const auto until = start + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(seconds));
  for (int i = 0; i < conns; ++i) {
    auto& c = cs[static_cast<std::size_t>(i)];
    c.sent = steady::now();
    if (!send_all(c.fd, next(i))) ++f.errors;
  }
  std::vector<epoll_event> ready(static_cast<std::size_t>(conns));
  std::vector<char> buf(64 * 1024);
  while (steady::now() < until) {
    const int n = ::epoll_wait(ep, ready.data(), conns, 10);
    for (int k = 0; k < n; ++k) {
      const int i = static_cast<int>(ready[static_cast<std::size_t>(k)].data.u32);
      auto& c = cs[static_cast<std::size_t>(i)];
      const ssize_t got = ::recv(c.fd, buf.data(), buf.size(), 0);
      if (got <= 0) continue;
      c.in.append(buf.data(), static_cast<std::size_t>(got));
      const auto nl = c.in.find('\n');
      if (nl == std::string::npos) continue;
      const auto now = steady::now();
      if (c.in.compare(0, ok_prefix.size(), ok_prefix) != 0) ++f.errors;
      lat.push_back(std::chrono::duration<float, std::micro>(now - c.sent).count());
      c.in.erase(0, nl + 1);
      c.sent = now;
      if (now < until && !send_all(c.fd, next(i))) ++f.errors;
    }
  }
  const double elapsed = std::chrono::duration<double>(steady::now() - start).count();
  cleanup();
  return summarize(std::move(lat), elapsed, f);
}

// `workload` ("ping", "select", "insert") through tandem at `conns` connections. Plain TCP to
// this host runs on the one-thread load generator (measure_loop); TLS, or another host, on a
// protocol::client per thread.
figures measure_tandem(const protocol::client_options& o, const std::string& workload, int conns, double seconds, int rows) {
  const bool local = o.host == "127.0.0.1" || o.host == "localhost";
  if (o.tls || !local) {
    return measure(conns, seconds, [&](int i) {
      if (workload == "ping") return tandem_ping(o);
      return workload == "select" ? tandem_select(o, rows, i) : tandem_insert(o, i);
    });
  }
  const std::string hello = o.token.empty() ? std::string()
                                            : R"({"id":1,"op":"hello","token":)" + boost::json::serialize(boost::json::value(o.token)) + "}\n";
  std::vector<std::mt19937_64> rng;
  std::vector<std::int64_t> inserted(static_cast<std::size_t>(conns), 0);
  for (int i = 0; i < conns; ++i) rng.emplace_back(static_cast<std::uint64_t>(i) + 1);
  const std::string select_head = std::string(R"({"id":1,"op":"query","sql":")") + k_select + R"(","params":[)";
  const std::string insert_head = std::string(R"({"id":1,"op":"query","sql":")") + k_insert + R"(","params":[)";
  const auto next = [&](int i) -> std::string {
    const auto k = static_cast<std::size_t>(i);
    if (workload == "ping") return std::string(k_ping_line);
    if (workload == "select") return select_head + std::to_string(rng[k]() % static_cast<std::uint64_t>(rows) + 1) + "]}\n";
    return insert_head + std::to_string(i) + "," + std::to_string(++inserted[k]) + ",\"inserted\"]}\n";
  };
  return measure_loop(o.port, conns, seconds, next, R"({"id":1,"ok":true)", hello);
}

// ---- redis-benchmark PING, a server users know (when installed) ----------------------------------

// An executable named `name` on PATH, or "".
std::string on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  std::size_t at = 0;
  while (at <= dirs.size()) {
    const auto colon = dirs.find(':', at);
    const std::string dir = dirs.substr(at, colon == std::string::npos ? std::string::npos : colon - at);
    if (!dir.empty() && ::access((dir + "/" + name).c_str(), X_OK) == 0) return dir + "/" + name;
    if (colon == std::string::npos) break;
    at = colon + 1;
  }
  return "";
}

std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  auto a = loopback(0);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool can_connect(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  auto a = loopback(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A redis-server of its own (no persistence) on a free loopback port, and redis-benchmark's
// ping_inline against it: a single-threaded request/response server that users know.
class redis_reference {
 public:
  static std::unique_ptr<redis_reference> start() {
    const std::string server = on_path("redis-server"), bench = on_path("redis-benchmark");
    if (server.empty() || bench.empty()) return nullptr;
    auto r = std::unique_ptr<redis_reference>(new redis_reference);
    r->bench_ = bench;
    r->port_ = free_port();
    const std::string port = std::to_string(r->port_);
    r->pid_ = ::fork();
    if (r->pid_ == 0) {
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, STDOUT_FILENO);
      ::execl(server.c_str(), server.c_str(), "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
              "--daemonize", "no", static_cast<char*>(nullptr));
      std::_Exit(127);
    }
    for (int i = 0; i < 200 && !can_connect(r->port_); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!can_connect(r->port_)) return nullptr;
    return r;
  }
  ~redis_reference() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  // redis-benchmark -t ping_inline at `conns` connections, about `seconds` long (it counts
  // requests, not time: the count comes from a short first run).
  figures ping(int conns, double seconds) {
    auto run = [&](long requests) {
      figures f;
      const std::string cmd = bench_ + " -h 127.0.0.1 -p " + std::to_string(port_) + " -t ping_inline -c " + std::to_string(conns) +
                              " -n " + std::to_string(requests) + " --csv 2>/dev/null";
      FILE* p = ::popen(cmd.c_str(), "r");
      if (!p) return f;
      char line[512];
      while (std::fgets(line, sizeof line, p)) {
        // "PING_INLINE","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
        std::string s(line);
        if (s.rfind("\"PING_INLINE\"", 0) != 0) continue;
        std::vector<double> v;
        for (std::size_t q = s.find(','); q != std::string::npos; q = s.find(',', q + 1)) v.push_back(std::atof(s.c_str() + q + 2));
        if (v.size() >= 6) {
          f.ops = v[0];
          f.p50_us = v[3] * 1000;
          f.p99_us = v[5] * 1000;
          f.ran = f.ops > 0;
        }
      }
      ::pclose(p);
      return f;
    };
    auto probe = run(std::max(2000, conns * 100));
    if (!probe.ran) return probe;
    return run(std::max<long>(conns * 100, static_cast<long>(probe.ops * seconds)));
  }

 private:
  redis_reference() = default;
  std::string bench_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// ---- memory ------------------------------------------------------------------------------------

// CPU time (user + system) the process has used so far, in seconds (/proc/<pid>/stat).
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  // Fields after the command name, which is in parentheses and may hold spaces.
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// The resident set of process `pid` in KiB (VmRSS), -1 if unknown.
long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      long kib = -1;
      in >> kib;
      return kib;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return -1;
}

// A connection that has sent one ping and read its answer, then stays open and idle.
int idle_connection(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  const std::string_view req = k_ping_line;
  char buf[128];
  if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size()) || ::read(fd, buf, sizeof buf) <= 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// ---- a tandem child process --------------------------------------------------------------------

class child_server {
 public:
  child_server(const std::string& binary, const std::string& config_path,
               std::vector<std::pair<std::string, std::string>> env = {}) {
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ == 0) {
      for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
      ::dup2(out[1], STDOUT_FILENO);
      ::close(out[0]);
      ::close(out[1]);
      ::execl(binary.c_str(), binary.c_str(), "serve", "--config", config_path.c_str(), "--log-level", "warn",
              static_cast<char*>(nullptr));
      std::perror("exec tandem");
      std::_Exit(127);
    }
    ::close(out[1]);
    std::string line;
    char ch;
    while (::read(out[0], &ch, 1) == 1) {
      if (ch == '\n') {
        if (line.rfind("tandem listening on ", 0) == 0) break;
        line.clear();
      } else {
        line.push_back(ch);
      }
    }
    ::close(out[0]);
    const auto colon = line.rfind(':');
    if (line.rfind("tandem listening on ", 0) != 0 || colon == std::string::npos) {
      stop();
      throw std::runtime_error("tandem serve did not start (see its log above)");
    }
    port_ = static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1)));
  }
  ~child_server() { stop(); }
  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }
  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

std::string cell(const figures& f) {
  if (!f.ran) return "          -        -        -";
  char buf[96];
  std::snprintf(buf, sizeof buf, "%11.0f %8.1f %8.1f", f.ops, f.p50_us, f.p99_us);
  std::string s = buf;
  if (f.errors) s += " (" + std::to_string(f.errors) + " errors)";
  return s;
}

void row(const std::string& name, int conns, const figures& floor, const figures& t) {
  char ratio[32] = "      -";
  if (floor.ran && t.ran && floor.ops > 0) std::snprintf(ratio, sizeof ratio, "%7.2fx", t.ops / floor.ops);
  std::printf("%-14s %5d | %s | %s | %s\n", name.c_str(), conns, cell(floor).c_str(), cell(t).c_str(), ratio);
  std::fflush(stdout);
}

// The same statement straight to D1's REST API, in process, over keep-alive connections: by
// default through the D1 store's exact path (backends/d1_exact.hpp: typed reads, a write's
// last_insert_rowid()); `raw` sends the SQL as it is and takes D1's JSON as it comes (the
// store's internal path, which does neither).
operation d1_direct(backends::d1_store& s, std::function<protocol::statement()> next, bool raw = false) {
  backends::exec_options opts;
  opts.internal = raw;
  return [&s, next, opts] {
    std::promise<bool> done;
    s.execute(next(), opts, [&done](auto r) { done.set_value(r.has_value()); });
    return done.get_future().get();
  };
}

// The local D1 (tools/d1-local) for a benchmark: started in `dir`, stopped at the end.
class bench_d1 : public d1_local_process {
 public:
  bench_d1(const bench_options& o, const fs::path& dir, const std::string& binary)
      : d1_local_process(o.d1_local.empty() ? default_d1_local_dir(binary) : o.d1_local, (dir / "d1-state").string()) {}
};

std::int64_t scalar(protocol::client& c, const std::string& sql);
double wait_replicated(protocol::client& c, backends::store& d1);

// A point select by a random id of the `rows` rows of the D1 bench table, through tandem.
operation tandem_d1_select(const protocol::client_options& o, int thread, int rows) {
  auto c = std::shared_ptr<protocol::client>(connect_or_throw(o));
  auto rng = std::make_shared<std::mt19937_64>(thread + 1);
  return [c, rng, rows] {
    protocol::params p;
    p.positional = {static_cast<std::int64_t>((*rng)() % rows) + 1};
    return c->query(k_select_d1, std::move(p)).has_value();
  };
}

// Both transports in one run (tools/d1-bridge): a point select and an insert through tandem in
// d1-only over D1's REST API and over the bridge; then D1 requests per replicated write in
// dual-sqlite, counted by the local D1, next to the REST API's rate limit.
void run_transport_bench(const bench_options& o, d1_local_process& local, const std::string& database, const std::string& binary,
                         const fs::path& dir, int rows) {
  using backends::d1_transport;
  const std::vector<std::pair<std::string, std::string>> env{{"TANDEM_BENCH_D1_TOKEN", d1_local_process::k_token}};
  auto config = [&](const std::string& name, const std::string& mode, const std::string& db, d1_transport t) {
    const std::string path = (dir / (name + ".jsonc")).string();
    std::ofstream(path) << "{ \"mode\": \"" << mode << "\", \"listen\": {\"host\": \"127.0.0.1\", \"port\": 0}, \"admin\": {\"enabled\": false}, "
                        << "\"control\": {\"enabled\": false}, \"limits\": {\"max_connections\": 4096},\n  \"sqlite\": {\"path\": \""
                        << (dir / (name + ".db")).string() << "\"},\n  " << local.config(db, t) << " }\n";
    return path;
  };
  std::printf("\n%-14s %5s | %-28s | %-28s | %s\n", "transport", "conns", "    rest: ops/s  p50 us  p99 us",
              "  bridge: ops/s  p50 us  p99 us", "bridge/rest");
  std::printf("%s\n", std::string(100, '-').c_str());
  {
    child_server rest(binary, config("d1-rest", "d1-only", database, d1_transport::rest), env);
    child_server bridge(binary, config("d1-bridge", "d1-only", database, d1_transport::bridge), env);
    protocol::client_options ro, bo;
    ro.port = rest.port();
    bo.port = bridge.port();
    for (int n : o.connections) {
      auto r = measure(n, o.seconds, [&](int i) { return tandem_d1_select(ro, i, rows); });
      auto b = measure(n, o.seconds, [&](int i) { return tandem_d1_select(bo, i, rows); });
      row("point-select", n, r, b);
    }
    for (int n : o.connections) {
      auto r = measure(n, o.seconds, [&](int i) { return tandem_insert(ro, 2000 + i); });
      auto b = measure(n, o.seconds, [&](int i) { return tandem_insert(bo, 3000 + i); });
      row("insert", n, r, b);
    }
  }
  // D1 requests per replicated write: dual-sqlite over each transport, writers for o.seconds,
  // then until D1 has applied every entry; the local D1 counts what reached it.
  std::printf("%s\n", std::string(100, '-').c_str());
  std::printf("%-14s %5s | %-28s | %-28s |\n", "replicated", "conns", "    rest: writes  D1 req/write", "  bridge: writes  D1 req/write");
  double worst[2] = {0, 0};
  int k = 0;
  for (int n : o.connections) {
    std::string cells[2];
    for (int t = 0; t < 2; ++t) {
      const auto transport = t == 0 ? d1_transport::rest : d1_transport::bridge;
      const std::string db = local.fresh(27 - ((k++) % 8));
      child_server dual(binary, config("dual-" + std::to_string(n) + "-" + std::to_string(t), "dual-sqlite", db, transport), env);
      protocol::client_options co;
      co.port = dual.port();
      auto c = connect_or_throw(co);
      if (auto r = c->query("CREATE TABLE bench_insert(id INTEGER PRIMARY KEY, worker INTEGER, n INTEGER, name TEXT)"); !r)
        throw std::runtime_error(r.error().message);
      auto d1 = backends::d1_store::open(local.options(db));
      if (!d1) throw std::runtime_error(d1.error().message);
      wait_replicated(*c, **d1);
      const std::int64_t before = local.requests(db);
      const std::int64_t writes_before = scalar(*c, "SELECT count(*) FROM bench_insert");
      measure(n, o.seconds, [&](int i) { return tandem_insert(co, i); });
      wait_replicated(*c, **d1);
      const std::int64_t writes = scalar(*c, "SELECT count(*) FROM bench_insert") - writes_before;
      // The bench's own look at D1 (wait_replicated) is counted too: subtract nothing, report it.
      const double per = writes > 0 ? static_cast<double>(local.requests(db) - before) / static_cast<double>(writes) : 0;
      worst[t] = std::max(worst[t], per);
      char cell_text[64];
      std::snprintf(cell_text, sizeof cell_text, "%14lld  %12.3f", static_cast<long long>(writes), per);
      cells[t] = cell_text;
      (*d1)->shutdown();
    }
    std::printf("%-14s %5d | %-28s | %-28s |\n", "insert", n, cells[0].c_str(), cells[1].c_str());
  }
  std::printf("%s\n", std::string(100, '-').c_str());
  std::printf("D1 requests per write include the bench's own polling of D1 for the applied position.\n"
              "REST API limit: 1,200 requests per 5 minutes per user = 4 requests/s on average, for every tool of that user.\n"
              "  a read routed to D1 is one request: at most 4 D1 reads/s in total (a 5%% split of 80 reads/s)\n"
              "  replication at the worst figure above (%.3f requests per write): about %.0f replicated writes/s\n"
              "The bridge is under no API rate limit; its limits are D1's and the Worker plan's (tools/d1-bridge/README.md).\n",
              worst[0], worst[0] > 0 ? 4.0 / worst[0] : 0.0);
}

// `tandem bench --store d1`. Long (~130 lines): a measurement script, like run_dual_bench.
int run_d1_bench(const bench_options& o, const fs::path& dir, const std::string& binary) {
  bench_d1 local(o, dir, binary);
  const std::string url = local.url();
  const std::string database = local.fresh(30);
  auto direct = backends::d1_store::open(local.options(database));
  if (!direct) throw std::runtime_error(direct.error().message);
  auto& d1 = **direct;
  auto run = [&](std::vector<protocol::statement> sts) {
    std::promise<bool> done;
    d1.execute_batch(std::move(sts), {}, [&done](auto r) { done.set_value(r.has_value()); });
    if (!done.get_future().get()) throw std::runtime_error("loading the local D1 failed");
  };
  run({{"CREATE TABLE bench(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL)", {}},
       {"CREATE TABLE bench_insert(id INTEGER PRIMARY KEY, worker INTEGER, n INTEGER, name TEXT)", {}}});
  const int rows = std::min(o.rows, 2000);
  for (int i = 1; i <= rows; i += 100) {
    std::vector<protocol::statement> sts;
    for (int k = i; k < i + 100 && k <= rows; ++k) {
      protocol::statement st{"INSERT INTO bench VALUES (?, ?, ?)", {}};
      st.params.positional = {std::int64_t{k}, "user-" + std::to_string(k), k * 0.5};
      sts.push_back(std::move(st));
    }
    run(std::move(sts));
  }

  const std::string conf = (dir / "bench-d1.jsonc").string();
  std::ofstream(conf) << "{ \"mode\": \"d1-only\", \"listen\": {\"host\": \"127.0.0.1\", \"port\": 0}, \"admin\": {\"enabled\": false}, \"control\": {\"enabled\": false},\n  "
                      << local.config(database) << " }\n";
  child_server child(binary, conf, {{"TANDEM_BENCH_D1_TOKEN", d1_local_process::k_token}});
  protocol::client_options copts;
  copts.port = child.port();

  std::printf("tandem bench --store d1: local D1 at %s (wrangler/workerd), %d rows, %.1f s per run, %u cores\n",
              url.c_str(), rows, o.seconds, std::thread::hardware_concurrency());
  auto select_stmt = [rows](std::mt19937_64& rng) {
    protocol::statement st{k_select_d1, {}};
    st.params.positional = {static_cast<std::int64_t>(rng() % rows) + 1};
    return st;
  };
  // What exactness costs: the same calls, straight to D1, raw and exact.
  std::printf("%-14s %5s | %-28s | %-28s | %s\n", "exact vs raw", "conns", "     raw: ops/s  p50 us  p99 us",
              "  exact: ops/s  p50 us  p99 us", "exact/raw");
  std::printf("%s\n", std::string(100, '-').c_str());
  figures select1_raw, select1_exact;
  for (int n : o.connections) {
    auto per_thread = [&](bool raw) {
      return [&, raw](int i) {
        auto rng = std::make_shared<std::mt19937_64>(i + 1);
        return d1_direct(d1, [rng, select_stmt] { return select_stmt(*rng); }, raw);
      };
    };
    auto r = measure(n, o.seconds, per_thread(true));
    auto e = measure(n, o.seconds, per_thread(false));
    row("point-select", n, r, e);
    if (n == 1) select1_raw = r, select1_exact = e;
  }
  for (int n : o.connections) {
    auto per_thread = [&](bool raw) {
      return [&, raw](int i) {
        auto k = std::make_shared<int>(0);
        return d1_direct(d1, [i, k] {
          protocol::statement st{k_insert, {}};
          st.params.positional = {std::int64_t{1000 + i}, std::int64_t{++*k}, std::string("exactness")};
          return st;
        }, raw);
      };
    };
    auto r = measure(n, o.seconds, per_thread(true));
    auto e = measure(n, o.seconds, per_thread(false));
    row("insert", n, r, e);
  }
  std::printf("\n%-14s %5s | %-28s | %-28s | %s\n", "workload", "conns", "  direct: ops/s  p50 us  p99 us",
              " tandem: ops/s  p50 us  p99 us", "tandem/direct");
  std::printf("%s\n", std::string(100, '-').c_str());
  figures select1_direct, select1_tandem;
  for (int n : o.connections) {
    auto f = measure(n, o.seconds, [&](int i) {
      auto rng = std::make_shared<std::mt19937_64>(i + 1);
      return d1_direct(d1, [rng, select_stmt] { return select_stmt(*rng); });
    });
    auto t = measure(n, o.seconds, [&](int i) { return tandem_d1_select(copts, i, rows); });
    row("point-select", n, f, t);
    if (n == 1) select1_direct = f, select1_tandem = t;
  }
  for (int n : o.connections) {
    auto f = measure(n, o.seconds, [&](int i) {
      auto k = std::make_shared<int>(0);
      return d1_direct(d1, [i, k] {
        protocol::statement st{k_insert, {}};
        st.params.positional = {std::int64_t{i}, std::int64_t{++*k}, std::string("direct")};
        return st;
      });
    });
    auto t = measure(n, o.seconds, [&](int i) { return tandem_insert(copts, i); });
    row("insert", n, f, t);
  }
  // N single inserts vs the same N as one batch, through tandem.
  constexpr int k_batch = 100;
  auto c = connect_or_throw(copts);
  auto t0 = steady::now();
  for (int k = 0; k < k_batch; ++k) {
    protocol::params p;
    p.positional = {std::int64_t{-1}, std::int64_t{k}, std::string("single")};
    if (!c->query(k_insert, p)) throw std::runtime_error("single insert failed");
  }
  const double singles_ms = std::chrono::duration<double, std::milli>(steady::now() - t0).count();
  std::vector<protocol::statement> batch;
  for (int k = 0; k < k_batch; ++k) {
    protocol::statement st{k_insert, {}};
    st.params.positional = {std::int64_t{-2}, std::int64_t{k}, std::string("batched")};
    batch.push_back(std::move(st));
  }
  t0 = steady::now();
  if (!c->batch(std::move(batch))) throw std::runtime_error("batch insert failed");
  const double batch_ms = std::chrono::duration<double, std::milli>(steady::now() - t0).count();
  std::printf("%s\n", std::string(100, '-').c_str());
  std::printf("%d inserts through tandem: %.1f ms as single requests, %.1f ms as one batch: %.0fx (target >= 50x)\n",
              k_batch, singles_ms, batch_ms, singles_ms / batch_ms);
  if (select1_direct.ran && select1_tandem.ran)
    std::printf("point-select p50 at 1 conn: tandem adds %.0f%% to the direct call (target < 10%%)\n",
                100.0 * (select1_tandem.p50_us - select1_direct.p50_us) / select1_direct.p50_us);
  if (select1_raw.ran && select1_exact.ran)
    std::printf("point-select p50 at 1 conn: the exact path costs %.0f us (%.0f%%) over the raw one\n",
                select1_exact.p50_us - select1_raw.p50_us, 100.0 * (select1_exact.p50_us - select1_raw.p50_us) / select1_raw.p50_us);
  child.stop();
  d1.shutdown();
  run_transport_bench(o, local, database, binary, dir, rows);
  return 0;
}

// A scalar from a store (the benchmark's own look at D1 or SQLite), -1 if it cannot be read.
std::int64_t scalar(backends::store& s, protocol::statement st) {
  std::promise<std::int64_t> p;
  backends::exec_options opts;
  opts.internal = true;
  s.execute(std::move(st), opts, [&p](backends::outcome<protocol::query_result> r) {
    const std::int64_t* v = r && !r->rows.empty() ? std::get_if<std::int64_t>(&r->rows[0][0]) : nullptr;
    p.set_value(v ? *v : -1);
  });
  return p.get_future().get();
}

std::int64_t scalar(protocol::client& c, const std::string& sql) {
  auto r = c.query(sql);
  if (!r || r->rows.empty()) return -1;
  const auto* v = std::get_if<std::int64_t>(&r->rows[0][0]);
  return v ? *v : -1;
}

// Polls until D1 has applied the whole journal of the tandem behind `c`; returns the seconds it took.
double wait_replicated(protocol::client& c, backends::store& d1) {
  const auto start = steady::now();
  const std::int64_t end = scalar(c, backends::journal_max_seq_statement().sql);
  while (scalar(d1, backends::applied_position_statement("sqlite")) < end) {
    if (steady::now() - start > std::chrono::minutes(5)) throw std::runtime_error("replication did not catch up in 5 minutes");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return std::chrono::duration<double>(steady::now() - start).count();
}

// The value of the Prometheus gauge `name` that tandem's admin endpoint on `port` exports now,
// or -1 when it cannot be read.
std::int64_t metric_of(std::uint16_t port, const std::string& name) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto a = loopback(port);
  std::string body;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string req = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[16384];
      for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) body.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  const auto at = body.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::strtoll(body.c_str() + at + name.size() + 2, nullptr, 10);
}

// `tandem bench --store dual`: what dual writes cost and how fast the replicator copies.
// Long (~150 lines): a measurement script over the same processes, printing as it goes; its steps
// share those processes and their figures, and read best in the order they run.
int run_dual_bench(const bench_options& o, const fs::path& dir, const std::string& binary) {
  bench_d1 local(o, dir, binary);
  const std::vector<std::pair<std::string, std::string>> env{{"TANDEM_BENCH_D1_TOKEN", d1_local_process::k_token}};
  // `d1_section` replaces the local D1's (a follower that is never reachable).
  // `admin_port` > 0 turns the admin endpoint on there (the lag watcher reads /metrics).
  auto config = [&](const std::string& name, const std::string& mode, const std::string& database, int batch_entries,
                    const std::string& d1_section = {}, int admin_port = 0) {
    const std::string path = (dir / (name + ".jsonc")).string();
    const std::string admin = admin_port > 0 ? "{\"enabled\": true, \"host\": \"127.0.0.1\", \"port\": " + std::to_string(admin_port) + "}"
                                             : std::string("{\"enabled\": false}");
    std::ofstream(path) << "{ \"mode\": \"" << mode << "\", \"listen\": {\"host\": \"127.0.0.1\", \"port\": 0},\n"
                        << "  \"sqlite\": {\"path\": \"" << (dir / (name + ".db")).string() << "\", \"synchronous\": \""
                        << o.synchronous << "\"},\n  \"limits\": {\"max_connections\": 4096}, \"admin\": " << admin << ", \"control\": {\"enabled\": false},\n"
                        << "  \"dual\": {\"batch_entries\": " << batch_entries << ", \"retry_min_ms\": 10, \"retry_max_ms\": "
                        << (d1_section.empty() ? 50 : 60000) << "},\n  " << (d1_section.empty() ? local.config(database) : d1_section)
                        << " }\n";
    return path;
  };
  auto prepare = [](const protocol::client_options& co) {
    auto c = connect_or_throw(co);
    for (const char* sql : {"CREATE TABLE bench_insert(id INTEGER PRIMARY KEY, worker INTEGER, n INTEGER, name TEXT)",
                            "CREATE TABLE bench_lag(id INTEGER PRIMARY KEY, at INTEGER)"})
      if (auto r = c->query(sql); !r) throw std::runtime_error(r.error().message);
    return c;
  };
  std::printf("tandem bench --store dual: local D1 at %s, %.1f s per run, synchronous=%s, %u cores\n", local.url().c_str(),
              o.seconds, o.synchronous.c_str(), std::thread::hardware_concurrency());

  // 1. What the journal costs a write: sqlite-only against dual-sqlite (ack leader).
  {
    const std::string database = local.fresh(31);
    auto d1 = backends::d1_store::open(local.options(database));
    if (!d1) throw std::runtime_error(d1.error().message);
    child_server single(binary, config("single", "sqlite-only", database, 500), env);
    // The journal alone: a follower that never answers, so the replicator sleeps in its backoff.
    child_server journal(binary, config("journal", "dual-sqlite", database, 500,
                                        "\"d1\": {\"endpoint\": \"http://127.0.0.1:9\", \"account_id\": \"a\", \"database_id\": \"d\", "
                                        "\"token_env\": \"TANDEM_BENCH_D1_TOKEN\", \"max_attempts\": 1}"),
                         env);
    child_server dual(binary, config("dual", "dual-sqlite", database, 500), env);
    protocol::client_options so, jo, dopts;
    so.port = single.port();
    jo.port = journal.port();
    dopts.port = dual.port();
    prepare(so);
    prepare(jo);
    auto dc = prepare(dopts);
    std::printf("%-14s %5s | %-28s | %-28s | %s\n", "workload", "conns", "sqlite-only: ops/s p50 us p99 us",
                "dual-sqlite: ops/s p50 us p99 us", "dual/sqlite-only");
    std::printf("%s\n", std::string(100, '-').c_str());
    for (int n : o.connections) {
      auto f = measure(n, o.seconds, [&](int i) { return tandem_insert(so, i); });
      auto j = measure(n, o.seconds, [&](int i) { return tandem_insert(jo, i); });
      auto t = measure(n, o.seconds, [&](int i) { return tandem_insert(dopts, i); });
      row("journal only", n, f, j);
      row("+ replicating", n, f, t);
    }
    journal.stop();
    const double s = wait_replicated(*dc, **d1);
    std::printf("journal only: the follower is unreachable, so only the journal's own work is measured;\n"
                "+ replicating: the replicator and the local D1 (workerd) share these cores with the writers.\n"
                "The replicator finished copying to D1 %.1f s after the last insert.\n", s);
    (*d1)->shutdown();
  }

  // 2. Catch-up after an outage: N entries journaled while D1 cannot be reached (a tandem whose
  //    D1 endpoint answers nothing), then a tandem on the same file with the real local D1
  //    applies them: one entry per D1 request against up to 500 per request.
  const int n_entries = std::clamp(o.rows / 10, 200, 2000);
  const std::string unreachable =
      "\"d1\": {\"endpoint\": \"http://127.0.0.1:9\", \"account_id\": \"a\", \"database_id\": \"d\", "
      "\"token_env\": \"TANDEM_BENCH_D1_TOKEN\", \"max_attempts\": 1}";
  std::printf("%s\n", std::string(100, '-').c_str());
  double per_s[2] = {0, 0};
  for (int k = 0; k < 2; ++k) {
    const int batch = k == 0 ? 1 : 500;
    const std::string name = "catchup" + std::to_string(batch);
    const std::string database = local.fresh(29 - k);
    {
      child_server offline(binary, config(name, "dual-sqlite", database, batch, unreachable), env);
      protocol::client_options co;
      co.port = offline.port();
      auto c = prepare(co);
      for (int i = 1; i <= n_entries; ++i) {
        protocol::params p;
        p.positional = {std::int64_t{0}, std::int64_t{i}, std::string("while D1 is down")};
        if (!c->query(k_insert, p)) throw std::runtime_error("insert failed while D1 was unreachable");
      }
    }
    auto d1 = backends::d1_store::open(local.options(database));
    if (!d1) throw std::runtime_error(d1.error().message);
    const auto t0 = steady::now();
    child_server online(binary, config(name, "dual-sqlite", database, batch), env);
    protocol::client_options co;
    co.port = online.port();
    auto c = connect_or_throw(co);
    wait_replicated(*c, **d1);
    const double s = std::chrono::duration<double>(steady::now() - t0).count();
    per_s[k] = (n_entries + 2) / s;
    std::printf("catch-up of %d entries (D1 was unreachable), %3d entries per D1 batch: %.2f s, %.0f entries/s\n", n_entries + 2,
                batch, s, per_s[k]);
    (*d1)->shutdown();
  }
  std::printf("batching: %.0fx the entries/s of one entry per request (target >= 50x)\n", per_s[1] / per_s[0]);

  // 3. Steady lag at a fixed write rate: one writer at 1,000 inserts/s, and two watchers. One
  //    reads tandem's /metrics every 1 ms and counts a write as applied once tandem_applied_seq
  //    reaches the journal position its answer carried: D1 has committed it and said so (what
  //    read-your-writes waits for). The other polls D1 for the highest id it has, 2 ms after its
  //    last answer, and counts an id as seen when the answer holding it came back (so its lag
  //    includes up to one D1 read round trip and the pause, and its reads load the local D1).
  {
    const std::string database = local.fresh(31);
    const std::uint16_t admin_port = free_port();
    child_server dual(binary, config("lag", "dual-sqlite", database, 500, {}, admin_port), env);
    protocol::client_options co;
    co.port = dual.port();
    auto c = prepare(co);
    auto d1 = backends::d1_store::open(local.options(database));
    if (!d1) throw std::runtime_error(d1.error().message);
    const int total = std::max(200, static_cast<int>(1000 * o.seconds * 2));
    std::vector<steady::time_point> acked(static_cast<std::size_t>(total) + 1), seen(static_cast<std::size_t>(total) + 1),
        applied(static_cast<std::size_t>(total) + 1);
    // The journal position of each write (its answer's meta.at), published once acked.
    std::vector<std::int64_t> seq_of(static_cast<std::size_t>(total) + 1, 0);
    std::atomic<int> acked_upto{0};
    std::atomic<bool> done{false};
    std::thread applied_watcher([&] {
      int next = 1;  // the first write not yet counted as applied
      while (next <= total) {
        const std::int64_t at = metric_of(admin_port, "tandem_applied_seq");
        const auto now = steady::now();
        const int upto = acked_upto.load(std::memory_order_acquire);
        while (next <= upto && at >= seq_of[static_cast<std::size_t>(next)]) applied[static_cast<std::size_t>(next++)] = now;
        if (done && next <= total && now - acked[static_cast<std::size_t>(total)] > std::chrono::seconds(60)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
    std::thread watcher([&] {
      std::int64_t have = 0;
      while (have < total) {
        const std::int64_t top = scalar(**d1, {"SELECT coalesce(max(id), 0) FROM bench_lag", {}});
        const auto now = steady::now();
        for (std::int64_t i = have + 1; i <= top; ++i) seen[static_cast<std::size_t>(i)] = now;
        have = std::max(have, top);
        if (done && have < total && now - acked[static_cast<std::size_t>(total)] > std::chrono::seconds(60)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
    const auto start = steady::now();
    for (int i = 1; i <= total; ++i) {
      std::this_thread::sleep_until(start + std::chrono::microseconds(1000) * i);
      protocol::params p;
      p.positional = {std::int64_t{i}, std::int64_t{i}};
      auto r = c->query("INSERT INTO bench_lag VALUES (?, ?)", p);
      if (!r) throw std::runtime_error("insert failed: " + r.error().message);
      acked[static_cast<std::size_t>(i)] = steady::now();
      seq_of[static_cast<std::size_t>(i)] = r->meta.at.seq;
      acked_upto.store(i, std::memory_order_release);
    }
    const double rate = total / std::chrono::duration<double>(steady::now() - start).count();
    done = true;
    watcher.join();
    applied_watcher.join();
    // Lags in ms from each write's acknowledgement to `when` it was seen, sorted.
    const auto lags_of = [&](const std::vector<steady::time_point>& when) {
      std::vector<double> lags;
      for (int i = 1; i <= total; ++i) {
        if (when[static_cast<std::size_t>(i)] == steady::time_point{}) continue;
        lags.push_back(std::chrono::duration<double, std::milli>(when[static_cast<std::size_t>(i)] - acked[static_cast<std::size_t>(i)]).count());
      }
      std::sort(lags.begin(), lags.end());
      return lags;
    };
    const auto report = [&](const char* what, const std::vector<double>& lags) {
      auto pct = [&](double q) { return lags.empty() ? 0.0 : lags[static_cast<std::size_t>(q * static_cast<double>(lags.size() - 1))]; };
      std::printf("replication lag at %.0f writes/s (%d writes), %s: p50 %.1f ms, p99 %.1f ms, max %.1f ms (target p99 < 50 ms)\n", rate,
                  total, what, pct(0.5), pct(0.99), lags.empty() ? 0.0 : lags.back());
    };
    std::printf("%s\n", std::string(100, '-').c_str());
    report("applied on D1 (tandem_applied_seq)", lags_of(applied));
    report("seen by a reader polling D1", lags_of(seen));
    (*d1)->shutdown();
  }
  return 0;
}

// Where the bench sends its requests: a tandem it starts on a copy of the floor's rows, or the
// one at --url, loaded over the wire.
protocol::client_options bench_target(const bench_options& o, const fs::path& dir, const std::string& binary,
                                      std::unique_ptr<child_server>& child) {
  const std::string tandem_db = (dir / "tandem.db").string();
  protocol::client_options copts;
  if (o.url.empty()) {
    load(tandem_db, o.rows, o.synchronous);
    const std::string conf = (dir / "bench.jsonc").string();
    std::ofstream(conf) << "{ \"listen\": {\"host\": \"127.0.0.1\", \"port\": 0},\n"
                        << "  \"sqlite\": {\"path\": \"" << tandem_db << "\", \"synchronous\": \"" << o.synchronous << "\"},\n"
                        << "  \"limits\": {\"max_connections\": 4096}, \"admin\": {\"enabled\": false}, \"control\": {\"enabled\": false} }\n";
    child = std::make_unique<child_server>(binary, conf);
    copts.port = child->port();
  } else {
    auto parsed = protocol::parse_url(o.url);
    if (!parsed) throw std::runtime_error(parsed.error().message);
    copts = *parsed;
    if (!o.token_env.empty() && std::getenv(o.token_env.c_str())) copts.token = std::getenv(o.token_env.c_str());
    auto c = connect_or_throw(copts);
    for (const char* sql : {"CREATE TABLE IF NOT EXISTS bench(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, payload BLOB)",
                            "CREATE TABLE IF NOT EXISTS bench_insert(id INTEGER PRIMARY KEY, worker INTEGER, n INTEGER, name TEXT)"})
      if (auto r = c->query(sql); !r) throw std::runtime_error(r.error().message);
    // Loading over the wire, in batches.
    for (int i = 1; i <= o.rows; i += 500) {
      std::vector<protocol::statement> sts;
      for (int k = i; k < i + 500 && k <= o.rows; ++k) {
        protocol::statement st{"INSERT OR REPLACE INTO bench VALUES (?, ?, ?, randomblob(32))", {}};
        st.params.positional = {std::int64_t{k}, "user-" + std::to_string(k), k * 0.5};
        sts.push_back(std::move(st));
      }
      if (auto r = c->batch(std::move(sts)); !r) throw std::runtime_error(r.error().message);
    }
  }
  return copts;
}

void report_memory(child_server& child, const protocol::client_options& copts, const bench_options& o) {
  // Memory: the resident set at rest, its peak under 64 busy connections, then with 1,000
  // idle ones (each has sent a ping and stays open).
  const pid_t pid = child.pid();
  const long rest = rss_kib(pid);
  std::atomic<long> peak{rest};
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling) {
      peak = std::max(peak.load(), rss_kib(pid));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  measure(64, o.seconds, [&](int i) { return tandem_select(copts, o.rows, i); });
  sampling = false;
  sampler.join();
  const long busy = peak.load();
  const long before_idle = rss_kib(pid);
  std::vector<int> idle;
  for (int i = 0; i < 1000; ++i) {
    const int fd = idle_connection(copts.port);
    if (fd >= 0) idle.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const long with_idle = rss_kib(pid);
  for (int fd : idle) ::close(fd);
  std::printf("memory: tandem RSS %ld KiB at rest, %ld KiB at peak with 64 busy connections, +%ld KiB with %zu idle connections "
              "(%.1f KiB per idle connection, target < 64)\n",
              rest, busy, with_idle - before_idle, idle.size(),
              idle.empty() ? 0.0 : static_cast<double>(with_idle - before_idle) / static_cast<double>(idle.size()));
}

}  // namespace

int run_bench(const bench_options& o) {
  try {
    fs::path dir = o.dir.empty() ? fs::temp_directory_path() / ("tandem-bench-" + std::to_string(::getpid())) : fs::path(o.dir);
    fs::create_directories(dir);
    const std::string binary = o.tandem_binary.empty() ? fs::read_symlink("/proc/self/exe").string() : o.tandem_binary;
    if (o.store == "d1" || o.store == "dual") {
      const int status = o.store == "d1" ? run_d1_bench(o, dir, binary) : run_dual_bench(o, dir, binary);
      if (o.dir.empty()) fs::remove_all(dir);
      return status;
    }
    const std::string floor_db = (dir / "floor.db").string();
    load(floor_db, o.rows, o.synchronous);

    std::unique_ptr<child_server> child;
    const protocol::client_options copts = bench_target(o, dir, binary, child);

    std::printf("tandem bench: %d rows, %.1f s per run, synchronous=%s, %u cores\n", o.rows, o.seconds,
                o.synchronous.c_str(), std::thread::hardware_concurrency());
    std::printf("%-14s %5s | %-28s | %-28s | %s\n", "workload", "conns", "  floor: ops/s  p50 us  p99 us",
                " tandem: ops/s  p50 us  p99 us", "tandem/floor");
    std::printf("%s\n", std::string(100, '-').c_str());

    echo_server echo;
    auto redis = redis_reference::start();
    figures select16_tandem, select64_tandem, echo16, ping16_tandem, redis16;
    // A tandem measurement, with tandem's own CPU per request when this bench started it.
    const auto through_tandem = [&](const char* workload, int n) {
      const double before = child ? cpu_seconds(child->pid()) : 0;
      figures t = measure_tandem(copts, workload, n, o.seconds, o.rows);
      if (child && t.requests > 0) t.server_cpu_us = (cpu_seconds(child->pid()) - before) * 1e6 / static_cast<double>(t.requests);
      return t;
    };
    figures insert16_cpu;
    const auto wants = [&o](const char* w) { return std::find(o.workloads.begin(), o.workloads.end(), w) != o.workloads.end(); };
    for (int n : o.connections) {
      if (!wants("ping")) break;
      auto e = measure_loop(echo.port(), n, o.seconds, [](int) { return std::string(k_ping_line); }, "{\"ok\":true");
      auto t = through_tandem("ping", n);
      row("ping (vs echo)", n, e, t);
      if (redis) {
        auto r = redis->ping(n, o.seconds);
        row("ping (vs redis)", n, r, t);
        if (n == 16) redis16 = r;
      }
      if (n == 16) echo16 = e, ping16_tandem = t;
    }
    figures select1_floor, select1_tandem;
    for (int n : o.connections) {
      if (!wants("select")) break;
      auto f = measure(n, o.seconds, [&](int i) { return inproc_select(floor_db, o.rows, o.synchronous, i); });
      auto t = through_tandem("select", n);
      row("point-select", n, f, t);
      if (n == 1) select1_floor = f, select1_tandem = t;
      if (n == 16) select16_tandem = t;
      if (n == 64) select64_tandem = t;
    }
    figures insert1_floor, insert64_floor, insert64_tandem;
    for (int n : o.connections) {
      if (!wants("insert")) break;
      auto f = measure(n, o.seconds, [&](int i) { return inproc_insert(floor_db, o.synchronous, i); });
      auto t = through_tandem("insert", n);
      row("insert", n, f, t);
      if (n == 1) insert1_floor = f;
      if (n == 16) insert16_cpu = t;
      if (n == 64) insert64_floor = f, insert64_tandem = t;
    }
    std::printf("%s\n", std::string(100, '-').c_str());
    std::printf("floor for ping = a minimal blocking TCP request/response server in this process%s;\n"
                "floor for point-select/insert = in-process SQLite (insert: one transaction per row).\n"
                "client for the echo and tandem rows = one thread with epoll, one request in flight per connection (redis-benchmark's shape).\n",
                redis ? ", or redis-server under redis-benchmark -t ping_inline (its own client, same connections)" : "");
    if (!redis) std::printf("(redis-server and redis-benchmark are not on PATH: no redis PING reference)\n");
    if (select16_tandem.ran && echo16.ran)
      std::printf("point-select at 16 conns vs minimal TCP server at 16 conns: %.2f\n", select16_tandem.ops / echo16.ops);
    if (select16_tandem.ran && ping16_tandem.ran)
      std::printf("point-select at 16 conns vs tandem's own ping at 16 conns: %.2f (target >= 0.8)\n",
                  select16_tandem.ops / ping16_tandem.ops);
    if (select16_tandem.ran && redis16.ran)
      std::printf("point-select at 16 conns vs redis PING at 16 conns: %.2f (target >= 0.6)\n", select16_tandem.ops / redis16.ops);
    if (select64_tandem.ran)
      std::printf("point-select p99 at 64 conns: %.0f us (target < 1000)\n", select64_tandem.p99_us);
    if (ping16_tandem.server_cpu_us > 0 && select16_tandem.server_cpu_us > 0) {
      std::printf("tandem's own CPU per request at 16 conns: ping %.1f us, point-select %.1f us (%.1f us over ping)",
                  ping16_tandem.server_cpu_us, select16_tandem.server_cpu_us, select16_tandem.server_cpu_us - ping16_tandem.server_cpu_us);
      if (insert16_cpu.server_cpu_us > 0) std::printf(", insert %.0f us", insert16_cpu.server_cpu_us);
      std::printf("\n");
    }
    if (select1_tandem.ran && select1_floor.ran)
      std::printf("p50 added over in-process SQLite at 1 conn: %.1f us (target < 25)\n",
                  select1_tandem.p50_us - select1_floor.p50_us);
    if (insert64_tandem.ran && insert64_floor.ran)
      std::printf("insert at 64 conns: group commit vs 64 writers with one transaction per insert: %.1fx (target >= 15 with synchronous=FULL)\n",
                  insert64_tandem.ops / insert64_floor.ops);
    if (insert64_tandem.ran && insert1_floor.ran)
      std::printf("insert at 64 conns: group commit vs the best single writer with one transaction per insert: %.1fx\n",
                  insert64_tandem.ops / insert1_floor.ops);
    if (child && wants("select")) report_memory(*child, copts, o);
    if (child) child->stop();
    if (o.dir.empty()) fs::remove_all(dir);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench failed: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace tandem::tools
