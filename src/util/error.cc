// The names of ErrorKind and Failure (include/tandem/error.h).
#include "tandem/error.h"

namespace tandem {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kRetryable:
      return "retryable";
    case ErrorKind::kInDoubt:
      return "in doubt";
    case ErrorKind::kFatal:
      return "fatal";
    case ErrorKind::kBadInput:
      return "bad input";
  }
  return "?";
}

const char* to_string(Failure failure) {
  switch (failure) {
    case Failure::kNone:
      return "none";
    case Failure::kLockHeld:
      return "lock held";
    case Failure::kStepFailed:
      return "step failed";
    case Failure::kStopped:
      return "stopped";
    case Failure::kPaused:
      return "paused";
    case Failure::kRollbackRefused:
      return "rollback refused";
  }
  return "?";
}

}  // namespace tandem
