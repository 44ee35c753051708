#include "engine/lifecycle.h"

#include "tandem/error.h"

namespace tandem {
namespace {

constexpr StepStatus kStepStatuses[] = {StepStatus::kPending, StepStatus::kRunning,
                                        StepStatus::kDone, StepStatus::kFailed,
                                        StepStatus::kRolledBack};
constexpr MigrationState kMigrationStates[] = {
    MigrationState::kRunning,   MigrationState::kPaused,    MigrationState::kWaitingApproval,
    MigrationState::kFailed,    MigrationState::kCompleted, MigrationState::kRollingBack,
    MigrationState::kRolledBack};

template <typename T, size_t N>
T parse_of(const T (&all)[N], const std::string& text, const char* what) {
  for (T v : all) {
    if (text == to_string(v)) return v;
  }
  throw Error(ErrorKind::kFatal, std::string("the state store holds an unknown ") + what + " \"" +
                                     text + "\"; a newer tandemd wrote it?");
}

}  // namespace

const char* to_string(StepStatus status) {
  switch (status) {
    case StepStatus::kPending:
      return "pending";
    case StepStatus::kRunning:
      return "running";
    case StepStatus::kDone:
      return "done";
    case StepStatus::kFailed:
      return "failed";
    case StepStatus::kRolledBack:
      return "rolled_back";
  }
  return "?";
}

const char* to_string(MigrationState state) {
  switch (state) {
    case MigrationState::kRunning:
      return "running";
    case MigrationState::kPaused:
      return "paused";
    case MigrationState::kWaitingApproval:
      return "waiting_approval";
    case MigrationState::kFailed:
      return "failed";
    case MigrationState::kCompleted:
      return "completed";
    case MigrationState::kRollingBack:
      return "rolling_back";
    case MigrationState::kRolledBack:
      return "rolled_back";
  }
  return "?";
}

StepStatus parse_step_status(const std::string& text) {
  return parse_of(kStepStatuses, text, "step status");
}

MigrationState parse_migration_state(const std::string& text) {
  return parse_of(kMigrationStates, text, "migration state");
}

}  // namespace tandem
