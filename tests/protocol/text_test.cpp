#include "protocol/text.hpp"

#include <gtest/gtest.h>

namespace tandem::protocol {
namespace {

TEST(Base64, Rfc4648Vectors) {
  const std::pair<const char*, const char*> v[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                   {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
                                                   {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, enc] : v) {
    EXPECT_EQ(base64_encode(plain), enc);
    EXPECT_EQ(base64_decode(enc), std::string(plain));
  }
}

TEST(Base64, RejectsWhatIsNotCanonical) {
  for (const char* bad : {"Zg=", "Zg", "Z===", "Zm9v\n", "Zm-v", "Zm_v", "Zh==", "Zm9=Yg==", "===="}) {
    EXPECT_FALSE(base64_decode(bad).has_value()) << bad;
  }
}

TEST(Base64, AllByteValues) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  EXPECT_EQ(base64_decode(base64_encode(all)), all);
}

TEST(Utf8, Validity) {
  EXPECT_TRUE(is_valid_utf8("plain"));
  EXPECT_TRUE(is_valid_utf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
  EXPECT_FALSE(is_valid_utf8("\xff"));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // beyond U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xe2\x82"));          // truncated
}

}  // namespace
TEST(Text, InvalidUtf8IsReplacedPerMaximalSubpartAsJavaScriptDoes) {
  auto json = [](std::string_view bytes) {
    std::string out;
    append_json_string(out, bytes);
    return out;
  };
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(json("\xE2\x82"), "\"" + r + "\"") << "a cut-off 3-byte sequence";
  EXPECT_EQ(json("\xF0\x9F\x98"), "\"" + r + "\"") << "a cut-off 4-byte sequence";
  EXPECT_EQ(json("\xC0\xAF"), "\"" + r + r + "\"") << "C0 never starts a sequence";
  EXPECT_EQ(json("\xE0\x80\x80"), "\"" + r + r + r + "\"") << "overlong: E0 80 is not a prefix";
  EXPECT_EQ(json("\xED\xA0\x80"), "\"" + r + r + r + "\"") << "a surrogate";
  EXPECT_EQ(json("\xFF" "a\xE2\x82\xAC"), "\"" + r + "a\xE2\x82\xAC\"");
}

}  // namespace tandem::protocol
