#pragma once

#include <string>
#include <vector>

namespace tandem {

// The state schema's versions, in order; version N is element N-1. Append
// only: a released version is never edited or renumbered, because databases
// in the field record which versions they have applied.
const std::vector<std::string>& state_schema_versions();

// First key of every advisory lock tandem takes ('tand' in ASCII).
constexpr int kAdvisoryLockClass = 1952542308;

}  // namespace tandem
