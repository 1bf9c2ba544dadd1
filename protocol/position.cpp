#include "protocol/position.hpp"

#include <charconv>

namespace tandem::protocol {

std::string to_string(const position& p) { return p.journal + ":" + std::to_string(p.seq); }

std::optional<position> parse_position(std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 32) return std::nullopt;
  const auto name = text.substr(0, colon);
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return std::nullopt;
  }
  const auto digits = text.substr(colon + 1);
  if (digits.empty() || digits[0] < '0' || digits[0] > '9' || (digits.size() > 1 && digits[0] == '0')) return std::nullopt;
  std::int64_t seq = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), seq);
  if (ec != std::errc() || end != digits.data() + digits.size() || seq < 0) return std::nullopt;
  return position{std::string(name), seq};
}

void keep_newer(position& held, const position& seen) {
  if (seen.empty()) return;
  if (held.journal != seen.journal || seen.seq > held.seq) held = seen;
}

}  // namespace tandem::protocol
