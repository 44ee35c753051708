// Runs one migration spec on every target of a fleet (docs/fleet.md): wave
// by wave, each wave's targets `parallel` at a time, a target held when its
// schema differs from the canary's, the next wave only once the previous
// one passed its checks and soaked, and (cutover: together) every target's
// cutover only once every target is ready. Several runners (processes, on
// one machine or several) may run the same fleet: each target, each of a
// wave's `parallel` slots and each of a server's `per_host` slots is an
// advisory lock in the control database, held by the runner working on it;
// a runner that dies lets go of them with its session, and another takes
// its targets over from their checkpoints. A target's own migration lock
// (in its database) still keeps two runners from ever running it at once.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fleet/fleet_spec.h"
#include "fleet/fleet_store.h"
#include "tandem/phase.h"
#include "tandem/plan.h"
#include "tandem/spec.h"

namespace tandem {

class Connection;

struct FleetRunOptions {
  std::string control_dsn;
  std::set<Phase> approve;  // given to every target; cleanup's is the fleet's, recorded once
  std::string actor;
  // Who this runner is in the fleet table's `owner` ("host:pid" by default).
  std::string owner;
  const std::atomic<bool>* stop = nullptr;  // stop every target at its next safe point
  std::chrono::milliseconds poll{500};      // how often the fleet table is read
  // Under tandemd serve: run() waits (polling) when the fleet waits for an
  // approval or cannot go on, for an operator's retry, approval or
  // rollback; it returns when every target completed, or when stopped.
  bool keep_going = false;
  // rollback(): how long to wait for a target another runner holds (one
  // that a pause is stopping) before naming it as busy.
  std::chrono::milliseconds lease_wait{0};
  // Opens a session (control or target); connect_postgres when empty.
  std::function<std::unique_ptr<Connection>(const std::string& dsn, const std::string& app)>
      connect;
};

enum class FleetOutcome {
  kCompleted,        // every target completed
  kWaitingApproval,  // every target that could go on waits for an approval (cleanup's, mostly)
  kFailed,           // a target failed or is held, and nothing else can go on
  kStopped,          // stopped by a signal; run again to resume
  kRolledBack,       // rollback(): every target asked for is rolled back
};

class FleetRunner {
 public:
  FleetRunner(const FleetSpec& fleet, const Spec& spec, const Plan& plan, FleetRunOptions options);
  ~FleetRunner();
  FleetRunner(const FleetRunner&) = delete;
  FleetRunner& operator=(const FleetRunner&) = delete;

  // Runs the fleet until it completes, waits for an approval, cannot go on,
  // or is stopped. Throws Error(kBadInput) for a fleet that cannot start
  // (targets in no wave, another spec recorded under the fleet's name).
  FleetOutcome run();
  // Pauses `wave` ("" : the fleet), so that no runner starts its targets
  // again, then rolls back every target of it, later waves first,
  // `parallel` of the wave at a time; the pause stays (resume to run the
  // wave again). A target another runner still holds after lease_wait is
  // an error.
  FleetOutcome rollback(const std::string& wave);
  // What the outcome means, in a sentence or a few lines: which targets
  // failed and why, what waits for what, the next command.
  const std::string& report() const;
  // The targets as the runner last read them (for metrics); safe to call
  // from any thread while run() goes on.
  std::vector<FleetTargetRow> snapshot() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem
