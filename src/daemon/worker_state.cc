#include "daemon/worker_state.h"

#include <spdlog/spdlog.h>

namespace tandem {

const char* to_string(Desired d) {
  switch (d) {
    case Desired::kRun:
      return "run";
    case Desired::kPause:
      return "pause";
    case Desired::kRollback:
      return "rollback";
  }
  return "?";
}

const char* to_string(Activity a) {
  switch (a) {
    case Activity::kStarting:
      return "starting";
    case Activity::kRunning:
      return "running";
    case Activity::kPaused:
      return "paused";
    case Activity::kWaitingApproval:
      return "waiting_approval";
    case Activity::kWaitingForTable:
      return "waiting_for_table";
    case Activity::kRetrying:
      return "retrying";
    case Activity::kRunningElsewhere:
      return "running_elsewhere";
    case Activity::kFailed:
      return "failed";
    case Activity::kRollingBack:
      return "rolling_back";
    case Activity::kRolledBack:
      return "rolled_back";
    case Activity::kCompleted:
      return "completed";
  }
  return "?";
}

void log_activity(const std::string& migration, Activity a, const std::string& detail) {
  const std::string what = std::string(to_string(a)) + (detail.empty() ? "" : ": " + detail);
  if (a == Activity::kFailed) {
    spdlog::error("migration {}: {}", migration, what);
  } else if (a != Activity::kRetrying) {  // retries log their own warning
    spdlog::info("migration {}: {}", migration, what);
  }
}

std::optional<Desired> parse_desired(const std::string& text) {
  for (Desired d : {Desired::kRun, Desired::kPause, Desired::kRollback}) {
    if (text == to_string(d)) return d;
  }
  return std::nullopt;
}

}  // namespace tandem
