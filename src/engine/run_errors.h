// How a run ends other than by finishing: the executor's errors. Each is an
// Error (kFatal) that carries its Failure, which callers branch on.
#pragma once

#include <string>

#include "tandem/error.h"

namespace tandem {

// Another session holds the migration's lock.
class LockHeldError : public Error {
 public:
  explicit LockHeldError(const std::string& m)
      : Error(ErrorKind::kFatal, m, {}, Failure::kLockHeld) {}
};
// A step failed for good; the migration is parked as failed.
class StepFailedError : public Error {
 public:
  StepFailedError(const std::string& m, std::string sqlstate)
      : Error(ErrorKind::kFatal, m, std::move(sqlstate), Failure::kStepFailed) {}
};
// A stop was requested and the work in flight failed (it was cancelled):
// run() and rollback() return kStopped.
class StoppedError : public Error {
 public:
  explicit StoppedError(const std::string& m)
      : Error(ErrorKind::kFatal, m, {}, Failure::kStopped) {}

 protected:
  StoppedError(const std::string& m, Failure f) : Error(ErrorKind::kFatal, m, {}, f) {}
};
// A critical threshold was crossed: run() returns kPaused.
class CriticalPauseError : public StoppedError {
 public:
  explicit CriticalPauseError(const std::string& m) : StoppedError(m, Failure::kPaused) {}
};
// Rollback was refused because an irreversible step has run.
class RollbackRefusedError : public Error {
 public:
  explicit RollbackRefusedError(const std::string& m)
      : Error(ErrorKind::kFatal, m, {}, Failure::kRollbackRefused) {}
};

}  // namespace tandem
