// Running a plan against a database: the entry point for a caller of the
// library (tandemd's commands and its daemon are two). See
// docs/architecture.md for the layers and src/engine/executor.h for how a
// run works.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tandem/phase.h"
#include "tandem/plan.h"
#include "tandem/spec.h"

namespace tandem {

class Connection;      // one database session (src/db/connection.h)
class ProgressSink;    // told of phases, steps and progress (src/engine/progress.h)
class RunControl;      // live settings and the manual throttle (src/engine/run_control.h)
class TimeSource;      // the clock (src/engine/time_source.h)
class MigrationStore;  // where the migration's state lives (src/engine/migration_store.h)
class Hooks;           // the team's hooks (src/engine/hooks.h, docs/hooks.md)
class ExecutorCore;

struct RunOptions {
  std::string dsn;
  std::optional<Phase> until;  // stop after this phase
  std::set<Phase> approve;     // approvals given now
  bool approve_all = false;
  // Shadow-read pairs whose failed gate the operator accepts: the step
  // passes with the differences it found (recorded, with who accepted).
  std::set<std::string> accept_differences;
  std::string actor;                        // who is acting, for the event log
  const std::atomic<bool>* stop = nullptr;  // set by a signal handler: stop at the next safe point
  ProgressSink* progress = nullptr;
  // Live settings, the manual throttle and the session's pid; the spec's
  // settings when null.
  RunControl* control = nullptr;
  // How long to wait for the migration's lock before reporting its holder.
  // A killed runner's session can outlive it by a moment.
  std::chrono::milliseconds lock_wait{5000};
  // Opens a session; connect_postgres when empty. Tests wrap it to inject faults.
  std::function<std::unique_ptr<Connection>(const std::string& dsn, const std::string& app)>
      connect;
  // The clock the executor reads and sleeps on; the real one when null.
  TimeSource* time = nullptr;
  // Where the migration's state lives; schema `tandem` in the target
  // database (StateStore) when null. Unit tests pass a fake.
  MigrationStore* store = nullptr;
  // Run by tandemd serve: the next moves a failure names are tandemctl's
  // (`tandemctl resume NAME`), not the command line's.
  bool under_daemon = false;
  // Told of the migration's start, phases, gates and end; its before-cutover
  // hooks must pass before cutover begins. None when null.
  Hooks* hooks = nullptr;
};

enum class RunOutcome {
  kCompleted,         // every phase is done
  kAlreadyCompleted,  // it was done before this run
  kReachedUntil,      // stopped after --until's phase
  kWaitingApproval,   // stopped at a phase that needs approval (waiting_phase())
  kStopped,           // stopped by a signal at a safe point; run again to resume
  kPaused,            // a critical threshold paused it (pause_reason()); run again to resume
};

enum class RollbackOutcome { kRolledBack, kNothingToDo, kStopped };

// One pair's part of a shadow-read round (see Executor::shadow_round).
struct RoundPair {
  std::string pair;
  long long samples = 0, mismatches = 0;
  double old_p50 = 0, old_p99 = 0, new_p50 = 0, new_p99 = 0;  // milliseconds
  std::string verdict;                                        // why its gate fails, or ""
};

struct RoundReport {
  int round = 0;         // 1, 2, ...: the phase's own comparison is round 0
  bool stopped = false;  // stopped part way; the next call goes on with it
  std::vector<RoundPair> pairs;
  bool passed() const {
    for (const auto& p : pairs)
      if (!p.verdict.empty()) return false;
    return !stopped;
  }
};

// Runs a plan's phases in order, resumably, and rolls completed steps back
// in reverse order. run() and rollback() end with an outcome, or throw an
// Error whose failure() says how the run ended (tandem/error.h). Not
// thread-safe; one thread drives an executor (which may start workers).
class Executor {
 public:
  Executor(const Spec& spec, const Plan& plan, RunOptions options);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  RunOutcome run();
  RollbackOutcome rollback();
  // While the migration waits at the cutover gate: one more round of every
  // shadow-read pair on a new sample (the seed moved on by the round), or
  // the rest of a round stopped part way. Throws Error(kBadInput) when the
  // migration is not waiting there or the spec has no pairs.
  RoundReport shadow_round();

  // After kWaitingApproval: the phase that waits.
  Phase waiting_phase() const;
  // After kWaitingApproval: why an approval given for it was not taken
  // (the last shadow-read round failed a gate that was not accepted), or "".
  const std::string& approval_withheld() const;
  // After kPaused: which threshold, e.g. "replica lag 31.0s over critical_replica_lag 30s".
  const std::string& pause_reason() const;
  // After kWaitingApproval: whether the cutover waits because a
  // before-cutover hook failed (approval_withheld() says how); running
  // again tries the hooks again.
  bool held_by_hook() const;
  // Whether a phase needs an explicit approval before it runs.
  bool needs_approval(Phase phase) const;

 private:
  std::unique_ptr<ExecutorCore> core_;
};

}  // namespace tandem
