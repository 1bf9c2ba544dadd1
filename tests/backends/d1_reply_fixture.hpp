// Literal D1 /raw answers for the sans-io reply tests (d1_reply_test, d1_exact_test).
#pragma once

#include <bit>
#include <cstdint>
#include <limits>
#include <string>

namespace tandem::backends::testing {

using i64 = std::numeric_limits<std::int64_t>;

// One /raw result in D1's envelope.
inline std::string reply(const std::string& columns, const std::string& rows,
                         const std::string& meta = R"("changes":0,"last_row_id":0)") {
  return R"({"success":true,"errors":[],"messages":[],"result":[{"success":true,"meta":{)" + meta +
         R"(,"rows_read":1,"rows_written":0,"duration":0.1},"results":{"columns":)" + columns + R"(,"rows":)" + rows + "}}]}";
}

inline std::uint64_t bits(double d) { return std::bit_cast<std::uint64_t>(d); }

}  // namespace tandem::backends::testing
