// What an operator asks of a migration the daemon owns (Desired, kept in
// tandem.submissions.desired) and what its worker is doing (Activity, shown
// by status as "state" and in the metrics). The text is what the control
// protocol and the table hold (docs/control-protocol.md).
//
// Desired: run ◄──► pause; run | pause ──► rollback (pause, resume, rollback
// and abort, which pauses). Activity, by the worker:
//   starting ──► running ──► completed
//                  │ ▲──── waiting_for_table (an earlier migration holds a table)
//                  ├──► waiting_approval ──► running (approved)
//                  ├──► paused ──► running (resumed)
//                  ├──► failed ──► running (resumed after a fix)
//                  ├──► retrying ──► running (the database came back)
//                  ├──► running_elsewhere ──► running (the other daemon let go)
//                  └──► rolling_back ──► rolled_back
#pragma once

#include <optional>
#include <string>

namespace tandem {

enum class Desired { kRun, kPause, kRollback };

enum class Activity {
  kStarting,
  kRunning,
  kPaused,
  kWaitingApproval,
  kWaitingForTable,
  kRetrying,
  kRunningElsewhere,
  kFailed,
  kRollingBack,
  kRolledBack,
  kCompleted,
};

const char* to_string(Desired d);
const char* to_string(Activity a);
// The log line of a migration's change of activity: failed at error level
// with the error, the others at info ("migration NAME: completed").
void log_activity(const std::string& migration, Activity a, const std::string& detail);
// The stored text back; nullopt for text no tandemd writes.
std::optional<Desired> parse_desired(const std::string& text);

}  // namespace tandem
