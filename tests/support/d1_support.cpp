#include "tests/support/d1_support.hpp"

#include <sqlite3.h>
#include <algorithm>

#include "backends/journal.hpp"
#include "proxy/replicator.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <cstdio>
#include <mutex>
#include <thread>

#include "backends/sqlite_store.hpp"

namespace tandem::testing {
namespace asio = boost::asio;

namespace {

std::string run_command(const std::string& cmd) {
  auto r = run_shell(cmd);
  if (r.status != 0) throw std::runtime_error("command failed (" + std::to_string(r.status) + "): " + cmd + "\n" + r.output);
  return r.output;
}

std::string script_dir() { return std::string(TANDEM_SOURCE_DIR) + "/tools/d1-local"; }

}  // namespace

local_d1& local_d1::instance() {
  static local_d1 d1;
  return d1;
}

local_d1::local_d1() {
  start();
  std::fprintf(stderr, "local D1 at %s; D1 tests reach it over the %s transport (TANDEM_D1_TRANSPORT)\n", url_.c_str(),
               std::string(backends::transport_name(transport())).c_str());
}

local_d1::~local_d1() { stop(); }

void local_d1::start() {
  const std::string port_arg = port_.empty() ? "" : " --port " + port_;
  auto out = run_command(script_dir() + "/start.sh --state " + state_.path().string() + port_arg + " 2>&1");
  const auto at = out.rfind("http://127.0.0.1:");
  if (at == std::string::npos) throw std::runtime_error("local D1 did not start: " + out);
  url_ = out.substr(at);
  while (!url_.empty() && (url_.back() == '\n' || url_.back() == '\r')) url_.pop_back();
  port_ = url_.substr(url_.rfind(':') + 1);
}

void local_d1::stop() { run_command(script_dir() + "/stop.sh --state " + state_.path().string() + " 2>&1"); }

std::string local_d1::fresh_database() {
  char id[64];
  std::snprintf(id, sizeof id, "00000000-0000-4000-8000-0000000000%02d", next_++ % 32);
  run_command("curl -sf --retry 2 --max-time 30 -X POST -H 'Authorization: Bearer " + std::string(k_d1_token) + "' " + url_ +
              "/client/v4/accounts/" + k_d1_account + "/d1/database/" + id + "/reset -o /dev/null");
  return id;
}

backends::d1_transport local_d1::transport() {
  static const auto t = [] {
    const char* v = std::getenv("TANDEM_D1_TRANSPORT");
    const auto parsed = backends::parse_transport(v != nullptr && *v != '\0' ? v : "rest");
    if (!parsed) throw std::runtime_error(std::string("TANDEM_D1_TRANSPORT must be rest or bridge, not ") + v);
    return *parsed;
  }();
  return t;
}

std::string local_d1::tools_endpoint() const {
  return transport() == backends::d1_transport::bridge ? url_ + "/bridge/{database_id}" : url_;
}

std::string local_d1::config_members(const std::string& database_id, const std::string& token_env) const {
  const bool bridge = transport() == backends::d1_transport::bridge;
  return std::string("\"transport\": \"") + (bridge ? "bridge" : "rest") + "\", \"endpoint\": \"" +
         (bridge ? url_ + "/bridge/" + database_id : url_) + "\", " +
         (bridge ? std::string() : std::string("\"account_id\": \"") + k_d1_account + "\", \"database_id\": \"" + database_id + "\", ") +
         "\"token_env\": \"" + token_env + "\"";
}

backends::d1_options local_d1::options(const std::string& database_id, const std::string& base) const {
  backends::d1_options o;
  o.transport = transport();
  o.endpoint = (base.empty() ? url_ : base) + (o.transport == backends::d1_transport::bridge ? "/bridge/{database_id}" : "");
  o.account_id = k_d1_account;
  o.database_id = database_id;
  o.api_token = k_d1_token;
  o.backoff_base = std::chrono::milliseconds(20);
  o.backoff_max = std::chrono::milliseconds(200);
  return o;
}

std::unique_ptr<backends::store> make_store(const std::string& kind, const temp_dir& dir) {
  if (kind == "d1") {
    auto& d1 = local_d1::instance();
    auto s = backends::d1_store::open(d1.options(d1.fresh_database()));
    if (!s) throw std::runtime_error(s.error().message);
    return std::move(*s);
  }
  backends::sqlite_store_options o;
  o.db.path = dir.file("store.db");
  auto s = backends::sqlite_store::open(o);
  if (!s) throw std::runtime_error(s.error().message);
  return std::move(*s);
}

void local_d1::inject_fault(const std::string& database_id, const std::string& fault_json) {
  const std::string cmd = "curl -sf --max-time 10 -X POST -H 'Authorization: Bearer " + std::string(k_d1_token) + "' " + url_ +
                          "/client/v4/accounts/" + k_d1_account + "/d1/database/" + database_id + "/fault -d '" + fault_json +
                          "' -o /dev/null";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

int local_d1::faulted_requests_finished(const std::string& database_id) {
  const std::string cmd = "curl -sf --max-time 10 -X POST -H 'Authorization: Bearer " + std::string(k_d1_token) + "' " + url_ +
                          "/client/v4/accounts/" + k_d1_account + "/d1/database/" + database_id + "/fault -d '{\"status\":true}'";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  const auto at = out.find("\"finished\":");
  EXPECT_NE(at, std::string::npos) << out;
  return at == std::string::npos ? -1 : std::atoi(out.c_str() + at + 11);
}

dual_router make_dual_router(const temp_dir& dir, proxy::router_options options, std::string database, std::string d1_endpoint,
                             backends::sqlite_store_options so) {
  so.db.path = dir.file("dual.db");
  so.follower_row_limit = true;
  auto s = backends::sqlite_store::open(so);
  if (!s) throw std::runtime_error(s.error().message);
  auto& d1 = local_d1::instance();
  if (database.empty()) database = d1.fresh_database();
  auto d1_options = d1.options(database, d1_endpoint);
  auto d = backends::d1_store::open(d1_options);
  if (!d) throw std::runtime_error(d.error().message);
  dual_router out;
  out.sqlite = s->get();
  out.d1 = d->get();
  out.database = database;
  options.replication.retry_min = std::chrono::milliseconds(20);
  options.replication.retry_max = std::chrono::milliseconds(200);
  out.route = std::make_unique<proxy::router>(std::move(*s), std::move(*d), options);
  return out;
}

// ---- comparing stores ---------------------------------------------------------------------------

using protocol::value;

// The rows of `table` on a store, ordered by rowid (or the key), as a comparable value.
std::vector<std::vector<value>> rows_of(backends::store& s, const std::string& table) {
  backends::exec_options o;
  o.internal = true;
  auto r = proxy::run_batch(s, {{"SELECT * FROM " + backends::quote_identifier(table) + " ORDER BY 1", {}}}, o);
  EXPECT_TRUE(r) << s.name() << " " << table << ": " << (r ? "" : r.error().message);
  return r ? r->at(0).rows : std::vector<std::vector<value>>{};
}

std::vector<std::string> user_tables(backends::store& s) {
  backends::exec_options o;
  o.internal = true;
  auto r = proxy::run_batch(
      s, {{"SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
           "AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE '\\_tandem\\_%' ESCAPE '\\' ORDER BY name", {}}}, o);
  std::vector<std::string> out;
  if (r) for (const auto& row : r->at(0).rows) out.push_back(std::get<std::string>(row[0]));
  return out;
}

namespace {

// A REAL as exact text, "<integer mantissa>p<power of two>": printf('%!.17g') is not exact in
// every SQLite (Debian's 3.40 misprints some large and tiny doubles, and differs from D1's).
// Dividing by a power of two is exact; the CASE corrects a log2() that rounded across a power
// of two, so both stores give the same text for the same double.
std::string exact_real(const std::string& q) {
  const std::string m = "(" + q + " / pow(2.0, e))";
  return "CASE WHEN " + q + " = 0 THEN '0' WHEN " + q + " = 9e999 THEN 'Inf' WHEN " + q + " = -9e999 THEN '-Inf' ELSE (SELECT CASE " +
         "WHEN abs(" + m + ") >= 9007199254740992.0 THEN CAST(CAST(" + m + " / 2 AS INTEGER) AS TEXT) || 'p' || (e + 1) " +
         "WHEN abs(" + m + ") < 4503599627370496.0 AND e > -1074 THEN CAST(CAST(" + m + " * 2 AS INTEGER) AS TEXT) || 'p' || (e - 1) " +
         "ELSE CAST(CAST(" + m + " AS INTEGER) AS TEXT) || 'p' || e END FROM (SELECT max(CAST(floor(log2(abs(" + q +
         "))) AS INTEGER) - 52, -1074) AS e)) END";
}

// Every cell as (type, exact text): D1 answers integers beyond 2^53 as doubles, so cells are
// compared through SQL that makes text of them, the same SQL on both stores.
std::string exact_select(backends::store& schema_source, const std::string& table) {
  backends::exec_options o;
  o.internal = true;
  auto cols = proxy::run_batch(schema_source, {{"SELECT name FROM pragma_table_info(?) ORDER BY cid", {{std::string(table)}, {}, false}}}, o);
  EXPECT_TRUE(cols);
  std::string select, order;
  int n = 0;
  for (const auto& row : cols->at(0).rows) {
    const auto q = backends::quote_identifier(std::get<std::string>(row[0]));
    select += (select.empty() ? "" : ", ") + ("typeof(" + q + "), CASE typeof(" + q + ") WHEN 'blob' THEN hex(" + q +
                                              ") WHEN 'real' THEN " + exact_real(q) + " ELSE CAST(" + q + " AS TEXT) END");
    order += (order.empty() ? "" : ", ") + std::to_string(2 * ++n);
  }
  return "SELECT " + select + " FROM " + backends::quote_identifier(table) + " ORDER BY " + order;
}

std::vector<std::vector<value>> run_rows(backends::store& s, const std::string& sql) {
  backends::exec_options o;
  o.internal = true;
  auto r = proxy::run_batch(s, {{sql, {}}}, o);
  EXPECT_TRUE(r) << s.name() << ": " << (r ? "" : r.error().message);
  return r ? r->at(0).rows : std::vector<std::vector<value>>{};
}

}  // namespace

// Table by table, row by row, cell by cell (type and exact value).
void expect_equal_stores(backends::store& a, backends::store& b) {
  const auto tables = user_tables(a);
  EXPECT_EQ(tables, user_tables(b));
  for (const auto& t : tables) {
    const auto sql = exact_select(a, t);
    EXPECT_EQ(run_rows(a, sql), run_rows(b, sql)) << "table " << t;
  }
}


bool expect_identical_stores(backends::store& a, backends::store& b) {
  bool same = true;
  auto show = [](const std::vector<value>& row) {
    std::string out;
    for (const auto& v : row) {
      std::string cell = v.index() == 0 ? "NULL" : v.index() == 1 ? std::to_string(std::get<std::int64_t>(v)) : v.index() == 3 ? std::get<std::string>(v) : "?";
      if (cell.size() > 60) cell = cell.substr(0, 60) + "…(" + std::to_string(cell.size()) + " chars)";
      out += (out.empty() ? "" : " | ") + cell;
    }
    return out;
  };
  // Compared a page at a time: a D1 answer has to fit the HTTP client's body limit (8 MB), and
  // rows of large blobs come back as JSON arrays of bytes.
  auto expect_same = [&](const std::string& sql, const std::string& what) {
    constexpr std::size_t k_page = 20;
    for (std::size_t offset = 0;; offset += k_page) {
      const std::string page = sql + " LIMIT " + std::to_string(k_page) + " OFFSET " + std::to_string(offset);
      const auto ra = run_rows(a, page), rb = run_rows(b, page);
      if (ra != rb) {
        same = false;
        std::size_t i = 0;
        while (i < ra.size() && i < rb.size() && ra[i] == rb[i]) ++i;
        ADD_FAILURE() << what << " differs at row " << offset + i << ":\n  " << a.name() << ": " << (i < ra.size() ? show(ra[i]) : "(none)")
                      << "\n  " << b.name() << ": " << (i < rb.size() ? show(rb[i]) : "(none)");
        return;
      }
      if (ra.size() < k_page) return;
    }
  };
  expect_same("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
              "AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE '\\_tandem\\_%' ESCAPE '\\' ORDER BY type, name",
              "the schema");
  const auto tables = user_tables(a);
  if (std::find(tables.begin(), tables.end(), std::string("sqlite_sequence")) == tables.end()) {
    backends::exec_options o;
    o.internal = true;
    auto has = proxy::run_batch(a, {{"SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_sequence'", {}}}, o);
    if (has && has->at(0).rows[0][0] == value{std::int64_t{1}})
      expect_same("SELECT name, seq FROM sqlite_sequence WHERE name NOT LIKE '\\_tandem\\_%' ESCAPE '\\' ORDER BY name", "sqlite_sequence");
  }
  for (const auto& t : tables) {
    backends::exec_options o;
    o.internal = true;
    auto cols = proxy::run_batch(a, {{"SELECT name FROM pragma_table_xinfo(?) ORDER BY cid", {{std::string(t)}, {}, false}}}, o);
    auto kind = proxy::run_batch(a, {{"SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?", {{std::string(t)}, {}, false}}}, o);
    if (!cols || !kind || kind->at(0).rows.empty()) {
      ADD_FAILURE() << "cannot read the shape of " << t;
      return false;
    }
    std::vector<std::string> names;
    for (const auto& row : cols->at(0).rows) names.push_back(std::get<std::string>(row[0]));
    if (kind->at(0).rows[0][0] == value{std::int64_t{0}}) {
      for (const char* r : {"rowid", "_rowid_", "oid"}) {
        if (std::none_of(names.begin(), names.end(), [&](const std::string& n) { return sqlite3_stricmp(n.c_str(), r) == 0; })) {
          names.insert(names.begin(), r);
          break;
        }
      }
    }
    std::string select, order;
    int n = 0;
    for (const auto& name : names) {
      const auto q = backends::quote_identifier(name);
      select += (select.empty() ? "" : ", ") + ("typeof(" + q + "), CASE typeof(" + q + ") WHEN 'blob' THEN " + q +
                                                " WHEN 'real' THEN " + exact_real(q) + " || CASE WHEN " + q + " = 0 AND atan2(" + q +
                                                ", -1.0) < 0 THEN ' negative' ELSE '' END WHEN 'text' THEN hex(" + q + ") ELSE CAST(" + q +
                                                " AS TEXT) END");
      order += (order.empty() ? "" : ", ") + std::to_string(2 * ++n);
    }
    expect_same("SELECT " + select + " FROM " + backends::quote_identifier(t) + " ORDER BY " + order, "table " + t);
  }
  return same;
}

// ---- scripted_http_server ----------------------------------------------------------------------

struct scripted_http_server::impl {
  asio::io_context ioc;
  asio::ip::tcp::acceptor acceptor{ioc};
  asio::ssl::context tls{asio::ssl::context::tls_server};
  bool use_tls = false;
  std::thread thread;
  std::mutex mu;
  std::vector<std::shared_ptr<asio::ip::tcp::socket>> open;  // closed on destruction (unhangs)
  std::atomic<bool> stopping{false};
};

scripted_http_server::scripted_http_server(script s, std::string cert_file, std::string key_file)
    : impl_(std::make_unique<impl>()) {
  auto& m = *impl_;
  if (!cert_file.empty()) {
    m.use_tls = true;
    m.tls.use_certificate_chain_file(cert_file);
    m.tls.use_private_key_file(key_file, asio::ssl::context::pem);
  }
  asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  m.acceptor.open(ep.protocol());
  m.acceptor.bind(ep);
  m.acceptor.listen();
  m.thread = std::thread([this, s = std::move(s)] {
    auto& m = *impl_;
    std::vector<std::thread> handlers;
    for (;;) {
      auto sock = std::make_shared<asio::ip::tcp::socket>(m.ioc);
      boost::system::error_code ec;
      m.acceptor.accept(*sock, ec);
      if (ec || m.stopping) break;
      ++connections_;
      {
        std::lock_guard lock(m.mu);
        m.open.push_back(sock);
      }
      handlers.emplace_back([this, sock, &s] {
        auto& m = *impl_;
        std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket&>> tls;
        boost::system::error_code ec;
        if (m.use_tls) {
          tls = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(*sock, m.tls);
          tls->handshake(asio::ssl::stream_base::server, ec);
          if (ec) return;
        }
        asio::streambuf in;
        for (;;) {
          const std::size_t head = tls ? asio::read_until(*tls, in, "\r\n\r\n", ec) : asio::read_until(*sock, in, "\r\n\r\n", ec);
          if (ec) return;
          std::string headers(asio::buffers_begin(in.data()), asio::buffers_begin(in.data()) + head);
          in.consume(head);
          std::size_t length = 0;
          if (auto p = headers.find("Content-Length: "); p != std::string::npos) length = std::stoul(headers.substr(p + 16));
          while (in.size() < length) {
            auto more = in.prepare(length - in.size());
            const std::size_t n = tls ? tls->read_some(more, ec) : sock->read_some(more, ec);
            if (ec) return;
            in.commit(n);
          }
          std::string body(asio::buffers_begin(in.data()), asio::buffers_begin(in.data()) + length);
          in.consume(length);
          const int n = ++requests_;
          const std::string answer = s(n, headers + body);
          if (answer == "CLOSE") {
            sock->close(ec);
            return;
          }
          if (answer == "HANG") {
            char byte;
            sock->read_some(asio::buffer(&byte, 1), ec);  // until the client or the destructor closes it
            return;
          }
          if (tls) asio::write(*tls, asio::buffer(answer), ec);
          else asio::write(*sock, asio::buffer(answer), ec);
          if (ec) return;
        }
      });
    }
    for (auto& h : handlers) h.join();
  });
}

scripted_http_server::~scripted_http_server() {
  auto& m = *impl_;
  m.stopping = true;
  boost::system::error_code ec;
  {
    std::lock_guard lock(m.mu);
    for (auto& s : m.open) {
      s->shutdown(asio::ip::tcp::socket::shutdown_both, ec);
      s->close(ec);
    }
  }
  // Wake the blocking accept with a connection of our own.
  asio::ip::tcp::socket poke(m.ioc);
  poke.connect(m.acceptor.local_endpoint(), ec);
  m.thread.join();
}

std::string scripted_http_server::url() const {
  return std::string(impl_->use_tls ? "https" : "http") + "://" + (impl_->use_tls ? "localhost" : "127.0.0.1") + ":" +
         std::to_string(impl_->acceptor.local_endpoint().port());
}

std::string scripted_http_server::http(int status, const std::string& body, const std::string& extra_headers) {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

std::string scripted_http_server::d1_ok(const std::string& columns_json, const std::string& rows_json) {
  return http(200, R"({"success":true,"errors":[],"messages":[],"result":[{"success":true,"meta":{"changes":0,"last_row_id":0,"rows_read":1,"rows_written":0,"duration":0.1},"results":{"columns":)" +
                       columns_json + ",\"rows\":" + rows_json + "}}]}");
}

slow_http_proxy::slow_http_proxy(std::string target_url)
    : server_([this](int, const std::string& request) {
        if (unreachable_) return std::string("CLOSE");
        {
          std::lock_guard lock(mu_);
          requests_.push_back(request);
        }
        // Forward with "Connection: close" and read the whole answer to EOF.
        std::string forwarded = request;
        const auto line_end = forwarded.find("\r\n");
        forwarded.insert(line_end + 2, "Connection: close\r\n");
        if (auto p = forwarded.find("Connection: keep-alive\r\n"); p != std::string::npos) forwarded.erase(p, 24);
        std::string answer;
        try {
          asio::io_context ioc;
          asio::ip::tcp::socket sock(ioc);
          asio::connect(sock, asio::ip::tcp::resolver(ioc).resolve(host_, port_));
          asio::write(sock, asio::buffer(forwarded));
          // One answer: its head, then Content-Length bytes or chunks up to the last one (the
          // server may keep the connection open despite "Connection: close").
          boost::system::error_code ec;
          char buf[16384];
          auto complete = [&] {
            const auto head = answer.find("\r\n\r\n");
            if (head == std::string::npos) return false;
            std::string lower = answer.substr(0, head);
            for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            if (auto p = lower.find("content-length:"); p != std::string::npos) {
              return answer.size() >= head + 4 + std::stoul(lower.substr(p + 15));
            }
            if (lower.find("chunked") != std::string::npos) return answer.find("\r\n0\r\n\r\n", head) != std::string::npos;
            return false;  // neither: read to EOF
          };
          while (!complete()) {
            const std::size_t n = sock.read_some(asio::buffer(buf), ec);
            answer.append(buf, n);
            if (ec) break;
          }
        } catch (const std::exception&) {
          return std::string("CLOSE");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_.load()));
        return answer.empty() ? std::string("CLOSE") : answer;
      }) {
  // "http://host:port"
  const auto hostport = target_url.substr(target_url.find("//") + 2);
  host_ = hostport.substr(0, hostport.find(':'));
  port_ = hostport.substr(hostport.find(':') + 1);
  if (auto slash = port_.find('/'); slash != std::string::npos) port_.resize(slash);
}

}  // namespace tandem::testing
