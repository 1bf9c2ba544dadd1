#include "protocol/error.hpp"

#include <array>
#include <utility>

namespace tandem::protocol {
namespace {

constexpr std::array<std::pair<errc, std::string_view>, 10> k_names{{
    {errc::bad_request, "BAD_REQUEST"},
    {errc::unauthorized, "UNAUTHORIZED"},
    {errc::frame_too_large, "FRAME_TOO_LARGE"},
    {errc::sql_error, "SQL_ERROR"},
    {errc::constraint, "CONSTRAINT"},
    {errc::unsupported, "UNSUPPORTED"},
    {errc::unavailable, "UNAVAILABLE"},
    {errc::timeout, "TIMEOUT"},
    {errc::overloaded, "OVERLOADED"},
    {errc::internal, "INTERNAL"},
}};

}  // namespace

std::string_view to_string(errc code) noexcept {
  for (const auto& [c, name] : k_names) {
    if (c == code) return name;
  }
  return "INTERNAL";
}

std::optional<errc> errc_from_string(std::string_view name) noexcept {
  for (const auto& [c, n] : k_names) {
    if (n == name) return c;
  }
  return std::nullopt;
}

}  // namespace tandem::protocol
