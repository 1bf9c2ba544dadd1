#include "protocol/json_reader.hpp"

#include <charconv>

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/value_stack.hpp>
#include <vector>

#include "protocol/text.hpp"

namespace tandem::protocol {
namespace {

namespace json = boost::json;

enum class read_error { integer_out_of_range = 1 };

// Builds a json::value like Boost's own parser does, plus the checks described in the header.
class strict_handler {
 public:
  static constexpr std::size_t max_object_size = json::object::max_size();
  static constexpr std::size_t max_array_size = json::array::max_size();
  static constexpr std::size_t max_key_size = json::string::max_size();
  static constexpr std::size_t max_string_size = json::string::max_size();

  strict_handler(json::storage_ptr sp, bool track, bool big_as_double, const std::size_t* line)
      : stack_(std::move(sp)), track_(track), big_as_double_(big_as_double), line_(line) {}

  json::value_stack& stack() { return stack_; }
  std::map<std::string, std::size_t>& key_lines() { return key_lines_; }
  bool integer_overflow() const { return integer_overflow_; }

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_object_begin(json::error_code&) {
    if (track_) frames_.push_back({false, {}, 0});
    return true;
  }
  bool on_object_end(std::size_t n, json::error_code&) {
    stack_.push_object(n);
    if (track_) frames_.pop_back();
    value_done();
    return true;
  }
  bool on_array_begin(json::error_code&) {
    if (track_) frames_.push_back({true, {}, 0});
    return true;
  }
  bool on_array_end(std::size_t n, json::error_code&) {
    stack_.push_array(n);
    if (track_) frames_.pop_back();
    value_done();
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    stack_.push_chars(s);
    if (track_) key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    stack_.push_key(s);
    if (track_) {
      key_.append(s.data(), s.size());
      frames_.back().key = std::move(key_);
      key_.clear();
      key_lines_.emplace(path(), *line_);
    }
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    stack_.push_chars(s);
    return true;
  }
  bool on_string(json::string_view s, std::size_t, json::error_code&) {
    stack_.push_string(s);
    value_done();
    return true;
  }
  bool on_number_part(json::string_view s, json::error_code&) {
    number_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t i, json::string_view, json::error_code&) {
    number_.clear();
    stack_.push_int64(i);
    value_done();
    return true;
  }
  bool on_uint64(std::uint64_t u, json::string_view, json::error_code&) {
    number_.clear();
    stack_.push_uint64(u);
    value_done();
    return true;
  }
  bool on_double(double d, json::string_view s, json::error_code& ec) {
    number_.append(s.data(), s.size());
    // A literal without fraction or exponent that still became a double did not fit 64 bits.
    const bool integral = number_.find_first_of(".eE") == std::string::npos;
    if (integral && !big_as_double_) {
      number_.clear();
      integer_overflow_ = true;
      ec = json::error::exponent_overflow;  // any error stops the parse; we report our own text
      return false;
    }
    // Boost.JSON 1.81 rounds some 17-digit literals 1 ulp off; from_chars rounds correctly, so
    // every double a client prints with enough digits arrives bit for bit. Out of range (1e999)
    // keeps Boost's answer (infinity).
    double exact = 0;
    const auto [end, err] = std::from_chars(number_.data(), number_.data() + number_.size(), exact);
    if (err == std::errc() && end == number_.data() + number_.size()) d = exact;
    number_.clear();
    stack_.push_double(d);
    value_done();
    return true;
  }
  bool on_bool(bool b, json::error_code&) {
    stack_.push_bool(b);
    value_done();
    return true;
  }
  bool on_null(json::error_code&) {
    stack_.push_null();
    value_done();
    return true;
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }

 private:
  struct frame {
    bool is_array;
    std::string key;
    std::size_t index;
  };

  void value_done() {
    if (track_ && !frames_.empty() && frames_.back().is_array) ++frames_.back().index;
  }

  std::string path() const {
    std::string p;
    for (const auto& f : frames_) {
      if (f.is_array) {
        p += '[' + std::to_string(f.index) + ']';
      } else {
        if (!p.empty()) p += '.';
        p += f.key;
      }
    }
    return p;
  }

  json::value_stack stack_;
  bool track_;
  bool big_as_double_;
  const std::size_t* line_;
  std::string number_;
  std::string key_;
  std::vector<frame> frames_;
  std::map<std::string, std::size_t> key_lines_;
  bool integer_overflow_ = false;
};

}  // namespace

json_document read_json(std::string_view text, const json_read_options& options,
                        json::storage_ptr sp) {
  json::parse_options po;
  po.allow_comments = options.allow_comments;
  po.allow_trailing_commas = options.allow_trailing_commas;
  po.allow_invalid_utf8 = false;
  po.max_depth = options.max_depth;

  std::size_t line = 1;
  json::basic_parser<strict_handler> parser(po, sp, options.track_key_lines, options.big_integers_as_double, &line);
  parser.handler().stack().reset(sp);

  json_document doc;
  json::error_code ec;
  std::size_t consumed = 0;
  if (options.track_key_lines) {
    // Feed one line at a time so that each callback knows its line. (Byte-at-a-time feeding
    // trips over comments at the start of a document in Boost.JSON 1.81.)
    while (consumed < text.size() && !ec) {
      const auto nl = text.find('\n', consumed);
      const std::size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
      parser.write_some(true, text.data() + consumed, end - consumed, ec);
      consumed = end;
      if (!ec && nl != std::string_view::npos) ++line;
    }
    if (!ec) parser.write_some(false, nullptr, 0, ec);
  } else {
    consumed = parser.write_some(false, text.data(), text.size(), ec);
    if (!ec && consumed < text.size()) ec = json::error::extra_data;
  }

  if (ec) {
    if (parser.handler().integer_overflow()) {
      doc.error = "integer literal does not fit in 64 bits";
    } else if (!is_valid_utf8(text)) {
      doc.error = "text is not valid UTF-8";
    } else {
      doc.error = ec.message();
    }
    doc.error_line = line;
    return doc;
  }
  doc.value = parser.handler().stack().release();
  doc.key_lines = std::move(parser.handler().key_lines());
  return doc;
}

}  // namespace tandem::protocol
