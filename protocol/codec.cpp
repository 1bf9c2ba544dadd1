#include "protocol/codec.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include <boost/json/monotonic_resource.hpp>

#include "protocol/json_reader.hpp"
#include "protocol/text.hpp"

namespace tandem::protocol {
namespace json = boost::json;

// ---- frame_reader --------------------------------------------------------------------------

frame_reader::frame_reader(std::size_t max_frame_bytes) : max_(max_frame_bytes) {}

char* frame_reader::prepare(std::size_t n) {
  if (begin_ > 0 && (begin_ == end_ || begin_ >= buf_.size() / 2)) {
    // Slide the unread bytes to the front so the buffer does not grow without bound.
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (buf_.size() < end_ + n) buf_.resize(end_ + n);
  return buf_.data() + end_;
}

void frame_reader::commit(std::size_t n) noexcept { end_ += n; }

frame_reader::next_result frame_reader::next() {
  for (;;) {
    const char* base = buf_.data() + begin_;
    const std::size_t avail = end_ - begin_;
    const void* nl = scan_ < avail ? std::memchr(base + scan_, '\n', avail - scan_) : nullptr;
    if (nl == nullptr) {
      scan_ = avail;
      if (avail > max_) return {status::too_large, {}};
      return {status::need_more, {}};
    }
    std::size_t len = static_cast<const char*>(nl) - base;
    begin_ += len + 1;
    scan_ = 0;
    if (len > max_) return {status::too_large, {}};
    if (len > 0 && base[len - 1] == '\r') --len;
    if (len == 0) continue;  // empty lines are keep-alives
    return {status::frame, std::string_view(base, len)};
  }
}

// ---- values ----------------------------------------------------------------------------------

namespace {

void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

void append_double(std::string& out, double d) {
  if (std::isnan(d)) {
    out += "null";  // SQLite itself turns NaN into NULL; this is only defensive
    return;
  }
  if (std::isinf(d)) {
    // JSON has no infinity. 1e999 overflows to infinity in every IEEE-754 parser.
    out += d > 0 ? "1e999" : "-1e999";
    return;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);  // shortest round-trip form
  const std::string_view s(buf, end - buf);
  out += s;
  // Keep a float a float on the way back: "1" would be read as an integer.
  if (s.find_first_of(".eE") == std::string_view::npos) out += ".0";
}

// Reads one parameter or cell value. `where` names it in errors ("params[2]").
std::optional<value> value_from_json(const json::value& j, std::string& error,
                                     const std::string& where) {
  switch (j.kind()) {
    case json::kind::null:
      return value{};
    case json::kind::bool_:
      return value{std::int64_t{j.get_bool() ? 1 : 0}};
    case json::kind::int64:
      return value{j.get_int64()};
    case json::kind::uint64:
      if (j.get_uint64() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        error = where + ": integer " + std::to_string(j.get_uint64()) +
                " is beyond the 64-bit signed range";
        return std::nullopt;
      }
      return value{static_cast<std::int64_t>(j.get_uint64())};
    case json::kind::double_:
      return value{j.get_double()};
    case json::kind::string:
      return value{std::string(j.get_string())};
    case json::kind::object: {
      const auto& o = j.get_object();
      const auto* b = o.if_contains("base64");
      if (o.size() != 1 || b == nullptr || !b->is_string()) {
        error = where + ": an object value must be {\"base64\": \"...\"} (a blob)";
        return std::nullopt;
      }
      auto bytes = base64_decode(b->get_string());
      if (!bytes) {
        error = where + ": invalid base64 in blob";
        return std::nullopt;
      }
      return value{blob{std::move(*bytes)}};
    }
    case json::kind::array:
      error = where + ": an array is not a value (blobs are {\"base64\": \"...\"})";
      return std::nullopt;
  }
  error = where + ": unknown value";
  return std::nullopt;
}

std::string_view op_name(op o) {
  switch (o) {
    case op::hello: return "hello";
    case op::query: return "query";
    case op::batch: return "batch";
    case op::ping: return "ping";
  }
  return "ping";
}

std::optional<op> op_from_name(std::string_view s) {
  if (s == "hello") return op::hello;
  if (s == "query") return op::query;
  if (s == "batch") return op::batch;
  if (s == "ping") return op::ping;
  return std::nullopt;
}

// Decodes {sql, params} (the body of a query, or one element of a batch). `where` prefixes errors.
// The optional per-request routing_key of query and batch.
bool read_routing_key(const json::object& o, request& req, std::string& error) {
  const auto* k = o.if_contains("routing_key");
  if (k == nullptr || k->is_null()) return true;
  if (!k->is_string()) {
    error = "'routing_key' must be a string";
    return false;
  }
  req.routing_key = std::string(k->get_string());
  return true;
}

constexpr std::string_view k_bad_min_seq =
    "'min_seq' must be a position token as meta.seq gives it (\"<journal>:<seq>\", e.g. \"sqlite:42\")";

// The optional min_seq of hello (a token), query and batch (a token or "leader").
bool read_min_seq(const json::object& o, position& out, bool* leader, std::string& error) {
  const auto* m = o.if_contains("min_seq");
  if (m == nullptr || m->is_null()) return true;
  if (m->is_string()) {
    const std::string_view text = m->get_string();
    if (leader != nullptr && text == "leader") {
      *leader = true;
      return true;
    }
    if (auto p = parse_position(text)) {
      out = std::move(*p);
      return true;
    }
  }
  error = std::string(k_bad_min_seq) + (leader != nullptr ? ", or \"leader\"" : "");
  return false;
}

std::optional<statement> decode_statement(const json::object& o, std::string& error,
                                          const std::string& where, bool allow_id_op) {
  statement st;
  for (const auto& kv : o) {
    const auto key = kv.key();
    if (key == "sql" || key == "params") continue;
    if (allow_id_op && (key == "id" || key == "op" || key == "routing_key" || key == "min_seq")) continue;
    error = where + "unknown field '" + std::string(key) + "'";
    return std::nullopt;
  }
  const auto* sql = o.if_contains("sql");
  if (sql == nullptr) {
    error = where + "missing field 'sql'";
    return std::nullopt;
  }
  if (!sql->is_string()) {
    error = where + "'sql' must be a string";
    return std::nullopt;
  }
  st.sql = std::string(sql->get_string());
  if (const auto* p = o.if_contains("params"); p != nullptr && !p->is_null()) {
    if (p->is_array()) {
      const auto& arr = p->get_array();
      st.params.positional.reserve(arr.size());
      for (std::size_t i = 0; i < arr.size(); ++i) {
        auto v = value_from_json(arr[i], error, where + "params[" + std::to_string(i) + "]");
        if (!v) return std::nullopt;
        st.params.positional.push_back(std::move(*v));
      }
    } else if (p->is_object()) {
      st.params.is_named = true;
      for (const auto& kv : p->get_object()) {
        auto v = value_from_json(kv.value(), error, where + "params." + std::string(kv.key()));
        if (!v) return std::nullopt;
        st.params.named.emplace_back(std::string(kv.key()), std::move(*v));
      }
    } else {
      error = where + "'params' must be an array (positional) or an object (named)";
      return std::nullopt;
    }
  }
  return st;
}

std::optional<std::string> read_id(const json::value& id) {
  std::string out;
  switch (id.kind()) {
    case json::kind::int64: append_int(out, id.get_int64()); return out;
    case json::kind::uint64:
      if (id.get_uint64() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return std::nullopt;
      append_int(out, static_cast<std::int64_t>(id.get_uint64()));
      return out;
    case json::kind::string: append_json_string(out, id.get_string()); return out;
    default: return std::nullopt;
  }
}

}  // namespace

void append_value(std::string& out, const value& v) {
  switch (v.index()) {
    case 0: out += "null"; break;
    case 1: append_int(out, std::get<std::int64_t>(v)); break;
    case 2: append_double(out, std::get<double>(v)); break;
    case 3: append_json_string(out, std::get<std::string>(v)); break;
    case 4:
      out += "{\"base64\":\"";
      append_base64(out, std::get<blob>(v).bytes);
      out += "\"}";
      break;
  }
}

response make_error(std::string id_json, errc code, std::string message, std::string store,
                    std::optional<std::size_t> index) {
  return response{std::move(id_json), error{code, std::move(message), std::move(store), index}};
}

// ---- server side ----------------------------------------------------------------------------

std::variant<request, response> decode_request(std::string_view frame,
                                               const decode_limits& limits) {
  // Most requests are small: parse them out of a stack buffer without touching the heap.
  std::array<unsigned char, 4096> arena;
  json::monotonic_resource mr(arena.data(), arena.size());
  auto doc = read_json(frame, {}, &mr);
  if (!doc.ok()) {
    return make_error("null", errc::bad_request, "malformed JSON: " + doc.error);
  }
  if (!doc.value.is_object()) {
    return make_error("null", errc::bad_request, "a request must be a JSON object");
  }
  const auto& o = doc.value.get_object();

  request req;
  const auto* id = o.if_contains("id");
  if (id == nullptr) return make_error("null", errc::bad_request, "missing field 'id'");
  auto id_json = read_id(*id);
  if (!id_json) {
    return make_error("null", errc::bad_request,
                      "'id' must be a string or an integer in the 64-bit signed range");
  }
  req.id_json = std::move(*id_json);
  auto fail = [&](std::string message) {
    return make_error(req.id_json, errc::bad_request, std::move(message));
  };

  const auto* opv = o.if_contains("op");
  if (opv == nullptr) return fail("missing field 'op'");
  if (!opv->is_string()) return fail("'op' must be a string");
  auto kind = op_from_name(opv->get_string());
  if (!kind) {
    return fail("unknown op '" + std::string(opv->get_string()) +
                "' (expected hello, query, batch or ping)");
  }
  req.kind = *kind;

  std::string error;
  switch (req.kind) {
    case op::ping:
      for (const auto& kv : o) {
        if (kv.key() != "id" && kv.key() != "op")
          return fail("unknown field '" + std::string(kv.key()) + "' for op 'ping'");
      }
      break;
    case op::hello:
      for (const auto& kv : o) {
        const auto k = kv.key();
        std::string* target = k == "token"         ? &req.hello.token
                              : k == "client"      ? &req.hello.client
                              : k == "routing_key" ? &req.hello.routing_key
                                                   : nullptr;
        if (k == "id" || k == "op" || k == "min_seq") continue;
        if (target == nullptr) return fail("unknown field '" + std::string(k) + "' for op 'hello'");
        if (kv.value().is_null()) continue;
        if (!kv.value().is_string()) return fail("'" + std::string(k) + "' must be a string");
        *target = std::string(kv.value().get_string());
      }
      if (!read_min_seq(o, req.hello.min_seq, nullptr, error)) return fail(error);
      break;
    case op::query: {
      if (!read_routing_key(o, req, error)) return fail(error);
      if (!read_min_seq(o, req.min_seq, &req.min_seq_leader, error)) return fail(error);
      auto st = decode_statement(o, error, "", true);
      if (!st) return fail(error);
      req.statements.push_back(std::move(*st));
      break;
    }
    case op::batch: {
      for (const auto& kv : o) {
        const auto k = kv.key();
        if (k != "id" && k != "op" && k != "statements" && k != "routing_key" && k != "min_seq")
          return fail("unknown field '" + std::string(k) + "' for op 'batch'");
      }
      if (!read_routing_key(o, req, error)) return fail(error);
      if (!read_min_seq(o, req.min_seq, &req.min_seq_leader, error)) return fail(error);
      const auto* sts = o.if_contains("statements");
      if (sts == nullptr) return fail("missing field 'statements'");
      if (!sts->is_array()) return fail("'statements' must be an array");
      const auto& arr = sts->get_array();
      if (arr.empty()) return fail("'statements' must not be empty");
      if (arr.size() > limits.max_batch_statements) {
        return fail("a batch holds at most " + std::to_string(limits.max_batch_statements) +
                    " statements, this one has " + std::to_string(arr.size()));
      }
      req.statements.reserve(arr.size());
      for (std::size_t i = 0; i < arr.size(); ++i) {
        const std::string where = "statements[" + std::to_string(i) + "]: ";
        if (!arr[i].is_object()) return fail(where + "must be an object {sql, params}");
        auto st = decode_statement(arr[i].get_object(), error, where, false);
        if (!st) return fail(error);
        req.statements.push_back(std::move(*st));
      }
      break;
    }
  }
  return req;
}

namespace {

void append_meta(std::string& out, const result_meta& m) {
  out += "{\"changes\":";
  append_int(out, m.changes);
  out += ",\"last_row_id\":";
  append_int(out, m.last_row_id);
  out += ",\"rows_read\":";
  append_int(out, m.rows_read);
  out += ",\"rows_written\":";
  append_int(out, m.rows_written);
  out += ",\"duration_ms\":";
  append_double(out, m.duration_ms);
  out += ",\"served_by\":";
  append_json_string(out, m.served_by);
  if (!m.exact) out += ",\"exact\":false";
  if (!m.served_by_region.empty()) {
    out += ",\"served_by_region\":";
    append_json_string(out, m.served_by_region);
  }
  if (m.served_by_primary) out += *m.served_by_primary ? ",\"served_by_primary\":true" : ",\"served_by_primary\":false";
  if (!m.at.empty()) {
    out += ",\"seq\":";
    append_json_string(out, to_string(m.at));
  }
  out += '}';
}

void append_query_result(std::string& out, const query_result& r) {
  out += "{\"columns\":[";
  for (std::size_t i = 0; i < r.columns.size(); ++i) {
    if (i) out += ',';
    append_json_string(out, r.columns[i]);
  }
  out += "],\"rows\":[";
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    if (i) out += ',';
    out += '[';
    const auto& row = r.rows[i];
    for (std::size_t k = 0; k < row.size(); ++k) {
      if (k) out += ',';
      append_value(out, row[k]);
    }
    out += ']';
  }
  out += "],\"meta\":";
  append_meta(out, r.meta);
  out += '}';
}

}  // namespace

void encode_response(const response& r, std::string& out) {
  out += "{\"id\":";
  out += r.id_json;
  if (const auto* err = std::get_if<error>(&r.body)) {
    out += ",\"ok\":false,\"error\":{\"code\":\"";
    out += to_string(err->code);
    out += "\",\"message\":";
    append_json_string(out, err->message);
    if (!err->store.empty()) {
      out += ",\"store\":";
      append_json_string(out, err->store);
    }
    if (err->index) {
      out += ",\"index\":";
      append_int(out, static_cast<std::int64_t>(*err->index));
    }
    out += "}}\n";
    return;
  }
  out += ",\"ok\":true,\"result\":";
  const auto& s = std::get<success>(r.body);
  switch (s.index()) {
    case 0: {
      const auto& h = std::get<hello_result>(s);
      out += "{\"server\":";
      append_json_string(out, h.server);
      out += ",\"version\":";
      append_json_string(out, h.version);
      out += ",\"protocol\":";
      append_int(out, h.protocol);
      out += '}';
      break;
    }
    case 1: out += "{}"; break;
    case 2: append_query_result(out, std::get<query_result>(s)); break;
    case 3: {
      const auto& all = std::get<std::vector<query_result>>(s);
      out += "{\"results\":[";
      for (std::size_t i = 0; i < all.size(); ++i) {
        if (i) out += ',';
        append_query_result(out, all[i]);
      }
      out += "]}";
      break;
    }
  }
  out += "}\n";
}

std::string encode_response(const response& r) {
  std::string out;
  encode_response(r, out);
  return out;
}

// ---- client side ----------------------------------------------------------------------------

namespace {

void append_params(std::string& out, const params& p) {
  if (p.is_named) {
    out += '{';
    for (std::size_t i = 0; i < p.named.size(); ++i) {
      if (i) out += ',';
      append_json_string(out, p.named[i].first);
      out += ':';
      append_value(out, p.named[i].second);
    }
    out += '}';
  } else {
    out += '[';
    for (std::size_t i = 0; i < p.positional.size(); ++i) {
      if (i) out += ',';
      append_value(out, p.positional[i]);
    }
    out += ']';
  }
}

void append_statement(std::string& out, const statement& st) {
  out += "\"sql\":";
  append_json_string(out, st.sql);
  if (!st.params.empty() || st.params.is_named) {
    out += ",\"params\":";
    append_params(out, st.params);
  }
}

std::optional<query_result> decode_query_result(const json::value& v, std::string& error) {
  const auto* o = v.if_object();
  if (o == nullptr) {
    error = "result is not an object";
    return std::nullopt;
  }
  query_result r;
  const auto* cols = o->if_contains("columns");
  const auto* rows = o->if_contains("rows");
  if (cols == nullptr || !cols->is_array() || rows == nullptr || !rows->is_array()) {
    error = "result lacks columns/rows";
    return std::nullopt;
  }
  for (const auto& c : cols->get_array()) {
    if (!c.is_string()) {
      error = "column name is not a string";
      return std::nullopt;
    }
    r.columns.emplace_back(c.get_string());
  }
  for (const auto& row : rows->get_array()) {
    if (!row.is_array()) {
      error = "row is not an array";
      return std::nullopt;
    }
    auto& out = r.rows.emplace_back();
    for (const auto& cell : row.get_array()) {
      auto val = value_from_json(cell, error, "cell");
      if (!val) return std::nullopt;
      out.push_back(std::move(*val));
    }
  }
  if (const auto* m = o->if_contains("meta"); m != nullptr && m->is_object()) {
    const auto& mo = m->get_object();
    auto int_field = [&](const char* name, std::int64_t& target) {
      if (const auto* f = mo.if_contains(name); f != nullptr && f->is_int64()) target = f->get_int64();
    };
    int_field("changes", r.meta.changes);
    int_field("last_row_id", r.meta.last_row_id);
    int_field("rows_read", r.meta.rows_read);
    int_field("rows_written", r.meta.rows_written);
    if (const auto* f = mo.if_contains("duration_ms"); f != nullptr && f->is_number())
      r.meta.duration_ms = f->to_number<double>();
    if (const auto* f = mo.if_contains("served_by"); f != nullptr && f->is_string())
      r.meta.served_by = std::string(f->get_string());
    if (const auto* f = mo.if_contains("exact"); f != nullptr && f->is_bool()) r.meta.exact = f->get_bool();
    if (const auto* f = mo.if_contains("served_by_region"); f != nullptr && f->is_string())
      r.meta.served_by_region = std::string(f->get_string());
    if (const auto* f = mo.if_contains("served_by_primary"); f != nullptr && f->is_bool()) r.meta.served_by_primary = f->get_bool();
    if (const auto* f = mo.if_contains("seq"); f != nullptr && f->is_string()) {
      if (auto p = parse_position(f->get_string())) r.meta.at = std::move(*p);
    }
  }
  return r;
}

}  // namespace

void encode_request(const request& r, std::string& out) {
  out += "{\"id\":";
  out += r.id_json;
  out += ",\"op\":\"";
  out += op_name(r.kind);
  out += '"';
  switch (r.kind) {
    case op::ping: break;
    case op::hello:
      if (!r.hello.token.empty()) {
        out += ",\"token\":";
        append_json_string(out, r.hello.token);
      }
      if (!r.hello.client.empty()) {
        out += ",\"client\":";
        append_json_string(out, r.hello.client);
      }
      if (!r.hello.routing_key.empty()) {
        out += ",\"routing_key\":";
        append_json_string(out, r.hello.routing_key);
      }
      if (!r.hello.min_seq.empty()) {
        out += ",\"min_seq\":";
        append_json_string(out, to_string(r.hello.min_seq));
      }
      break;
    case op::query:
      out += ',';
      append_statement(out, r.statements.at(0));
      break;
    case op::batch:
      out += ",\"statements\":[";
      for (std::size_t i = 0; i < r.statements.size(); ++i) {
        if (i) out += ',';
        out += '{';
        append_statement(out, r.statements[i]);
        out += '}';
      }
      out += ']';
      break;
  }
  if ((r.kind == op::query || r.kind == op::batch) && !r.routing_key.empty()) {
    out += ",\"routing_key\":";
    append_json_string(out, r.routing_key);
  }
  if (r.kind == op::query || r.kind == op::batch) {
    if (r.min_seq_leader) {
      out += ",\"min_seq\":\"leader\"";
    } else if (!r.min_seq.empty()) {
      out += ",\"min_seq\":";
      append_json_string(out, to_string(r.min_seq));
    }
  }
  out += "}\n";
}

std::variant<response, std::string> decode_response(std::string_view frame) {
  auto doc = read_json(frame);
  if (!doc.ok()) return "malformed JSON: " + doc.error;
  const auto* o = doc.value.if_object();
  if (o == nullptr) return std::string("response is not an object");
  response r;
  if (const auto* id = o->if_contains("id"); id != nullptr && !id->is_null()) {
    auto id_json = read_id(*id);
    if (!id_json) return std::string("bad id");
    r.id_json = std::move(*id_json);
  }
  const auto* ok = o->if_contains("ok");
  if (ok == nullptr || !ok->is_bool()) return std::string("response lacks 'ok'");
  if (!ok->get_bool()) {
    const auto* e = o->if_contains("error");
    if (e == nullptr || !e->is_object()) return std::string("error response lacks 'error'");
    const auto& eo = e->get_object();
    error err;
    if (const auto* c = eo.if_contains("code"); c != nullptr && c->is_string()) {
      err.code = errc_from_string(c->get_string()).value_or(errc::internal);
    }
    if (const auto* m = eo.if_contains("message"); m != nullptr && m->is_string())
      err.message = std::string(m->get_string());
    if (const auto* s = eo.if_contains("store"); s != nullptr && s->is_string())
      err.store = std::string(s->get_string());
    if (const auto* i = eo.if_contains("index"); i != nullptr && i->is_int64())
      err.index = static_cast<std::size_t>(i->get_int64());
    r.body = std::move(err);
    return r;
  }
  const auto* res = o->if_contains("result");
  if (res == nullptr || !res->is_object()) return std::string("response lacks 'result'");
  const auto& ro = res->get_object();
  std::string error;
  if (const auto* all = ro.if_contains("results"); all != nullptr && all->is_array()) {
    std::vector<query_result> results;
    for (const auto& one : all->get_array()) {
      auto q = decode_query_result(one, error);
      if (!q) return error;
      results.push_back(std::move(*q));
    }
    r.body = success{std::move(results)};
  } else if (ro.contains("columns")) {
    auto q = decode_query_result(*res, error);
    if (!q) return error;
    r.body = success{std::move(*q)};
  } else if (const auto* server = ro.if_contains("server"); server != nullptr) {
    hello_result h;
    if (server->is_string()) h.server = std::string(server->get_string());
    if (const auto* v = ro.if_contains("version"); v != nullptr && v->is_string())
      h.version = std::string(v->get_string());
    if (const auto* p = ro.if_contains("protocol"); p != nullptr && p->is_int64())
      h.protocol = static_cast<int>(p->get_int64());
    r.body = success{h};
  } else {
    r.body = success{ping_result{}};
  }
  return r;
}

}  // namespace tandem::protocol
