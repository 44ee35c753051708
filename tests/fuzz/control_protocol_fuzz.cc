// libFuzzer target: the control protocol's request parser must never crash or
// throw; it returns either a request or an error with a code and a message,
// and both responses it can produce are one line of valid JSON.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "control/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string line(reinterpret_cast<const char*>(data), size);
  auto r = tandem::control::parse_request(line);
  std::string response;
  if (r.request) {
    if (!r.error.code.empty()) std::abort();
    response =
        tandem::control::ok_response(r.request->id, {{"command", to_string(r.request->command)}});
  } else {
    if (r.error.code.empty() || r.error.message.empty()) std::abort();
    response = tandem::control::error_response(r.error);
  }
  if (response.empty() || response.back() != '\n' || response.find('\n') != response.size() - 1) {
    std::abort();
  }
  auto parsed = nlohmann::json::parse(response, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) std::abort();
  return 0;
}
