// How text leaves tandem as JSON (docs/control-protocol.md, "One dialect").
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace tandem {

// What does not apply is null, never "".
inline nlohmann::json text_or_null(const std::string& s) {
  return s.empty() ? nlohmann::json() : nlohmann::json(s);
}

}  // namespace tandem
