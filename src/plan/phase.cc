// The phase table: the one place that says which phases exist, in which order,
// and which of them can be undone.
//
//   prepare ──► dual_write ──► backfill ──► shadow_read ──► cutover ══► cleanup
//      ▲            │              │              │             │     (point of
//      └────────────┴──────────────┴──── rollback ┴─────────────┘      no return)
//
// A migration moves forward one phase at a time. Until cleanup has started,
// `rollback` undoes the completed steps in reverse order and leaves the schema
// as it was before `prepare`, with every write made in between preserved.
// cleanup is irreversible and never runs without an operator's approval.
#include "tandem/phase.h"

#include <stdexcept>

namespace tandem {

const std::vector<PhaseInfo>& phase_table() {
  static const std::vector<PhaseInfo> kTable = {
      {Phase::kPrepare, "prepare", true, false,
       "create new storage and helpers; check that the change is safe"},
      {Phase::kDualWrite, "dual_write", true, false,
       "triggers write the new storage in every writer's own transaction"},
      {Phase::kBackfill, "backfill", true, false,
       "copy existing rows in short keyset batches, checkpointed"},
      {Phase::kShadowRead, "shadow_read", true, false, "compare old and new storage for every row"},
      {Phase::kCutover, "cutover", true, false,
       "switch readers and writers to the new storage; sync flips to new -> old"},
      {Phase::kCleanup, "cleanup", false, true,
       "drop the old storage and the helpers (irreversible)"},
  };
  return kTable;
}

const PhaseInfo& phase_info(Phase phase) {
  for (const auto& p : phase_table()) {
    if (p.phase == phase) return p;
  }
  throw std::logic_error("unknown phase");
}

const char* phase_name(Phase phase) { return phase_info(phase).name; }

std::optional<Phase> parse_phase(const std::string& name) {
  for (const auto& p : phase_table()) {
    if (name == p.name) return p.phase;
  }
  return std::nullopt;
}

std::vector<std::string> phase_names() {
  std::vector<std::string> names;
  for (const auto& p : phase_table()) names.emplace_back(p.name);
  return names;
}

}  // namespace tandem
