// Strict JSON parsing on top of Boost.JSON's streaming parser.
//
// Boost.JSON alone turns an integer literal beyond 64 bits into a double, silently losing digits.
// tandem's values must be exact, so this reader rejects such literals instead (unless told they
// are doubles: json_read_options::big_integers_as_double). It also rejects
// trailing content after the document and invalid UTF-8, and can report the line of every object
// key (for configuration errors that name the line).
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>

#include <boost/json/storage_ptr.hpp>
#include <boost/json/value.hpp>

namespace tandem::protocol {

struct json_read_options {
  bool allow_comments = false;         // `//` and `/* */`, for configuration files
  bool allow_trailing_commas = false;  // likewise
  bool track_key_lines = false;        // fill json_document::key_lines
  // An integer literal beyond 64 bits becomes the nearest double (correctly rounded) instead of
  // an error. For answers whose numbers are JavaScript's doubles (D1's): JavaScript prints
  // -2^63 as -9223372036854776000 and 1e20 as 100000000000000000000.
  bool big_integers_as_double = false;
  std::size_t max_depth = 32;
};

struct json_document {
  boost::json::value value;
  std::string error;        // empty when the parse succeeded
  std::size_t error_line = 0;  // 1-based line of the error, when track_key_lines was set
  // When tracking: the 1-based line of each object key, by path ("listen.port", "stages[1].hold").
  std::map<std::string, std::size_t> key_lines;

  bool ok() const noexcept { return error.empty(); }
};

// Parses exactly one JSON document from `text`. Never throws for bad input; the error is in
// the result. `sp` is the memory resource for the returned value.
json_document read_json(std::string_view text, const json_read_options& options = {},
                        boost::json::storage_ptr sp = {});

}  // namespace tandem::protocol
