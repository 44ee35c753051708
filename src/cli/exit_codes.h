// tandemd's exit codes. Scripts depend on them: never renumber.
#pragma once

#include "tandem/error.h"

namespace tandem {

constexpr int kExitOk = 0;               // done, or stopped where --until said
constexpr int kExitBadInput = 1;         // invalid spec or input; nothing was changed
constexpr int kExitUsage = 2;            // bad command line
constexpr int kExitNeedsApproval = 3;    // waiting at a phase that needs --approve
constexpr int kExitStepFailed = 4;       // a step failed; the migration is parked as failed
constexpr int kExitLocked = 5;           // another tandemd is running this migration
constexpr int kExitUnreachable = 6;      // the database cannot be reached
constexpr int kExitRollbackRefused = 7;  // an irreversible step has run
constexpr int kExitInterrupted = 8;      // stopped by a signal at a safe point; run again to resume
constexpr int kExitPaused = 9;           // a critical threshold paused it; run again to resume
constexpr int kExitRoundFailed =
    10;  // a check failed its gate: a shadow-read round, a slice's copy

// The exit code of a command that an error ended: by how the run ended, or
// else by the kind of error.
inline int exit_code_for(const Error& e) {
  switch (e.failure()) {
    case Failure::kLockHeld:
      return kExitLocked;
    case Failure::kStepFailed:
      return kExitStepFailed;
    case Failure::kRollbackRefused:
      return kExitRollbackRefused;
    case Failure::kStopped:
      return kExitInterrupted;
    case Failure::kPaused:
      return kExitPaused;
    case Failure::kNone:
      break;
  }
  switch (e.kind()) {
    case ErrorKind::kBadInput:
      return kExitBadInput;
    case ErrorKind::kRetryable:
    case ErrorKind::kInDoubt:
      return kExitUnreachable;
    case ErrorKind::kFatal:
      break;
  }
  return kExitStepFailed;
}

constexpr const char* kExitCodeHelp =
    "Exit codes:\n"
    "  0  done (or stopped after the phase named by --until)\n"
    "  1  invalid spec or input; nothing was changed\n"
    "  2  bad command line\n"
    "  3  waiting for approval: run again with --approve PHASE (or a before-cutover hook\n"
    "     holds the cutover: run again when it passes)\n"
    "  4  a step failed; the migration is parked as failed (see the message)\n"
    "  5  another tandemd is running this migration\n"
    "  6  the database cannot be reached\n"
    "  7  rollback refused: an irreversible step has run\n"
    "  8  interrupted by a signal at a safe point; run again to resume\n"
    "  9  paused by a critical threshold (replica lag, active sessions) or a slice's canary;\n"
    "     run again (slices: resume) to go on\n"
    " 10  a check failed its gate: the last shadow-read round (rounds; cutover is withheld),\n"
    "     or a slice's copy check (slices; the slice stays where it was)\n";

}  // namespace tandem
