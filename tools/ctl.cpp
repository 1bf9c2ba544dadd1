#include "tools/ctl.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "protocol/json_reader.hpp"

namespace tandem::tools {
namespace {

namespace json = boost::json;

void pretty(const json::value& v, std::string& out, int depth) {
  const std::string pad(static_cast<std::size_t>(depth) * 2, ' ');
  if (const auto* o = v.if_object(); o && !o->empty()) {
    out += "{\n";
    std::size_t i = 0;
    for (const auto& kv : *o) {
      out += pad + "  " + json::serialize(json::value(kv.key())) + ": ";
      pretty(kv.value(), out, depth + 1);
      out += ++i < o->size() ? ",\n" : "\n";
    }
    out += pad + "}";
  } else if (const auto* a = v.if_array(); a && !a->empty()) {
    out += "[\n";
    for (std::size_t i = 0; i < a->size(); ++i) {
      out += pad + "  ";
      pretty((*a)[i], out, depth + 1);
      out += i + 1 < a->size() ? ",\n" : "\n";
    }
    out += pad + "]";
  } else {
    out += json::serialize(v);
  }
}

}  // namespace

std::string pretty_json(const std::string& compact) {
  auto doc = protocol::read_json(compact);
  if (!doc.ok()) return compact;
  std::string out;
  pretty(doc.value, out, 0);
  return out;
}

std::optional<std::string> control_exchange(const std::string& socket, const std::string& command, std::string& error) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket.size() >= sizeof addr.sun_path) {
    error = "the socket path is too long: " + socket;
    return std::nullopt;
  }
  std::memcpy(addr.sun_path, socket.c_str(), socket.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    error = "cannot connect to " + socket + ": " + std::strerror(errno) +
            " (is tandem running, and is control.socket this path? use --socket)";
    if (fd >= 0) ::close(fd);
    return std::nullopt;
  }
  const std::string line = command + "\n";
  for (std::size_t sent = 0; sent < line.size();) {
    const auto n = ::write(fd, line.data() + sent, line.size() - sent);
    if (n <= 0) {
      error = "the connection broke while sending";
      ::close(fd);
      return std::nullopt;
    }
    sent += static_cast<std::size_t>(n);
  }
  std::string answer;
  char buf[4096];
  while (answer.find('\n') == std::string::npos) {
    const auto n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (answer.empty() || answer.back() != '\n') {
    error = "no answer from " + socket;
    return std::nullopt;
  }
  answer.pop_back();
  return answer;
}

int run_ctl(const ctl_options& o) {
  std::string line;
  for (const auto& w : o.words) line += (line.empty() ? "" : " ") + w;
  if (line.empty()) line = "help";
  std::string error;
  auto answer = control_exchange(o.socket, line, error);
  if (!answer) {
    std::cerr << "tandem ctl: " << error << "\n";
    return 2;
  }
  std::cout << (o.raw ? *answer : pretty_json(*answer)) << "\n";
  auto doc = protocol::read_json(*answer);
  const auto* obj = doc.ok() ? doc.value.if_object() : nullptr;
  const auto* ok = obj ? obj->if_contains("ok") : nullptr;
  return ok && ok->is_bool() && ok->get_bool() ? 0 : 1;
}

}  // namespace tandem::tools
