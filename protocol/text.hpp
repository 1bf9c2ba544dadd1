// Text helpers for the wire format: UTF-8 validation, JSON string escaping, base64.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tandem::protocol {

bool is_valid_utf8(std::string_view s) noexcept;

// Two upper-case hex digits per byte, appended to `out` (SQL X'..' literals, unhex() arguments).
void append_hex(std::string& out, std::string_view bytes);

// Appends `s` to `out` as a quoted JSON string. Bytes that are not valid UTF-8 are replaced by
// U+FFFD so that the output is always valid JSON (SQLite does not validate the text it stores;
// binary data belongs in blobs): one U+FFFD per maximal subpart, as JavaScript's decoder (and so
// D1) replaces them, so E2 82 (a cut-off sequence) is one U+FFFD and C0 AF two.
void append_json_string(std::string& out, std::string_view s);

std::string base64_encode(std::string_view bytes);
void append_base64(std::string& out, std::string_view bytes);

// Decodes standard base64 (RFC 4648 §4) with padding required when the length calls for it.
// Whitespace, the URL-safe alphabet and garbage are rejected: std::nullopt.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace tandem::protocol
