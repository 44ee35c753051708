// The autovacuum guard: before a step whose lock conflicts with VACUUM's, an
// autovacuum holding a lock on one of the migration's tables is cancelled,
// as PostgreSQL itself does for a lock request that has waited
// deadlock_timeout (lock_timeout is shorter, so it never would). One that
// may not be cancelled (to prevent wraparound, or no privilege to signal
// it) is waited out without queueing a lock request, which would stall the
// application's queries behind it at every attempt.
#pragma once

#include <string>
#include <vector>

#include "db/connection.h"
#include "engine/run_context.h"
#include "tandem/plan.h"

namespace tandem {

class AutovacuumGuard {
 public:
  // `tables`: the migration's, as "schema.name".
  AutovacuumGuard(const RunContext& ctx, std::vector<std::string> tables)
      : ctx_(ctx), tables_(std::move(tables)) {}

  // Returns when no autovacuum holds a lock `step` needs; throws
  // StoppedError when a stop is requested meanwhile.
  void yield(Connection& conn, const Step& step);

 private:
  // Cancels the autovacuum `pid` of `table`; "" when it did, else why not.
  std::string cancel(Connection& conn, const Step& step, const std::string& pid,
                     const std::string& table);

  const RunContext& ctx_;
  const std::vector<std::string> tables_;
};

}  // namespace tandem
