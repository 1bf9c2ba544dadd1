#include "proxy/owner.hpp"

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <random>

#include <boost/json/parse.hpp>

#include "backends/journal.hpp"

namespace tandem::proxy {
namespace json = boost::json;

owner_identity owner_identity::self() {
  owner_identity o;
  o.pid = ::getpid();
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) o.host = host;
  o.started_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  o.version = TANDEM_VERSION;
  // The pid and host alone repeat (containers, restarts); 64 random bits do not.
  std::random_device rd;
  const std::uint64_t r = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(r));
  o.id = o.host + ":" + std::to_string(o.pid) + ":" + hex;
  return o;
}

json::object owner_identity::to_json() const {
  return {{"id", id},         {"pid", pid},     {"host", host},      {"started", backends::utc_text(started_ms)},
          {"startedMs", started_ms}, {"listen", listen}, {"version", version}};
}

owner_identity owner_identity::from_json(const json::object& o) {
  owner_identity w;
  auto text = [&](const char* key, std::string& out) {
    if (const auto* v = o.if_contains(key); v && v->is_string()) out = std::string(v->get_string());
  };
  auto number = [&](const char* key, std::int64_t& out) {
    if (const auto* v = o.if_contains(key); v && v->is_int64()) out = v->get_int64();
  };
  text("id", w.id);
  number("pid", w.pid);
  text("host", w.host);
  number("startedMs", w.started_ms);
  text("listen", w.listen);
  text("version", w.version);
  return w;
}

owner_identity owner_identity::parse(std::string_view json_text) {
  boost::system::error_code ec;
  auto v = json::parse(json_text, ec);
  if (ec || !v.is_object()) return {};
  return from_json(v.get_object());
}

std::string owner_identity::describe() const {
  if (id.empty() && pid == 0) return "an instance that has not described itself yet";
  std::string out = "pid " + std::to_string(pid) + " on host " + (host.empty() ? "?" : host);
  if (started_ms > 0) out += ", started " + backends::utc_text(started_ms);
  out += listen.empty() ? ", not listening yet" : ", listening on " + listen;
  return out;
}

}  // namespace tandem::proxy
