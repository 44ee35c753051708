// The throttle gate: before each batch (or, with workers, five times a
// second for all of them), reads the signals the settings name and says
// whether the backfill should wait (ThrottleVerdict), logs when a hold
// starts and ends, and pauses the migration (CriticalPauseError) when a
// critical threshold is crossed. The signals themselves and the decision
// are in throttle.h.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "db/connection.h"
#include "engine/run_context.h"
#include "engine/throttle.h"

namespace tandem {

class ThrottleGate {
 public:
  // `session`: the executor's own session, reopened when lost. `own`: the
  // application_name prefix of the migration's own sessions, which are not
  // load to back off from. `tables`: the migration's, as "schema.name".
  ThrottleGate(const RunContext& ctx, std::function<Connection&()> session, std::string own,
               std::vector<std::string> tables)
      : ctx_(ctx), session_(std::move(session)), own_(std::move(own)), tables_(std::move(tables)) {}

  // Reads the throttle once and reports a change (`last`: the reason in
  // force, held back since `since`). Throws CriticalPauseError when a
  // critical threshold is crossed.
  ThrottleVerdict poll(std::string& last, TimeSource::Clock::time_point& since);
  // Waits while throttled. Returns false when a stop is requested meanwhile;
  // throws CriticalPauseError when a critical threshold is crossed.
  bool wait();

 private:
  ThrottleVerdict verdict(Connection& conn, const Settings& st);
  // Logs a change of reason: a paced reason's first hold at info, the rest at debug.
  void say(const ThrottleVerdict& v, const std::string& last);

  const RunContext& ctx_;
  std::function<Connection&()> session_;
  const std::string own_;
  const std::vector<std::string> tables_;
  WalRate wal_rate_;                      // throttle_wal_rate_mb's readings
  CommitLatencyHold commit_hold_;         // throttle_commit_latency's
  std::atomic<unsigned> pacing_said_{0};  // the paced reasons whose first hold was said
};

}  // namespace tandem
