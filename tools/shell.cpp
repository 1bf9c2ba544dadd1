#include "tools/shell.hpp"

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "protocol/client.hpp"
#include "protocol/codec.hpp"
#include "protocol/text.hpp"

namespace tandem::tools {
namespace {

using protocol::query_result;
using protocol::value;

std::string display(const value& v) {
  switch (v.index()) {
    case 0: return "NULL";
    case 1: return std::to_string(std::get<std::int64_t>(v));
    case 2: {
      std::string s;
      protocol::append_value(s, v);
      return s;
    }
    case 3: return std::get<std::string>(v);
    default: {
      const auto& b = std::get<protocol::blob>(v).bytes;
      std::string s = "X'";
      protocol::append_hex(s, b);
      return s + "'";
    }
  }
}

// Display width in terminal columns, counting UTF-8 code points (good enough for a shell).
std::size_t width(const std::string& s) {
  return static_cast<std::size_t>(std::count_if(s.begin(), s.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

class shell {
 public:
  shell(std::unique_ptr<protocol::client> c, const shell_options& o) : client_(std::move(c)), mode_(o.mode), bail_(o.bail) {}

  // Feeds one line of input; returns false when the shell should quit.
  bool feed(const std::string& line) {
    if (pending_.empty()) {
      const auto first = line.find_first_not_of(" \t");
      if (first != std::string::npos && line[first] == '.') return dot(line.substr(first));
    }
    pending_ += line;
    pending_ += '\n';
    run_complete_statements();
    return !(bail_ && failed_);
  }

  // Whatever is left at end of input is run as it is (sqlite3 does the same).
  void finish() {
    if (pending_.find_first_not_of(" \t\r\n;") != std::string::npos) run(pending_);
    pending_.clear();
  }

  bool continuing() const { return pending_.find_first_not_of(" \t\r\n") != std::string::npos; }
  bool failed() const { return failed_; }

 private:
  void run_complete_statements() {
    // Split on each ';' that ends a complete statement (sqlite3_complete knows about strings,
    // comments and trigger bodies).
    std::size_t start = 0;
    for (std::size_t i = 0; i < pending_.size(); ++i) {
      if (pending_[i] != ';') continue;
      const std::string candidate = pending_.substr(start, i + 1 - start);
      if (sqlite3_complete(candidate.c_str())) {
        if (candidate.find_first_not_of(" \t\r\n;") != std::string::npos) run(candidate);
        start = i + 1;
      }
    }
    pending_.erase(0, start);
    if (pending_.find_first_not_of(" \t\r\n") == std::string::npos) pending_.clear();
  }

  bool dot(const std::string& line) {
    std::istringstream in(line);
    std::string cmd, arg;
    in >> cmd >> arg;
    if (cmd == ".quit" || cmd == ".exit") return false;
    if (cmd == ".help") {
      std::cout << ".help               this text\n"
                   ".tables             list tables and views\n"
                   ".schema [NAME]      show CREATE statements\n"
                   ".timer on|off       show the time each statement took\n"
                   ".mode table|json|line|list   result format\n"
                   ".quit               leave\n"
                   "SQL statements end with ';'. One statement per request; BEGIN/COMMIT are refused:\n"
                   "tandem runs each statement atomically (use a batch from a client for several).\n";
    } else if (cmd == ".tables") {
      run("SELECT name FROM sqlite_schema WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' ORDER BY name", true);
    } else if (cmd == ".schema") {
      protocol::params p;
      std::string sql = "SELECT sql || ';' AS sql FROM sqlite_schema WHERE sql IS NOT NULL";
      if (!arg.empty()) {
        sql += " AND name = ?";
        p.positional.push_back(arg);
      }
      run(sql + " ORDER BY type = 'table' DESC, name", true, std::move(p));
    } else if (cmd == ".timer") {
      timer_ = arg == "on";
    } else if (cmd == ".mode") {
      if (arg == "table" || arg == "json" || arg == "line" || arg == "list") mode_ = arg;
      else error("unknown mode '" + arg + "' (table, json, line, list)");
    } else {
      error("unknown command " + cmd + " (try .help)");
    }
    return !(bail_ && failed_);
  }

  void error(const std::string& message) {
    std::cerr << "Error: " << message << "\n";
    failed_ = true;
  }

  void run(const std::string& sql, bool bare = false, protocol::params p = {}) {
    const auto start = std::chrono::steady_clock::now();
    auto r = client_->query(sql, std::move(p));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!r) {
      error(std::string(protocol::to_string(r.error().code)) + ": " + r.error().message);
      return;
    }
    print(*r, bare ? "list" : mode_);
    if (timer_) std::cout << "Run Time: real " << secs << "\n";
  }

  void print(const query_result& r, const std::string& mode) {
    if (r.columns.empty()) return;
    if (mode == "json") {
      std::string out = "[";
      for (std::size_t i = 0; i < r.rows.size(); ++i) {
        out += i ? ",\n{" : "{";
        for (std::size_t c = 0; c < r.columns.size(); ++c) {
          if (c) out += ',';
          protocol::append_json_string(out, r.columns[c]);
          out += ':';
          protocol::append_value(out, r.rows[i][c]);
        }
        out += '}';
      }
      std::cout << out << "]\n";
      return;
    }
    if (mode == "list") {
      for (const auto& row : r.rows) {
        for (std::size_t c = 0; c < row.size(); ++c) std::cout << (c ? "|" : "") << display(row[c]);
        std::cout << "\n";
      }
      return;
    }
    if (mode == "line") {
      std::size_t w = 0;
      for (const auto& c : r.columns) w = std::max(w, width(c));
      for (std::size_t i = 0; i < r.rows.size(); ++i) {
        if (i) std::cout << "\n";
        for (std::size_t c = 0; c < r.columns.size(); ++c)
          std::cout << std::string(w - width(r.columns[c]), ' ') << r.columns[c] << " = " << display(r.rows[i][c]) << "\n";
      }
      return;
    }
    if (r.rows.empty()) return;
    std::vector<std::size_t> w(r.columns.size());
    for (std::size_t c = 0; c < w.size(); ++c) w[c] = width(r.columns[c]);
    std::vector<std::vector<std::string>> cells;
    for (const auto& row : r.rows) {
      auto& out = cells.emplace_back();
      for (std::size_t c = 0; c < row.size(); ++c) {
        out.push_back(display(row[c]));
        w[c] = std::max(w[c], width(out.back()));
      }
    }
    auto rule = [&] {
      std::cout << '+';
      for (auto x : w) std::cout << std::string(x + 2, '-') << '+';
      std::cout << "\n";
    };
    auto line = [&](const std::vector<std::string>& v) {
      std::cout << '|';
      for (std::size_t c = 0; c < v.size(); ++c) std::cout << ' ' << v[c] << std::string(w[c] - width(v[c]), ' ') << " |";
      std::cout << "\n";
    };
    rule();
    line(r.columns);
    rule();
    for (const auto& row : cells) line(row);
    rule();
  }

  std::unique_ptr<protocol::client> client_;
  std::string mode_;
  bool bail_;
  bool timer_ = false;
  bool failed_ = false;
  std::string pending_;
};

}  // namespace

int run_shell(const shell_options& o) {
  auto parsed = protocol::parse_url(o.url);
  if (!parsed) {
    std::cerr << "Error: " << parsed.error().message << "\n";
    return 2;
  }
  auto copts = *parsed;
  copts.client_name = "tandem-shell";
  if (!o.token_env.empty()) {
    const char* t = std::getenv(o.token_env.c_str());
    if (t == nullptr) {
      std::cerr << "Error: environment variable " << o.token_env << " is not set\n";
      return 2;
    }
    copts.token = t;
  }
  auto c = protocol::client::connect(copts);
  if (!c) {
    std::cerr << "Error: " << protocol::to_string(c.error().code) << ": " << c.error().message << "\n";
    return 1;
  }
  shell sh(std::move(*c), o);
  if (!o.command.empty()) {
    std::istringstream in(o.command);
    for (std::string line; std::getline(in, line);)
      if (!sh.feed(line)) break;
    sh.finish();
    return sh.failed() ? 1 : 0;
  }
  const bool interactive = isatty(STDIN_FILENO) != 0;
  if (interactive) std::cout << "tandem shell, connected to " << copts.host << ":" << copts.port << ". Enter .help for help.\n";
  for (;;) {
    if (interactive) std::cout << (sh.continuing() ? "   ...> " : "tandem> ") << std::flush;
    std::string line;
    if (!std::getline(std::cin, line)) break;
    if (!sh.feed(line)) break;
  }
  sh.finish();
  return sh.failed() ? 1 : 0;
}

}  // namespace tandem::tools
