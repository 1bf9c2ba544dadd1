// tandem's error codes: one enum, mapped 1:1 onto the wire codes of PROTOCOL.md.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tandem::protocol {

// The stable error codes a client sees. Adding one is a protocol change: update PROTOCOL.md.
enum class errc {
  bad_request,      // the request is malformed or inconsistent; nothing was executed
  unauthorized,     // hello missing or token wrong
  frame_too_large,  // a line exceeded max_frame_bytes; the connection is closed after it
  sql_error,        // the store rejected the SQL (syntax, missing table, ...)
  constraint,       // a constraint (UNIQUE, NOT NULL, CHECK, FOREIGN KEY) failed
  unsupported,      // valid SQL that tandem refuses (transactions, ATTACH, writing PRAGMAs, ...)
  unavailable,      // the store cannot be reached or is shutting down
  timeout,          // the statement ran past the query timeout and was interrupted
  overloaded,       // too many connections or requests; retry later
  internal,         // a bug or an unexpected store failure
};

// The wire name, e.g. "SQL_ERROR".
std::string_view to_string(errc code) noexcept;

// The code for a wire name, if it is one.
std::optional<errc> errc_from_string(std::string_view name) noexcept;

// An error as the protocol carries it: a code, a human message, and optionally which store
// produced it ("sqlite" or "d1") and which batch statement failed.
struct error {
  errc code = errc::internal;
  std::string message;
  std::string store;               // empty when the error is not a store's
  std::optional<std::size_t> index;  // the failing statement of a batch
};

// The store could not be reached, was too slow or too busy: trying again later may succeed. Every
// other code is an answer (the SQL, a constraint, a refusal) that waiting does not change.
inline bool is_transient(const error& e) noexcept {
  return e.code == errc::unavailable || e.code == errc::timeout || e.code == errc::overloaded;
}

}  // namespace tandem::protocol
