// The lifecycle of a migration and of its steps, as the state store keeps
// them (tandem.migrations.state, tandem.steps.status; the stored text is
// to_string's, so state schemas written before these types load as they
// are). The phase table is in include/tandem/phase.h; docs/state-store.md
// describes the columns.
//
// Step status; the executor moves a step
//   pending ──► running ──► done            (running: a keyset step, or one
//      │           │  ▲                       outside a transaction, under way)
//      │           ▼  │
//      │         failed ─► running | done    (after the operator's fix, resumed)
//      └──────────────────► done            (a transactional step: work and
//                                             record commit together)
//   done | running | failed ──► rolled_back  (rollback, reverse order)
//   running | failed ──► pending             (after a rollback completes)
//
// Migration state:
//   running ◄──► paused | waiting_approval | failed   (stop, --until, a gate, a
//                                                      failed step; resumed by a run)
//   running ──► completed                             (every phase done)
//   any but completed ──► rolling_back ──► rolled_back (refused past an
//                                                       irreversible step)
//   rolled_back ──► running                           (started again from the spec)
#pragma once

#include <string>

namespace tandem {

enum class StepStatus { kPending, kRunning, kDone, kFailed, kRolledBack };

enum class MigrationState {
  kRunning,
  kPaused,
  kWaitingApproval,
  kFailed,
  kCompleted,
  kRollingBack,
  kRolledBack,
};

const char* to_string(StepStatus status);
const char* to_string(MigrationState state);
// The stored text back; throws Error(kFatal) for text no tandem writes.
StepStatus parse_step_status(const std::string& text);
MigrationState parse_migration_state(const std::string& text);

}  // namespace tandem
