#include "tests/support/test_support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <condition_variable>
#include <mutex>
#include <random>

#include <boost/asio/ip/tcp.hpp>
#include <boost/json/parse.hpp>

#include "protocol/codec.hpp"
#include "tests/support/eventually.hpp"
#include "tools/ctl.hpp"

namespace tandem::testing {

temp_dir::temp_dir() {
  static std::atomic<int> counter{0};
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("tandem-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

proxy::server_options test_server::default_options() {
  proxy::server_options o;
  o.listen.host = "127.0.0.1";
  o.listen.port = 0;
  return o;
}

test_server::test_server(proxy::server_options options, backends::sqlite_store_options store)
    : options_(options) {
  db_path_ = dir_.file("test.db");
  store.db.path = db_path_;
  auto s = backends::sqlite_store::open(store);
  if (!s) throw std::runtime_error(s.error().message);
  start(std::make_unique<proxy::router>(std::unique_ptr<backends::store>(std::move(*s))));
}

test_server::test_server(proxy::server_options options, std::unique_ptr<backends::store> store)
    : options_(options) {
  start(std::make_unique<proxy::router>(std::move(store)));
}

test_server::test_server(proxy::server_options options, std::unique_ptr<proxy::router> route)
    : options_(options) {
  start(std::move(route));
}

void test_server::start(std::unique_ptr<proxy::router> route) {
  router_ = std::move(route);
  server_ = std::make_unique<proxy::server>(pool_, options_, *router_);
  port_ = server_->start().port();
  pool_.start();
  control_thread_ = std::thread([this] { pool_.control().run(); });
}

test_server::~test_server() { stop(); }

void test_server::stop() {
  if (stopped_) return;
  stopped_ = true;
  // Shared, not on this stack: the callback may still be returning when the wait below ends.
  struct stop_state {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto st = std::make_shared<stop_state>();
  server_->stop([st] {
    std::lock_guard lock(st->mu);
    st->done = true;
    st->cv.notify_all();
  });
  {
    // The sessions' I/O threads keep their contexts until pool_.join(): the callback comes.
    std::unique_lock lock(st->mu);
    st->cv.wait(lock, [&] { return st->done; });
  }
  control_thread_.join();
  pool_.join();
  router_->shutdown();
}

protocol::client_options test_server::client_options() const {
  protocol::client_options o;
  o.host = "127.0.0.1";
  o.port = port_;
  o.tls = options_.tls.enabled;
  return o;
}

std::unique_ptr<protocol::client> test_server::connect() const {
  auto c = protocol::client::connect(client_options());
  EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().message);
  if (!c) return nullptr;
  return std::move(*c);
}

raw_connection::raw_connection(std::uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("connect failed");
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

raw_connection::~raw_connection() { close(); }

void raw_connection::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void raw_connection::send(const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;  // the peer closed; reads will tell
    off += static_cast<std::size_t>(n);
  }
}

std::optional<std::string> raw_connection::read_line() {
  for (;;) {
    if (auto nl = buf_.find('\n'); nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return line;
    }
    char tmp[65536];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return std::nullopt;
    buf_.append(tmp, static_cast<std::size_t>(n));
  }
}

bool raw_connection::wait_closed() {
  while (read_line()) {
  }
  char c;
  return ::recv(fd_, &c, 1, 0) <= 0;
}

protocol::response parse_response(const std::string& line) {
  auto r = protocol::decode_response(line);
  if (auto* why = std::get_if<std::string>(&r)) {
    ADD_FAILURE() << "not a response: " << *why << ": " << line;
    return {};
  }
  return std::get<protocol::response>(r);
}

std::string code_of(const std::string& line) {
  auto r = parse_response(line);
  if (auto* e = std::get_if<protocol::error>(&r.body)) return std::string(protocol::to_string(e->code));
  return "OK";
}

command_result run_shell(const std::string& command) {
  command_result r;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  while (auto n = std::fread(buf, 1, sizeof buf, p)) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::uint16_t free_port() {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::acceptor a(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

void proxy_process::start() {
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::close(out[1]);
    if (!stderr_.empty()) {
      const int err = ::open(stderr_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (err >= 0) ::dup2(err, 2);
    }
    std::vector<const char*> argv{binary_.c_str(), "serve", "--config", config_.c_str(), "--log-level", "warn"};
    for (const auto& a : args_) argv.push_back(a.c_str());
    argv.push_back(nullptr);
    ::execv(binary_.c_str(), const_cast<char* const*>(argv.data()));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string seen;
  char buf[256];
  while (seen.find("tandem listening on") == std::string::npos) {
    const auto n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    seen.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  started_ = seen.find("tandem listening on") != std::string::npos;
  if (!started_) ADD_FAILURE() << "tandem did not start: " << seen;
}

void proxy_process::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

void proxy_process::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void proxy_process::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

boost::json::object control_ask(const std::string& path, const std::string& line) {
  std::string error;
  auto answer = tools::control_exchange(path, line, error);
  EXPECT_TRUE(answer) << error;
  if (!answer) return {{"ok", false}, {"error", error}};
  return boost::json::parse(*answer).as_object();
}

boost::json::object wait_for_control_event(const std::string& socket_path, const std::string& command) {
  boost::json::object found;
  auto seen = [&] {
    auto status = control_ask(socket_path, "status");
    if (const auto* events = status.if_contains("events")) {
      const auto& list = events->as_array();
      for (auto e = list.rbegin(); e != list.rend(); ++e) {
        if (e->at("command").as_string() == command) {
          found = e->as_object();
          return true;
        }
      }
    }
    return false;
  };
  EXPECT_TRUE(eventually("an event '" + command + "' in the status of " + socket_path, seen, k_eventually_bound,
                         std::chrono::milliseconds(25)));
  return found;
}

}  // namespace tandem::testing
