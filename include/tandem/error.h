// tandem's own error type. Exceptions thrown by libraries (libpqxx, yaml-cpp,
// nlohmann_json) are caught by the adapter that calls them and rethrown as
// tandem::Error, so code above the adapters reasons in these categories only.
#pragma once

#include <stdexcept>
#include <string>

namespace tandem {

enum class ErrorKind {
  // Safe to try again after a pause: lock timeout, deadlock, serialization
  // failure, statement timeout, a broken connection outside a commit.
  kRetryable,
  // The commit's outcome is unknown (the connection broke during COMMIT). The
  // caller must re-read what was recorded before doing anything else and must
  // never blindly replay the work.
  kInDoubt,
  // Trying again will not help: a syntax error, a missing table, a violated
  // constraint, a failed verification. The SQL state is kept when there is one.
  kFatal,
  // The user's input (spec file, command line) is wrong; nothing was changed.
  kBadInput,
};

const char* to_string(ErrorKind kind);

// How a run that did not finish ended: set by the errors the executor throws
// (src/engine/run_errors.h), kNone on every other error. Callers branch on
// it (the CLI's exit codes, the daemon's activity), not on exception types.
enum class Failure {
  kNone,
  kLockHeld,         // another session holds the migration's lock
  kStepFailed,       // a step failed for good; the migration is parked as failed
  kStopped,          // a stop was requested and the work in flight was cancelled
  kPaused,           // a critical threshold was crossed
  kRollbackRefused,  // an irreversible step has run
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message, std::string sqlstate = {},
        Failure failure = Failure::kNone)
      : std::runtime_error(message),
        kind_(kind),
        sqlstate_(std::move(sqlstate)),
        failure_(failure) {}

  ErrorKind kind() const { return kind_; }
  Failure failure() const { return failure_; }
  // Five-character SQLSTATE, or empty when the error did not come from the server.
  const std::string& sqlstate() const { return sqlstate_; }
  bool retryable() const { return kind_ == ErrorKind::kRetryable; }

 private:
  ErrorKind kind_;
  std::string sqlstate_;
  Failure failure_;
};

}  // namespace tandem
