// Every setting a spec may carry, with its bounds. The spec parser and
// `tandemctl set` (a live change to a running migration) check values against
// this one table, so both accept and refuse exactly the same things.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tandem/spec.h"

namespace tandem {

// The keys, in the order docs/spec.md lists them.
const std::vector<std::string>& setting_keys();

// Parses `text` ("500ms", "2s", "5000") for setting `key` and stores it in `s`.
// Returns "" on success, else a message naming the key and the allowed range,
// e.g. "lock_timeout: 5h is out of range (10ms to 10m)".
std::string set_setting(Settings& s, const std::string& key, const std::string& text);

// The setting's value as a spec would write it: "500ms", "5000".
std::string setting_text(const Settings& s, const std::string& key);

// Checks that hold between settings; "" when they all do.
std::string check_settings(const Settings& s);

// The JSON Schema of a `settings` mapping, from the same table: each key
// with its type and, for whole numbers, its range (spec/schema.h).
nlohmann::json settings_schema();

}  // namespace tandem
