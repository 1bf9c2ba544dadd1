#include "protocol/client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <charconv>

#include "protocol/codec.hpp"

namespace tandem::protocol {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

error unavailable(std::string message) { return error{errc::unavailable, std::move(message), {}, {}}; }

std::string url_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int v = 0;
      auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
      if (ec == std::errc() && p == s.data() + i + 3) {
        out.push_back(static_cast<char>(v));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i] == '+' ? ' ' : s[i]);
  }
  return out;
}

}  // namespace

boost::system::result<client_options, error> parse_url(std::string_view url) {
  client_options o;
  auto bad = [&](std::string why) {
    return error{errc::bad_request, "bad URL '" + std::string(url) + "': " + why, {}, {}};
  };
  constexpr std::string_view scheme = "tandem://";
  if (url.substr(0, scheme.size()) != scheme) return bad("it must start with tandem://");
  std::string_view rest = url.substr(scheme.size());
  const auto slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  std::string_view query;
  if (slash != std::string_view::npos) {
    const auto q = rest.find('?', slash);
    if (q != std::string_view::npos) query = rest.substr(q + 1);
  }
  std::string_view host = authority;
  if (!authority.empty() && authority.front() == '[') {  // [::1]:6440
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated [ in host");
    host = authority.substr(1, close - 1);
    authority = authority.substr(close + 1);
    if (!authority.empty() && authority.front() != ':') return bad("junk after ]");
  } else {
    const auto colon = authority.rfind(':');
    host = authority.substr(0, colon);
    authority = colon == std::string_view::npos ? std::string_view{} : authority.substr(colon);
  }
  if (host.empty()) return bad("missing host");
  o.host = std::string(host);
  if (!authority.empty()) {
    const auto port_text = authority.substr(1);
    unsigned port = 0;
    auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || p != port_text.data() + port_text.size() || port == 0 || port > 65535)
      return bad("bad port '" + std::string(port_text) + "'");
    o.port = static_cast<std::uint16_t>(port);
  }
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    const std::string key(pair.substr(0, eq));
    const std::string val = eq == std::string_view::npos ? "" : url_decode(pair.substr(eq + 1));
    auto flag = [&](bool& target) -> bool {
      if (val == "1" || val == "true") target = true;
      else if (val == "0" || val == "false") target = false;
      else return false;
      return true;
    };
    if (key == "token") o.token = val;
    else if (key == "routing_key") o.routing_key = val;
    else if (key == "client") o.client_name = val;
    else if (key == "ca_file") o.ca_file = val;
    else if (key == "tls") { if (!flag(o.tls)) return bad("tls must be 0 or 1"); }
    else if (key == "tls_verify") { if (!flag(o.tls_verify)) return bad("tls_verify must be 0 or 1"); }
    else if (key == "timeout_ms") {
      long ms = 0;
      auto [p, ec] = std::from_chars(val.data(), val.data() + val.size(), ms);
      if (ec != std::errc() || p != val.data() + val.size() || ms <= 0) return bad("bad timeout_ms");
      o.timeout = std::chrono::milliseconds(ms);
    } else {
      return bad("unknown option '" + key + "'");
    }
  }
  return o;
}

struct client::impl {
  asio::io_context ioc;
  asio::ssl::context ssl_ctx{asio::ssl::context::tls_client};
  asio::ssl::stream<tcp::socket> stream{ioc, ssl_ctx};
  bool tls = false;
  bool broken = false;
  frame_reader reader;
  std::string out;

  // Runs the async operation started by `start` to completion or until `timeout`, in which case
  // the socket is closed and the operation fails. Returns the operation's error.
  template <class Start>
  boost::system::error_code run(Start start, std::chrono::milliseconds timeout) {
    boost::system::error_code result = asio::error::would_block;
    ioc.restart();
    start(result);
    ioc.run_for(timeout);
    if (result == asio::error::would_block) {
      boost::system::error_code ignored;
      stream.next_layer().close(ignored);
      ioc.restart();
      ioc.run();
      result = asio::error::timed_out;
    }
    return result;
  }

  boost::system::error_code write_all(std::chrono::milliseconds timeout) {
    auto ec = run(
        [&](boost::system::error_code& r) {
          auto done = [&r](boost::system::error_code e, std::size_t) { r = e; };
          if (tls) asio::async_write(stream, asio::buffer(out), done);
          else asio::async_write(stream.next_layer(), asio::buffer(out), done);
        },
        timeout);
    out.clear();
    return ec;
  }

  // Reads until a whole frame is buffered.
  boost::system::error_code read_frame(std::string& frame, std::chrono::milliseconds timeout) {
    for (;;) {
      auto next = reader.next();
      if (next.st == frame_reader::status::frame) {
        frame.assign(next.frame);
        return {};
      }
      if (next.st == frame_reader::status::too_large) return asio::error::message_size;
      constexpr std::size_t chunk = 64 * 1024;
      char* buf = reader.prepare(chunk);
      std::size_t got = 0;
      auto ec = run(
          [&](boost::system::error_code& r) {
            auto done = [&r, &got](boost::system::error_code e, std::size_t n) {
              got = n;
              r = e;
            };
            if (tls) stream.async_read_some(asio::buffer(buf, chunk), done);
            else stream.next_layer().async_read_some(asio::buffer(buf, chunk), done);
          },
          timeout);
      reader.commit(got);
      if (ec) return ec;
    }
  }
};

client::client(std::unique_ptr<impl> i, client_options options)
    : impl_(std::move(i)), options_(std::move(options)) {}

client::~client() = default;

outcome<std::unique_ptr<client::impl>> client::open(const client_options& options) {
  auto i = std::make_unique<impl>();
  i->tls = options.tls;
  const std::string where = options.host + ":" + std::to_string(options.port);
  boost::system::error_code ec;
  if (options.tls) {
    if (options.tls_verify) {
      i->ssl_ctx.set_default_verify_paths(ec);
      if (!options.ca_file.empty()) i->ssl_ctx.load_verify_file(options.ca_file, ec);
      if (ec) return unavailable("cannot load CA file '" + options.ca_file + "': " + ec.message());
      i->stream.set_verify_mode(asio::ssl::verify_peer);
      i->stream.set_verify_callback(asio::ssl::host_name_verification(options.host));
    } else {
      i->stream.set_verify_mode(asio::ssl::verify_none);
    }
    SSL_set_tlsext_host_name(i->stream.native_handle(), options.host.c_str());
  }
  tcp::resolver resolver(i->ioc);
  auto endpoints = resolver.resolve(options.host, std::to_string(options.port), ec);
  if (ec) return unavailable("cannot resolve " + options.host + ": " + ec.message());
  ec = i->run(
      [&](boost::system::error_code& r) {
        asio::async_connect(i->stream.next_layer(), endpoints,
                            [&r](boost::system::error_code e, const tcp::endpoint&) { r = e; });
      },
      options.timeout);
  if (ec) return unavailable("cannot connect to " + where + ": " + ec.message());
  i->stream.next_layer().set_option(tcp::no_delay(true), ec);
  if (options.tls) {
    ec = i->run(
        [&](boost::system::error_code& r) {
          i->stream.async_handshake(asio::ssl::stream_base::client,
                                    [&r](boost::system::error_code e) { r = e; });
        },
        options.timeout);
    if (ec) return unavailable("TLS handshake with " + where + " failed: " + ec.message());
  }
  return i;
}

outcome<void> client::hello() {
  if (options_.token.empty() && options_.routing_key.empty() && position_.empty()) return {};
  request h;
  h.kind = op::hello;
  h.hello = {options_.token, options_.client_name, options_.routing_key, position_};
  if (auto s = send(std::move(h)); !s) return s.error();
  auto r = receive();
  if (!r) return r.error();
  if (auto* e = std::get_if<error>(&r->body)) return *e;
  return {};
}

outcome<std::unique_ptr<client>> client::connect(const client_options& options) {
  auto i = open(options);
  if (!i) return i.error();
  std::unique_ptr<client> c(new client(std::move(*i), options));
  c->position_ = options.min_seq;
  if (auto h = c->hello(); !h) return h.error();
  return c;
}

outcome<void> client::reconnect() {
  auto i = open(options_);
  if (!i) return i.error();
  impl_ = std::move(*i);
  return hello();
}

outcome<void> client::send(request r) {
  if (impl_->broken) return unavailable("connection is closed");
  if (r.id_json == "null") r.id_json = std::to_string(next_id_++);
  if ((r.kind == op::query || r.kind == op::batch) && r.min_seq.empty() && !r.min_seq_leader) r.min_seq = position_;
  encode_request(r, impl_->out);
  if (auto ec = impl_->write_all(options_.timeout)) {
    impl_->broken = true;
    return unavailable("send failed: " + ec.message());
  }
  return {};
}

outcome<response> client::receive() {
  if (impl_->broken) return unavailable("connection is closed");
  std::string frame;
  if (auto ec = impl_->read_frame(frame, options_.timeout)) {
    impl_->broken = true;
    if (ec == asio::error::timed_out) {
      return error{errc::timeout, "no response within " + std::to_string(options_.timeout.count()) + " ms", {}, {}};
    }
    return unavailable("receive failed: " + ec.message());
  }
  auto decoded = decode_response(frame);
  if (auto* why = std::get_if<std::string>(&decoded)) {
    impl_->broken = true;
    return error{errc::internal, "bad response from server: " + *why, {}, {}};
  }
  auto& resp = std::get<response>(decoded);
  if (auto* s = std::get_if<success>(&resp.body)) {
    if (auto* q = std::get_if<query_result>(s)) keep_newer(position_, q->meta.at);
    if (auto* all = std::get_if<std::vector<query_result>>(s)) {
      for (const auto& q : *all) keep_newer(position_, q.meta.at);
    }
  }
  return std::move(resp);
}

namespace {

template <class T>
outcome<T> expect(outcome<response> r) {
  if (!r) return r.error();
  if (auto* e = std::get_if<error>(&r->body)) return *e;
  auto& s = std::get<success>(r->body);
  if (auto* t = std::get_if<T>(&s)) return std::move(*t);
  return error{errc::internal, "unexpected response kind", {}, {}};
}

}  // namespace

outcome<query_result> client::query(std::string sql, params p) {
  request r;
  r.kind = op::query;
  r.statements.push_back({std::move(sql), std::move(p)});
  if (auto s = send(std::move(r)); !s) return s.error();
  return expect<query_result>(receive());
}

outcome<std::vector<query_result>> client::batch(std::vector<statement> statements) {
  request r;
  r.kind = op::batch;
  r.statements = std::move(statements);
  if (auto s = send(std::move(r)); !s) return s.error();
  return expect<std::vector<query_result>>(receive());
}

outcome<ping_result> client::ping() {
  request r;
  r.kind = op::ping;
  if (auto s = send(std::move(r)); !s) return s.error();
  return expect<ping_result>(receive());
}

}  // namespace tandem::protocol
