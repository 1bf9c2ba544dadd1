#include "protocol/codec.hpp"

#include <gtest/gtest.h>

#include "protocol/json_reader.hpp"

#include <cmath>
#include <cstring>
#include <limits>

namespace tandem::protocol {
namespace {

// The error a frame decodes to ("" if it decodes to a request).
std::string decode_error(std::string_view frame) {
  auto r = decode_request(frame);
  if (auto* resp = std::get_if<response>(&r)) {
    const auto& e = std::get<error>(resp->body);
    return std::string(to_string(e.code)) + ": " + e.message;
  }
  return "";
}

request decode_ok(std::string_view frame) {
  auto r = decode_request(frame);
  EXPECT_TRUE(std::holds_alternative<request>(r)) << decode_error(frame);
  return std::holds_alternative<request>(r) ? std::get<request>(r) : request{};
}

TEST(FrameReader, SplitsLinesAcrossReads) {
  frame_reader fr(1024);
  const std::string input = "{\"a\":1}\r\n\n{\"b\"";
  std::memcpy(fr.prepare(input.size()), input.data(), input.size());
  fr.commit(input.size());
  auto f = fr.next();
  ASSERT_EQ(f.st, frame_reader::status::frame);
  EXPECT_EQ(f.frame, "{\"a\":1}");
  EXPECT_EQ(fr.next().st, frame_reader::status::need_more);  // the empty line is skipped
  const std::string rest = ":2}\n";
  std::memcpy(fr.prepare(rest.size()), rest.data(), rest.size());
  fr.commit(rest.size());
  f = fr.next();
  ASSERT_EQ(f.st, frame_reader::status::frame);
  EXPECT_EQ(f.frame, "{\"b\":2}");
}

TEST(FrameReader, RejectsALineOverTheLimitEvenBeforeItsNewline) {
  frame_reader fr(16);
  const std::string input(17, 'x');
  std::memcpy(fr.prepare(input.size()), input.data(), input.size());
  fr.commit(input.size());
  EXPECT_EQ(fr.next().st, frame_reader::status::too_large);
}

TEST(FrameReader, AcceptsALineExactlyAtTheLimit) {
  frame_reader fr(16);
  const std::string input = std::string(16, 'x') + "\n";
  std::memcpy(fr.prepare(input.size()), input.data(), input.size());
  fr.commit(input.size());
  EXPECT_EQ(fr.next().st, frame_reader::status::frame);
}

TEST(DecodeRequest, BadInputGetsBadRequest) {
  struct bad {
    const char* frame;
    const char* expect_substring;
  };
  const bad cases[] = {
      {"{", "malformed JSON"},
      {"not json", "malformed JSON"},
      {"[1,2]", "must be a JSON object"},
      {"\"str\"", "must be a JSON object"},
      {"{\"op\":\"ping\"}", "missing field 'id'"},
      {"{\"id\":1.5,\"op\":\"ping\"}", "'id' must be"},
      {"{\"id\":true,\"op\":\"ping\"}", "'id' must be"},
      {"{\"id\":{},\"op\":\"ping\"}", "'id' must be"},
      {"{\"id\":1}", "missing field 'op'"},
      {"{\"id\":1,\"op\":7}", "'op' must be a string"},
      {"{\"id\":1,\"op\":\"drop\"}", "unknown op 'drop'"},
      {"{\"id\":1,\"op\":\"ping\",\"x\":1}", "unknown field 'x'"},
      {"{\"id\":1,\"op\":\"query\"}", "missing field 'sql'"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":5}", "'sql' must be a string"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"x\",\"parms\":[]}", "unknown field 'parms'"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"x\",\"params\":5}", "'params' must be an array"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"x\",\"params\":[[1]]}", "params[0]: an array is not a value"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"x\",\"params\":[{\"b64\":\"\"}]}", "params[0]: an object value must be"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"x\",\"params\":[{\"base64\":\"!!\"}]}", "invalid base64"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"x\",\"params\":[{\"base64\":\"QQ\"}]}", "invalid base64"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"x\",\"params\":[9223372036854775808]}", "beyond the 64-bit signed range"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"x\",\"params\":[123456789012345678901234567890]}", "does not fit in 64 bits"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"x\",\"params\":[-9223372036854775809]}", "does not fit in 64 bits"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"\xff\"}", "not valid UTF-8"},
      {"{\"id\":1,\"op\":\"query\",\"sql\":\"\xc0\xaf\"}", "not valid UTF-8"},
      {"{\"id\":1,\"op\":\"batch\"}", "missing field 'statements'"},
      {"{\"id\":1,\"op\":\"batch\",\"statements\":{}}", "'statements' must be an array"},
      {"{\"id\":1,\"op\":\"batch\",\"statements\":[]}", "must not be empty"},
      {"{\"id\":1,\"op\":\"batch\",\"statements\":[\"SELECT 1\"]}", "statements[0]: must be an object"},
      {"{\"id\":1,\"op\":\"batch\",\"statements\":[{\"sql\":\"x\",\"id\":2}]}", "statements[0]: unknown field 'id'"},
      {"{\"id\":1,\"op\":\"hello\",\"token\":5}", "'token' must be a string"},
      {"{\"id\":1,\"op\":\"ping\"} {}", "malformed JSON"},
  };
  for (const auto& c : cases) {
    const auto err = decode_error(c.frame);
    EXPECT_EQ(err.rfind("BAD_REQUEST: ", 0), 0u) << c.frame << " -> " << err;
    EXPECT_NE(err.find(c.expect_substring), std::string::npos) << c.frame << " -> " << err;
  }
}

TEST(DecodeRequest, EchoesTheIdWhenItCouldBeRead) {
  auto r = decode_request("{\"id\":\"abc\",\"op\":\"nope\"}");
  ASSERT_TRUE(std::holds_alternative<response>(r));
  EXPECT_EQ(std::get<response>(r).id_json, "\"abc\"");
  r = decode_request("{\"id\":9223372036854775807,\"op\":\"nope\"}");
  EXPECT_EQ(std::get<response>(r).id_json, "9223372036854775807");
  r = decode_request("{garbage");
  EXPECT_EQ(std::get<response>(r).id_json, "null");
}

TEST(DecodeRequest, ValuesAreExact) {
  auto req = decode_ok(
      R"({"id":1,"op":"query","sql":"x","params":[null,true,false,9223372036854775807,-9223372036854775808,0.1,1e300,"t\u00e9xt",{"base64":"AAEC/w=="}]})");
  ASSERT_EQ(req.statements.size(), 1u);
  const auto& p = req.statements[0].params.positional;
  ASSERT_EQ(p.size(), 9u);
  EXPECT_EQ(p[0], value{});
  EXPECT_EQ(p[1], value{std::int64_t{1}});
  EXPECT_EQ(p[2], value{std::int64_t{0}});
  EXPECT_EQ(p[3], value{std::numeric_limits<std::int64_t>::max()});
  EXPECT_EQ(p[4], value{std::numeric_limits<std::int64_t>::min()});
  EXPECT_EQ(p[5], value{0.1});
  EXPECT_EQ(p[6], value{1e300});
  EXPECT_EQ(p[7], value{std::string("t\xc3\xa9xt")});
  EXPECT_EQ(p[8], value{blob{std::string("\x00\x01\x02\xff", 4)}});
}

TEST(DecodeRequest, NamedParamsKeepTheirNames) {
  auto req = decode_ok(R"({"id":1,"op":"query","sql":"x","params":{"a":1,":b":2,"@c":3,"$d":4}})");
  const auto& p = req.statements[0].params;
  ASSERT_TRUE(p.is_named);
  ASSERT_EQ(p.named.size(), 4u);
  EXPECT_EQ(p.named[1].first, ":b");
}

TEST(DecodeRequest, Batch) {
  auto req = decode_ok(R"({"id":"b","op":"batch","statements":[{"sql":"a"},{"sql":"b","params":[1]}]})");
  EXPECT_EQ(req.kind, op::batch);
  ASSERT_EQ(req.statements.size(), 2u);
  EXPECT_EQ(req.statements[1].params.positional.size(), 1u);
}

TEST(DecodeRequest, BatchLimit) {
  std::string frame = R"({"id":1,"op":"batch","statements":[)";
  for (int i = 0; i < 4; ++i) frame += std::string(i ? "," : "") + R"({"sql":"x"})";
  frame += "]}";
  auto r = decode_request(frame, decode_limits{3});
  ASSERT_TRUE(std::holds_alternative<response>(r));
}

TEST(EncodeResponse, FloatsRoundTripAndStayFloats) {
  for (double d : {0.1, 1.0, -0.0, 1e300, 5e-324, 123456789.125, -2.5}) {
    std::string s;
    append_value(s, value{d});
    auto back = decode_response("{\"id\":1,\"ok\":true,\"result\":{\"columns\":[\"x\"],\"rows\":[[" + s + "]]}}");
    const auto& q = std::get<query_result>(std::get<success>(std::get<response>(back).body));
    const auto& v = q.rows.at(0).at(0);
    ASSERT_TRUE(std::holds_alternative<double>(v)) << s;
    EXPECT_EQ(std::get<double>(v), d) << s;
    EXPECT_EQ(std::signbit(std::get<double>(v)), std::signbit(d)) << s;
  }
  std::string inf;
  append_value(inf, value{std::numeric_limits<double>::infinity()});
  EXPECT_EQ(inf, "1e999");
}

TEST(EncodeResponse, TextIsEscapedAndAlwaysValidUtf8) {
  std::string s;
  append_value(s, value{std::string("a\"b\\c\n\x01\xe2\x82\xac\xff", 11)});
  EXPECT_EQ(s, "\"a\\\"b\\\\c\\n\\u0001\xe2\x82\xac\xef\xbf\xbd\"");
}

TEST(EncodeResponse, ErrorShape) {
  auto line = encode_response(make_error("7", errc::constraint, "UNIQUE failed", "sqlite", 2));
  EXPECT_EQ(line,
            "{\"id\":7,\"ok\":false,\"error\":{\"code\":\"CONSTRAINT\",\"message\":\"UNIQUE failed\","
            "\"store\":\"sqlite\",\"index\":2}}\n");
}

TEST(RoundTrip, RequestThroughEncodeAndDecode) {
  request r;
  r.id_json = "42";
  r.kind = op::query;
  statement st;
  st.sql = "SELECT ?";
  st.params.positional = {value{std::int64_t{-9223372036854775807 - 1}}, value{std::string("\x00z", 2)},
                          value{blob{"\x00\x01"}}, value{2.5}, value{}};
  r.statements.push_back(st);
  std::string line;
  encode_request(r, line);
  ASSERT_EQ(line.back(), '\n');
  line.pop_back();
  auto back = decode_ok(line);
  EXPECT_EQ(back.id_json, "42");
  EXPECT_EQ(back.statements.at(0).params.positional, st.params.positional);
}

TEST(DecodeRequest, PerRequestRoutingKey) {
  EXPECT_EQ(decode_ok(R"({"id":1,"op":"query","sql":"SELECT 1","routing_key":"user-7"})").routing_key, "user-7");
  EXPECT_EQ(decode_ok(R"({"id":1,"op":"batch","statements":[{"sql":"SELECT 1"}],"routing_key":"u"})").routing_key, "u");
  EXPECT_EQ(decode_ok(R"({"id":1,"op":"query","sql":"SELECT 1","routing_key":null})").routing_key, "");
  EXPECT_NE(decode_error(R"({"id":1,"op":"query","sql":"SELECT 1","routing_key":7})").find("routing_key"), std::string::npos);
  EXPECT_NE(decode_error(R"({"id":1,"op":"batch","statements":[{"sql":"SELECT 1","routing_key":"u"}]})").find("unknown field"),
            std::string::npos);
  request r;
  r.id_json = "3";
  r.kind = op::query;
  r.statements.push_back({"SELECT 1", {}});
  r.routing_key = "k";
  std::string line;
  encode_request(r, line);
  line.pop_back();
  EXPECT_EQ(decode_ok(line).routing_key, "k");
}

TEST(Position, ParsesOnlyWellFormedTokens) {
  EXPECT_EQ(parse_position("sqlite:42"), (position{"sqlite", 42}));
  EXPECT_EQ(parse_position("d1:0"), (position{"d1", 0}));
  EXPECT_EQ(parse_position("d1:9223372036854775807"), (position{"d1", 9223372036854775807}));
  for (const char* bad : {"", "sqlite", "sqlite:", ":42", "sqlite:-1", "sqlite:+1", "sqlite:042", "sqlite:-0", "sqlite:4x",
                          "SQLite:1", "a b:1", "sqlite:9223372036854775808", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1", "leader"}) {
    EXPECT_FALSE(parse_position(bad)) << bad;
  }
  EXPECT_EQ(to_string(position{"sqlite", 42}), "sqlite:42");
}

TEST(Position, KeepNewerComparesWithinOneJournalAndTakesTheLatestAcrossTwo) {
  position held;
  keep_newer(held, {"sqlite", 5});
  EXPECT_EQ(held, (position{"sqlite", 5}));
  keep_newer(held, {"sqlite", 3});
  EXPECT_EQ(held, (position{"sqlite", 5}));
  keep_newer(held, {});
  EXPECT_EQ(held, (position{"sqlite", 5}));
  keep_newer(held, {"d1", 1});  // another journal (after a switch-primary): seen later, so newer
  EXPECT_EQ(held, (position{"d1", 1}));
}

TEST(DecodeRequest, MinSeq) {
  EXPECT_EQ(decode_ok(R"({"id":1,"op":"query","sql":"SELECT 1","min_seq":"sqlite:7"})").min_seq, (position{"sqlite", 7}));
  auto b = decode_ok(R"({"id":1,"op":"batch","statements":[{"sql":"SELECT 1"}],"min_seq":"leader"})");
  EXPECT_TRUE(b.min_seq_leader);
  EXPECT_TRUE(b.min_seq.empty());
  EXPECT_EQ(decode_ok(R"({"id":1,"op":"hello","min_seq":"d1:3"})").hello.min_seq, (position{"d1", 3}));
  EXPECT_TRUE(decode_ok(R"({"id":1,"op":"query","sql":"SELECT 1","min_seq":null})").min_seq.empty());
  for (const char* bad : {R"({"id":1,"op":"query","sql":"SELECT 1","min_seq":42})", R"({"id":1,"op":"query","sql":"SELECT 1","min_seq":"nope"})",
                          R"({"id":1,"op":"hello","min_seq":"leader"})", R"({"id":1,"op":"batch","statements":[{"sql":"SELECT 1"}],"min_seq":"x:"})"}) {
    EXPECT_NE(decode_error(bad).find("BAD_REQUEST: 'min_seq' must be a position token"), std::string::npos) << bad << ": " << decode_error(bad);
  }
  EXPECT_NE(decode_error(R"({"id":1,"op":"ping","min_seq":"sqlite:1"})").find("unknown field"), std::string::npos);
  // encode_request writes what decode_request reads.
  request r;
  r.id_json = "3";
  r.kind = op::query;
  r.statements.push_back({"SELECT 1", {}});
  r.min_seq = {"sqlite", 9};
  std::string line;
  encode_request(r, line);
  line.pop_back();
  EXPECT_EQ(decode_ok(line).min_seq, (position{"sqlite", 9}));
  r.min_seq_leader = true;
  line.clear();
  encode_request(r, line);
  line.pop_back();
  EXPECT_TRUE(decode_ok(line).min_seq_leader);
  request h;
  h.id_json = "4";
  h.kind = op::hello;
  h.hello.min_seq = {"d1", 2};
  line.clear();
  encode_request(h, line);
  line.pop_back();
  EXPECT_EQ(decode_ok(line).hello.min_seq, (position{"d1", 2}));
}

TEST(EncodeResponse, MetaSeqOnlyWhenSet) {
  query_result q;
  q.meta.served_by = "sqlite";
  q.meta.seq = 12;  // the store's figure stays internal
  EXPECT_EQ(encode_response({"1", success{q}}).find("\"seq\""), std::string::npos);
  q.meta.at = {"sqlite", 12};
  auto line = encode_response({"1", success{q}});
  EXPECT_NE(line.find(R"("served_by":"sqlite","seq":"sqlite:12"})"), std::string::npos) << line;
  line.pop_back();
  auto back = decode_response(line);
  ASSERT_TRUE(std::holds_alternative<response>(back));
  EXPECT_EQ(std::get<query_result>(std::get<success>(std::get<response>(back).body)).meta.at, (position{"sqlite", 12}));
}

TEST(DecodeRequest, FloatsAreReadCorrectlyRounded) {
  // Boost.JSON 1.81 alone reads some of these one ulp off (3876267126141512.5 as ...513).
  auto r = decode_ok(R"({"id":1,"op":"query","sql":"SELECT ?, ?, ?, ?, ?","params":)"
                     R"([3876267126141512.5, 2.818739117790303e-19, -266332876494918.22, 0.30000000000000004, 1e999]})");
  const auto& p = r.statements.at(0).params.positional;
  EXPECT_EQ(p.at(0), value{3876267126141512.5});
  EXPECT_EQ(p.at(1), value{2.818739117790303e-19});
  EXPECT_EQ(p.at(2), value{-266332876494918.22});
  EXPECT_EQ(p.at(3), value{0.30000000000000004});
  EXPECT_EQ(p.at(4), value{std::numeric_limits<double>::infinity()});
}

TEST(RoundTrip, ResponseThroughEncodeAndDecode) {
  query_result q;
  q.columns = {"a", "b"};
  q.rows = {{value{std::int64_t{9007199254740993}}, value{blob{"xyz"}}}};
  q.meta.changes = 3;
  q.meta.last_row_id = 9007199254740993;
  q.meta.served_by = "sqlite";
  response r{"\"id\"", success{std::vector<query_result>{q, q}}};
  auto line = encode_response(r);
  line.pop_back();
  auto back = decode_response(line);
  ASSERT_TRUE(std::holds_alternative<response>(back));
  const auto& all = std::get<std::vector<query_result>>(std::get<success>(std::get<response>(back).body));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[1].rows, q.rows);
  EXPECT_EQ(all[1].meta.last_row_id, 9007199254740993);
}

TEST(JsonReader, BigIntegersAsDoublesOnlyWhenAsked) {
  EXPECT_FALSE(read_json("[-9223372036854776000]").ok()) << "a client's integer is never rounded";
  json_read_options o;
  o.big_integers_as_double = true;
  auto doc = read_json("[-9223372036854776000, 100000000000000000000, 18446744073709551615, 1e+300]", o);
  ASSERT_TRUE(doc.ok()) << doc.error;
  const auto& a = doc.value.as_array();
  EXPECT_EQ(a[0].as_double(), -9223372036854775808.0);
  EXPECT_EQ(a[1].as_double(), 1e20);
  EXPECT_EQ(a[2].as_uint64(), 18446744073709551615u) << "what fits 64 bits keeps Boost's integer";
  EXPECT_EQ(a[3].as_double(), 1e300);
}

}  // namespace
}  // namespace tandem::protocol
