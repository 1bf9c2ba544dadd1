// A journal position: the token that carries read-your-writes and monotonic reads across
// connections (PROTOCOL.md §15). Sans-io: text in, value out.
//
// On the wire it is a string "<journal>:<seq>", e.g. "sqlite:42": the journal is named by the
// store that led when the entry was written ("sqlite" in dual-sqlite, "d1" in dual-d1), and seq
// is the entry's sequence number in that journal. Positions of one journal are ordered by seq;
// positions of two journals are not comparable (after a switch-primary, the newer one is the one
// seen last).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tandem::protocol {

struct position {
  std::string journal;  // empty: no position
  std::int64_t seq = 0;

  bool empty() const noexcept { return journal.empty(); }
  bool operator==(const position&) const = default;
};

// "sqlite:42". Precondition: !p.empty().
std::string to_string(const position& p);

// Parses "<journal>:<seq>": a journal name of 1-32 characters [a-z0-9_-], a colon, and a
// decimal seq in 0 .. 2^63-1 without sign or leading zeros. Anything else is nullopt.
std::optional<position> parse_position(std::string_view text);

// Keeps the newer of `held` and `seen` in `held`: the higher seq of the same journal, else
// `seen` (a position of another journal is newer when it is seen later). An empty `seen`
// changes nothing.
void keep_newer(position& held, const position& seen);

}  // namespace tandem::protocol
