// libFuzzer target for the protocol codec: arbitrary bytes through the frame reader and the
// request decoder, and every decoded request re-encoded and decoded again.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "protocol/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tandem::protocol;
  frame_reader reader(1024);
  std::memcpy(reader.prepare(size), data, size);
  reader.commit(size);
  for (;;) {
    auto next = reader.next();
    if (next.st != frame_reader::status::frame) break;
    auto decoded = decode_request(next.frame);
    if (auto* req = std::get_if<request>(&decoded)) {
      std::string line;
      encode_request(*req, line);
      line.pop_back();
      auto again = decode_request(line);
      if (!std::holds_alternative<request>(again)) __builtin_trap();  // what we encode, we decode
    } else {
      std::string out;
      encode_response(std::get<response>(decoded), out);
      if (decode_response(std::string_view(out).substr(0, out.size() - 1)).index() != 0) __builtin_trap();
    }
  }
  decode_response(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
