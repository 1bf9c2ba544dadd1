// Turning a tandem statement into what D1's REST API can run exactly (sans-io, no HTTP here).
//
// D1's REST API takes SQL text plus a JSON array of parameters, and JSON numbers pass through
// JavaScript on D1's side: integers beyond 2^53 are rounded, a whole-number float arrives as an
// integer, and a number may be bound as a REAL whatever it looks like (the local D1 binds every
// number as REAL). Blobs have no JSON form. So values that cannot travel exactly as parameters
// are written into the SQL as literals that SQLite parses exactly: every integer as
// CAST(n AS INTEGER), X'..' blobs and whole-number floats in parentheses. Text, NULL and floats
// with a fraction stay a bound `?`, unless a statement has more of them than D1 binds (then
// the smallest become literals too). Named and numbered parameters are resolved here with
// SQLite's own numbering and sent positionally.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "backends/store.hpp"

namespace tandem::backends {

// D1's documented limits (developers.cloudflare.com/d1/platform/limits).
struct d1_limits {
  std::size_t max_bound_parameters = 100;
  std::size_t max_statement_bytes = 100000;
  std::size_t max_value_bytes = 2000000;  // a string or blob (D1's row size limit)
  std::size_t max_batch_statements = 1000;
};

struct d1_statement {
  std::string sql;          // with literals inlined and every parameter as `?`
  std::string params_json;  // a JSON array, one element per `?`
  std::size_t bound = 0;    // number of `?`
};

// BAD_REQUEST for parameter mismatches (as the SQLite store reports them), UNSUPPORTED naming
// the D1 limit a statement would exceed.
outcome<d1_statement> to_d1_statement(const protocol::statement& st, const d1_limits& limits = {});
// The same for `sql` with the parameters `params` (of a statement whose SQL was rewritten).
outcome<d1_statement> to_d1_statement(std::string_view sql, const protocol::params& params, const d1_limits& limits = {});

// A literal SQLite reads back as exactly `d` (finite): a whole number below 2^53 as its digits
// with ".0"; any other as its integer mantissa times or divided by powers of two. SQLite's
// decimal parsing, D1's included, can be an ulp off for 17-digit literals of large or small
// magnitude; products of powers of two are exact.
std::string exact_float_literal(double d);

// BAD_REQUEST unless `sql` holds exactly one statement (comments and a trailing ';' allowed).
outcome<void> check_single_statement(std::string_view sql);

// Where the string, quoted identifier or comment starting at `i` ends (one past its last
// character; a token left open runs to the end of `sql`), or `i` when none starts there.
std::size_t skip_quoted_token(std::string_view sql, std::size_t i);

// The first keyword, upper-cased ("SELECT", "CREATE", ...), skipping comments; "" if none.
std::string first_keyword(std::string_view sql);

}  // namespace tandem::backends
