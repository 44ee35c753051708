#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace tandem {

// Parses "250ms", "2s", "1.5s", "3m", "1h", or a bare number of milliseconds.
// Returns nullopt on anything else, including negative values.
std::optional<std::chrono::milliseconds> parse_duration(const std::string& text);

// "850ms", "2.5s", "3m20s", "1h05m".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace tandem
