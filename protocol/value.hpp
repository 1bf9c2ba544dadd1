// The values that travel between clients, tandem and the stores.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace tandem::protocol {

// Binary data. Kept apart from text so that the two never mix: text is UTF-8 in a JSON string,
// a blob is {"base64": "..."} on the wire.
struct blob {
  std::string bytes;
  friend bool operator==(const blob&, const blob&) = default;
};

// SQL NULL, an exact 64-bit integer, a double, UTF-8 text, or a blob. Booleans do not exist in
// SQLite: the codec turns true/false into 1/0 on the way in.
using value = std::variant<std::monostate, std::int64_t, double, std::string, blob>;

// The same storage class and the same bits: unlike ==, -0.0 is not 0.0.
inline bool identical(const value& a, const value& b) noexcept {
  if (a.index() != b.index()) return false;
  if (const auto* d = std::get_if<double>(&a)) return std::bit_cast<std::uint64_t>(*d) == std::bit_cast<std::uint64_t>(std::get<double>(b));
  return a == b;
}

// The bytes of a text or blob value; 0 for the others.
inline std::size_t byte_size(const value& v) noexcept {
  if (const auto* s = std::get_if<std::string>(&v)) return s->size();
  if (const auto* b = std::get_if<blob>(&v)) return b->bytes.size();
  return 0;
}

// Parameters of one statement: positional (`?`, `?NNN`, or any parameter by its index) or named
// (`:name`, `@name`, `$name`). Never both.
struct params {
  std::vector<value> positional;
  std::vector<std::pair<std::string, value>> named;  // names as the client wrote them
  bool is_named = false;

  bool empty() const noexcept { return positional.empty() && named.empty(); }
};

struct statement {
  std::string sql;
  protocol::params params;
};

}  // namespace tandem::protocol
