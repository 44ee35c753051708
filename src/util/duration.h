#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace tandem {

// Parses "250ms", "2s", "1.5s", "3m", "1h", sums of them as format_duration
// writes them ("3m20s", "1h05m"), or a bare number of milliseconds. Returns
// nullopt on anything else, including negative values.
std::optional<std::chrono::milliseconds> parse_duration(const std::string& text);

// What parse_duration accepts as text, as a JSON Schema (ECMA-262) pattern.
extern const char* const kDurationPattern;

// "850ms", "2.5s", "3m20s", "1h05m".
std::string format_duration(std::chrono::milliseconds d);

// The shortest exact form, for values that are read back: "500ms", "1.55s",
// "90s", "2m", "1h".
std::string format_duration_exact(std::chrono::milliseconds d);

// RFC 3339 in UTC with milliseconds, "2026-12-07T05:12:44.123Z": how every
// time leaves tandem (status JSON, events, hooks).
std::string rfc3339(std::chrono::system_clock::time_point t);

}  // namespace tandem
