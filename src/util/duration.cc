#include "util/duration.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace tandem {

namespace {

std::optional<double> unit_ms(const std::string& unit) {
  if (unit.empty() || unit == "ms") return 1.0;
  if (unit == "s") return 1000.0;
  if (unit == "m" || unit == "min") return 60'000.0;
  if (unit == "h") return 3'600'000.0;
  return std::nullopt;
}

}  // namespace

const char* const kDurationPattern = "^(([0-9]+(\\.[0-9]+)?(ms|s|m|h))+|[0-9]+)$";

std::optional<std::chrono::milliseconds> parse_duration(const std::string& text) {
  // One number and unit ("1.5s"), or several that add up, as format_duration
  // writes them ("1m05s", "2h00m").
  if (text.empty()) return std::nullopt;
  const char* p = text.c_str();
  double ms = 0;
  int parts = 0;
  while (*p) {
    char* end = nullptr;
    double value = std::strtod(p, &end);
    if (end == p || !std::isfinite(value) || value < 0 || *p == '+' || *p == '-') {
      return std::nullopt;
    }
    const char* u = end;
    while (*u && std::isalpha(static_cast<unsigned char>(*u))) ++u;
    std::string unit(static_cast<const char*>(end), u);
    if (unit.empty() && (parts > 0 || *u)) return std::nullopt;  // a bare number stands alone
    auto factor = unit_ms(unit);
    if (!factor) return std::nullopt;
    ms += value * *factor;
    ++parts;
    p = u;
  }
  if (ms > 1e12) return std::nullopt;
  return std::chrono::milliseconds(static_cast<long long>(std::llround(ms)));
}

std::string format_duration_exact(std::chrono::milliseconds d) {
  long long ms = d.count();
  if (ms < 1000 && ms % 1000 != 0) return std::to_string(ms) + "ms";
  if (ms % 3'600'000 == 0 && ms > 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0 && ms > 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  std::string frac = std::to_string(ms % 1000);
  frac = std::string(3 - frac.size(), '0') + frac;
  while (frac.back() == '0') frac.pop_back();
  return std::to_string(ms / 1000) + "." + frac + "s";
}

std::string format_duration(std::chrono::milliseconds d) {
  long long ms = d.count();
  char buf[64];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%lldms", ms);
  } else if (ms < 60'000) {
    std::snprintf(buf, sizeof buf, "%.1fs", ms / 1000.0);
  } else if (ms < 3'600'000) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", ms / 60'000, (ms / 1000) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", ms / 3'600'000, (ms / 60'000) % 60);
  }
  return buf;
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms % 1000));
  return buf;
}

}  // namespace tandem
