// Requests and responses of protocol v1 as plain structs. The codec turns them into bytes and back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "protocol/error.hpp"
#include "protocol/position.hpp"
#include "protocol/value.hpp"

namespace tandem::protocol {

inline constexpr int k_protocol_version = 1;

enum class op { hello, query, batch, ping };

struct hello_request {
  std::string token;
  std::string client;
  std::string routing_key;
  // The newest position the client has seen (PROTOCOL.md §15), for the session's requests that
  // carry none of their own. Empty: none given.
  position min_seq;
};

struct request {
  // The client's id, kept as the exact JSON text it sent (an integer or a string) so that the
  // response echoes it byte for byte. "null" when the request had no usable id.
  std::string id_json = "null";
  op kind = op::ping;
  hello_request hello;
  // One statement for `query`, one or more for `batch`.
  std::vector<statement> statements;
  // `query` and `batch`: routes this request as this key instead of the session's (empty: the
  // session's, from hello).
  std::string routing_key;
  // `query` and `batch`: the newest position the client has seen, for this request instead of
  // hello's (PROTOCOL.md §15). Empty: none given.
  position min_seq;
  // `query` and `batch`: min_seq was "leader": read what the leader holds (D1's first-primary).
  bool min_seq_leader = false;
};

struct result_meta {
  std::int64_t changes = 0;
  std::int64_t last_row_id = 0;
  std::int64_t rows_read = 0;
  std::int64_t rows_written = 0;
  double duration_ms = 0;
  std::string served_by;  // "sqlite" or "d1"
  // False when D1 answered a statement tandem could not send in its exact form (PROTOCOL.md
  // §13) and a cell may differ from SQLite's. On the wire only when false.
  bool exact = true;
  // The write's journal sequence number in a dual mode (0 otherwise), as the store reports it.
  // Internal: not on the wire.
  std::int64_t seq = 0;
  // The journal position the answer is at least as new as (PROTOCOL.md §15), set by the router
  // in the dual modes. On the wire as meta.seq when not empty.
  position at;
  // SQLite's changes() for the statement: its own rows, not its triggers' or cascades' (which
  // `changes` counts, as D1 does). What a D1 leader's journal records for verification. Internal.
  std::int64_t direct_changes = 0;
  // D1 over the bridge with read replication (backends/d1_store.hpp): the session bookmark the
  // answer is at (internal), and where it ran. On the wire as served_by_region and
  // served_by_primary when D1 said.
  std::string bookmark;
  std::string served_by_region;
  std::optional<bool> served_by_primary;
};

// The result of one statement.
struct query_result {
  std::vector<std::string> columns;
  std::vector<std::vector<value>> rows;
  result_meta meta;
};

struct hello_result {
  std::string server = "tandem";
  std::string version;
  int protocol = k_protocol_version;
};

struct ping_result {};

// What a successful request returns: one statement's result for `query`, one per statement for
// `batch`.
using success = std::variant<hello_result, ping_result, query_result, std::vector<query_result>>;

struct response {
  std::string id_json = "null";
  std::variant<success, error> body;

  bool ok() const noexcept { return body.index() == 0; }
};

}  // namespace tandem::protocol
