// Who this tandem process is, as the owner of a store (proxy/store_lock.hpp: the SQLite file;
// proxy/d1_lease.hpp: D1's replication role). Another instance that finds a store owned names
// its owner from this description: pid, host, start time, listen address.
#pragma once

#include <cstdint>
#include <string>

#include <boost/json/object.hpp>

namespace tandem::proxy {

struct owner_identity {
  std::string id;  // unique per process: random, with the pid and host in it
  std::int64_t pid = 0;
  std::string host;
  std::int64_t started_ms = 0;  // wall clock, ms since the epoch
  std::string listen;           // "HOST:PORT" once listening, "" before
  std::string version;

  // This process, now (listen empty).
  static owner_identity self();

  // {"id", "pid", "host", "started", "startedMs", "listen", "version"}.
  boost::json::object to_json() const;
  // The inverse; fields missing or of the wrong type stay empty (a description written by
  // another version of tandem, or half written).
  static owner_identity from_json(const boost::json::object& o);
  static owner_identity parse(std::string_view json_text);

  // "pid 1234 on host web-1, started 2026-12-01T10:00:00Z, listening on 127.0.0.1:6440".
  std::string describe() const;
};

}  // namespace tandem::proxy
