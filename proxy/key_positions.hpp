// What tandem remembers per routing key: the newest journal position (and, with D1 read
// replication, the newest D1 bookmark) a request of that key wrote or read (PROTOCOL.md §15). It lets a second connection of the same end user, or the
// same user after a reconnect, read no older data than the first saw, without the client's
// help. Memory is bounded both ways: at most `max_keys` keys (the least recently noted go
// first), each for `ttl` after it was last noted.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "protocol/position.hpp"

namespace tandem::proxy {

class key_positions {
 public:
  using clock = std::chrono::steady_clock;

  // max_keys 0 or ttl 0: remembers nothing.
  key_positions(std::size_t max_keys, std::chrono::milliseconds ttl);

  // Keeps the newer of the key's position and `p` (protocol::keep_newer) and restarts its ttl.
  // Returns how many keys are remembered. Thread-safe.
  std::size_t note(std::string_view key, const protocol::position& p, clock::time_point now = clock::now());

  // The key's position, or an empty one when it has none or it expired. Thread-safe.
  protocol::position get(std::string_view key, clock::time_point now = clock::now());

  // The same for the newest D1 session bookmark (D1 read replication, backends/d1_store.hpp) a
  // request of the key brought back: kept with the key's position, under the same bounds.
  std::size_t note_bookmark(std::string_view key, const std::string& bookmark, clock::time_point now = clock::now());
  std::string bookmark(std::string_view key, clock::time_point now = clock::now());

  std::size_t size() const;

 private:
  struct entry {
    std::string key;
    protocol::position at;
    std::string bookmark;
    clock::time_point expires;
  };
  // The key's entry, created if missing (evicting the least recently noted when full), moved to
  // the front with its ttl restarted.
  entry& touch_locked(std::string_view key, clock::time_point now);
  // Drops expired entries from the back (the list is in order of last note, so of expiry).
  void expire_locked(clock::time_point now);

  const std::size_t max_keys_;
  const std::chrono::milliseconds ttl_;
  mutable std::mutex mu_;
  std::list<entry> order_;  // most recently noted first
  std::unordered_map<std::string_view, std::list<entry>::iterator> index_;  // views into order_'s keys
};

}  // namespace tandem::proxy
