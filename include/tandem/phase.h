// The six phases of a migration, in order. The numeric values are stored in
// the state store and are never renumbered.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace tandem {

enum class Phase : int {
  kPrepare = 1,
  kDualWrite = 2,
  kBackfill = 3,
  kShadowRead = 4,
  kCutover = 5,
  kCleanup = 6,
};

struct PhaseInfo {
  Phase phase;
  const char* name;        // as written in specs, on the command line and in the state store
  bool reversible;         // false: steps of this phase cannot be rolled back
  bool approval_required;  // true: never runs without an explicit approval
  const char* summary;
};

// Every phase in run order.
const std::vector<PhaseInfo>& phase_table();
const PhaseInfo& phase_info(Phase phase);
const char* phase_name(Phase phase);
// Parses a phase name; nullopt when the name is not a phase.
std::optional<Phase> parse_phase(const std::string& name);
std::vector<std::string> phase_names();

}  // namespace tandem
