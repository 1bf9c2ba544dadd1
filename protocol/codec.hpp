// The sans-io codec of protocol v1: bytes in, messages out, and back. No sockets here.
//
//   frame_reader   splits a byte stream into lines and enforces max_frame_bytes
//   decode_request / encode_response   the server's side
//   encode_request / decode_response   the client's side
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

#include "protocol/messages.hpp"

namespace tandem::protocol {

inline constexpr std::size_t k_default_max_frame_bytes = 16 * 1024 * 1024;

// Splits an incoming byte stream into frames (one JSON document per `\n`-terminated line; a
// `\r` before the `\n` is dropped, empty lines are skipped). Not thread-safe; one per connection.
class frame_reader {
 public:
  explicit frame_reader(std::size_t max_frame_bytes = k_default_max_frame_bytes);

  // Space for at least `n` more bytes; write into it, then commit() what was written.
  char* prepare(std::size_t n);
  void commit(std::size_t n) noexcept;

  enum class status { frame, need_more, too_large };
  struct next_result {
    status st;
    std::string_view frame;  // valid until the next call to prepare() or next()
  };

  // The next complete frame, if any. After `too_large` the stream cannot be resynchronised:
  // the caller reports FRAME_TOO_LARGE and closes the connection.
  next_result next();

  // Bytes received but not yet returned as frames.
  std::size_t buffered() const noexcept { return end_ - begin_; }

 private:
  std::size_t max_;
  std::string buf_;
  std::size_t begin_ = 0;  // first byte not yet returned
  std::size_t scan_ = 0;   // bytes before this (from begin_) hold no '\n'
  std::size_t end_ = 0;    // end of committed data
};

struct decode_limits {
  std::size_t max_batch_statements = 10000;
};

// Decodes one frame into a request, or into the error response to send back for it (whose id is
// the request's when it could be read, null otherwise).
std::variant<request, response> decode_request(std::string_view frame,
                                               const decode_limits& limits = {});

// Appends the response as one line, `\n` included.
void encode_response(const response& r, std::string& out);
std::string encode_response(const response& r);

// Client side. encode_request appends one line; decode_response reads one (without its `\n`).
void encode_request(const request& r, std::string& out);
// On a frame that is not a valid response, returns the reason as a string.
std::variant<response, std::string> decode_response(std::string_view frame);

// Appends a value in its wire form (exact integers, round-trip floats, {"base64"} blobs).
void append_value(std::string& out, const value& v);

// Shorthand for an error response.
response make_error(std::string id_json, errc code, std::string message, std::string store = {},
                    std::optional<std::size_t> index = std::nullopt);

}  // namespace tandem::protocol
