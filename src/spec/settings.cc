#include "spec/settings.h"

#include <algorithm>
#include <cstdlib>
#include <functional>

#include "engine/throttle.h"
#include "util/duration.h"
#include "util/text.h"

namespace tandem {

namespace {

using std::chrono::milliseconds;

struct SettingInfo {
  const char* key;
  long long min, max;   // milliseconds for durations
  bool zero_means_off;  // 0 is accepted whatever `min` says
  // Exactly one of these is set.
  milliseconds Settings::*duration = nullptr;
  int Settings::*number = nullptr;
  std::string Settings::*text = nullptr;
  // For text: "" when the value is acceptable, else what is wrong with it.
  std::string (*check)(const std::string&) = nullptr;
  // For text: what it holds, in the JSON Schema; and, when it is one of a
  // few words, those (both the check and the schema use them).
  const char* about = "";
  std::vector<std::string> choices = {};
};

std::string check_window(const std::string& v) {
  if (v.empty() || parse_window(v)) return "";
  return "expected a daily window such as 22:00-06:00 (local time), got \"" + v + "\"";
}

std::string check_query(const std::string& v) {
  if (v.find(';') != std::string::npos &&
      v.find_first_not_of(" \t\n;", v.find(';')) != std::string::npos) {
    return "expected one SQL query";
  }
  return "";
}

const std::vector<SettingInfo>& table() {
  static const std::vector<SettingInfo> kTable = {
      {"lock_timeout", 10, 600'000, false, &Settings::lock_timeout, nullptr},
      {"statement_timeout", 100, 86'400'000, false, &Settings::statement_timeout, nullptr},
      {"batch_size", 1, 1'000'000, false, nullptr, &Settings::batch_size},
      {"target_batch_time", 10, 60'000, true, &Settings::target_batch_time, nullptr},
      {"max_batch_size", 1, 1'000'000, false, nullptr, &Settings::max_batch_size},
      {"batch_rest_percent", 0, 1000, false, nullptr, &Settings::batch_rest_percent},
      {"backfill_workers", 1, 64, false, nullptr, &Settings::backfill_workers},
      {"throttle_active_sessions", 1, 100'000, true, nullptr, &Settings::throttle_active_sessions},
      {"throttle_lock_waits", 1, 100'000, true, nullptr, &Settings::throttle_lock_waits},
      {"throttle_replica_lag", 100, 3'600'000, true, &Settings::throttle_replica_lag, nullptr},
      {"throttle_wal_rate_mb", 1, 100'000, true, nullptr, &Settings::throttle_wal_rate_mb},
      {"throttle_commit_latency", 1, 60'000, true, &Settings::throttle_commit_latency, nullptr},
      {"throttle_query", 0, 0, true, nullptr, nullptr, &Settings::throttle_query, &check_query,
       "one SQL query"},
      {"backfill_window", 0, 0, true, nullptr, nullptr, &Settings::backfill_window, &check_window,
       "a daily window such as 22:00-06:00 (local time)"},
      {"sql_lint",
       0,
       0,
       false,
       nullptr,
       nullptr,
       &Settings::sql_lint,
       nullptr,
       "what the lint of sql steps does with what it finds",
       {"warn", "error", "off"}},
      {"critical_replica_lag", 100, 3'600'000, true, &Settings::critical_replica_lag, nullptr},
      {"critical_active_sessions", 1, 100'000, true, nullptr, &Settings::critical_active_sessions},
      {"retry_budget", 1, 10'000, false, nullptr, &Settings::retry_budget},
      {"retry_backoff", 1, 600'000, false, &Settings::retry_backoff, nullptr},
      {"retry_backoff_max", 1, 3'600'000, false, &Settings::retry_backoff_max, nullptr},
      {"shadow_round_interval", 1000, 86'400'000, true, &Settings::shadow_round_interval, nullptr},
  };
  return kTable;
}

const SettingInfo* find(const std::string& key) {
  for (const auto& info : table()) {
    if (key == info.key) return &info;
  }
  return nullptr;
}

std::string range_text(const SettingInfo& info) {
  auto bound = [&](long long v) {
    return info.duration ? format_duration(milliseconds(v)) : std::to_string(v);
  };
  return (info.zero_means_off ? "0 (off) or " : "") + bound(info.min) + " to " + bound(info.max);
}

}  // namespace

const std::vector<std::string>& setting_keys() {
  static const std::vector<std::string> kKeys = [] {
    std::vector<std::string> out;
    for (const auto& info : table()) out.push_back(info.key);
    return out;
  }();
  return kKeys;
}

std::string set_setting(Settings& s, const std::string& key, const std::string& text) {
  const SettingInfo* info = find(key);
  if (!info) return "unknown setting \"" + key + "\"";
  if (info->text) {
    std::string why = info->check ? info->check(text) : "";
    if (!info->choices.empty() &&
        std::find(info->choices.begin(), info->choices.end(), text) == info->choices.end()) {
      const std::vector<std::string> all_but_last(info->choices.begin(), info->choices.end() - 1);
      why = "expected " + join(all_but_last, ", ") + " or " + info->choices.back() + ", got \"" +
            text + "\"";
    }
    if (!why.empty()) return key + ": " + why;
    s.*(info->text) = text;
    return "";
  }
  long long v = 0;
  if (info->duration) {
    auto d = parse_duration(text);
    if (!d) return key + ": expected a duration such as 500ms or 2s, got \"" + text + "\"";
    v = d->count();
  } else {
    char* end = nullptr;
    v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || end == text.c_str() || *end != '\0') {
      return key + ": expected a whole number, got \"" + text + "\"";
    }
  }
  if (!(info->zero_means_off && v == 0) && (v < info->min || v > info->max)) {
    return key + ": " + text + " is out of range (" + range_text(*info) + ")";
  }
  if (info->duration) {
    s.*(info->duration) = milliseconds(v);
  } else {
    s.*(info->number) = static_cast<int>(v);
  }
  return "";
}

std::string setting_text(const Settings& s, const std::string& key) {
  const SettingInfo* info = find(key);
  if (!info) return "";
  if (info->text) return s.*(info->text);
  if (info->duration) return format_duration_exact(s.*(info->duration));
  return std::to_string(s.*(info->number));
}

nlohmann::json settings_schema() {
  nlohmann::json props = nlohmann::json::object();
  for (const auto& info : table()) {
    nlohmann::json p;
    const std::string range = "; " + range_text(info);
    if (info.text) {
      p = info.choices.empty() ? nlohmann::json{{"type", "string"}}
                               : nlohmann::json{{"enum", info.choices}};
      p["description"] = info.about;
    } else {
      nlohmann::json whole = {{"type", "integer"}, {"minimum", info.min}, {"maximum", info.max}};
      if (info.zero_means_off) whole = {{"anyOf", {whole, {{"const", 0}}}}};
      if (info.duration) {
        // "500ms", "2s", "1.5s", "3m20s", or a number of milliseconds.
        p = {{"anyOf", {{{"type", "string"}, {"pattern", kDurationPattern}}, whole}}};
        p["description"] = "a duration such as 500ms, 2s or 3m20s" + range;
      } else {
        p = whole;
        p["description"] = "a whole number" + range;
      }
    }
    props[info.key] = p;
  }
  return {{"type", "object"}, {"properties", props}, {"additionalProperties", false}};
}

std::string check_settings(const Settings& s) {
  if (s.retry_backoff_max < s.retry_backoff) {
    return "retry_backoff_max must not be less than retry_backoff";
  }
  if (s.max_batch_size < s.batch_size) return "max_batch_size must not be less than batch_size";
  if (s.critical_replica_lag.count() > 0 && s.throttle_replica_lag.count() > 0 &&
      s.critical_replica_lag <= s.throttle_replica_lag) {
    return "critical_replica_lag must be more than throttle_replica_lag";
  }
  if (s.critical_active_sessions > 0 && s.throttle_active_sessions > 0 &&
      s.critical_active_sessions <= s.throttle_active_sessions) {
    return "critical_active_sessions must be more than throttle_active_sessions";
  }
  return "";
}

}  // namespace tandem
