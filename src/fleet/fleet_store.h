// A fleet's state in its control database (tables tandem.fleets,
// tandem.fleet_targets and tandem.fleet_events, docs/fleet.md): every SQL
// statement on them is here. Each target's migration state stays in the
// target's own database; these rows say where each target stands in the
// fleet, so that every runner (and `tandemd fleet status`) sees the same.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "db/connection.h"

namespace tandem {

// The states of a target in a fleet (docs/fleet.md).
namespace fleet_state {
inline constexpr const char* kPending = "pending";
inline constexpr const char* kRunning = "running";
inline constexpr const char* kReady = "ready";
inline constexpr const char* kCuttingOver = "cutting_over";
inline constexpr const char* kCutOver = "cut_over";
inline constexpr const char* kCleaningUp = "cleaning_up";
inline constexpr const char* kCompleted = "completed";
inline constexpr const char* kWaitingApproval = "waiting_approval";
inline constexpr const char* kFailed = "failed";
inline constexpr const char* kHeld = "held";
inline constexpr const char* kRollingBack = "rolling_back";
inline constexpr const char* kRolledBack = "rolled_back";
}  // namespace fleet_state

struct FleetTargetRow {
  std::string target, wave, server, state, phase, step, last_error, owner;
  int wave_ordinal = 0;
  long long rows_done = 0;
  double since_seconds = 0;   // in this state
  double passed_seconds = 0;  // since it was ready (or cut over, or completed); 0 if not yet
  std::string since, started_at, ready_at, cutover_started_at, cut_over_at,
      completed_at;  // RFC 3339
};

struct FleetRecord {
  std::string migration, reference, reference_target, reference_text;
  std::string cleanup_approved_by;
};

// What a runner registers: each target with its wave.
struct FleetMember {
  std::string target, wave, server, dsn_redacted;
  int wave_ordinal = 0, ordinal = 0;
};

class FleetStore {
 public:
  explicit FleetStore(std::string fleet) : fleet_(std::move(fleet)) {}

  // Creates or upgrades tandem's schema in the control database.
  static void prepare(Connection& c);
  // Records the fleet and its targets, or checks that the recorded fleet
  // runs the same migration spec (else Error(kBadInput)); a target not
  // started yet takes its wave from `members`, and failed or held targets
  // are set to pending again (each start of a runner retries them).
  void enrol(Connection& c, const std::string& migration, const std::string& spec_hash,
             const std::vector<FleetMember>& members, const std::string& actor);
  std::optional<FleetRecord> record(Connection& c);
  // Every target, by wave and then ordinal.
  std::vector<FleetTargetRow> targets(Connection& c);
  // Moves `target` to `state` (with its error, or NULL), stamping the
  // column `stamp` ("ready_at", ...; "" for none) with the time now (with
  // "started_at", the later times are cleared: the target starts over); logs
  // an event of kind `state`. Throws Error(kFatal) when no row changed.
  void set_state(Connection& c, const std::string& target, const std::string& state,
                 const std::string& error, const std::string& owner, const std::string& stamp,
                 const std::string& actor);
  void progress(Connection& c, const std::string& target, const std::string& phase,
                const std::string& step, long long rows_done);
  void set_fingerprint(Connection& c, const std::string& target, const std::string& fingerprint);
  // Makes (target, fingerprint, text) the fleet's reference unless it has
  // one; returns the reference in force.
  FleetRecord reference(Connection& c, const std::string& target, const std::string& fingerprint,
                        const std::string& text);
  void approve_cleanup(Connection& c, const std::string& actor);
  // Pauses `wave` ("" : the whole fleet); false when it was paused already.
  bool pause(Connection& c, const std::string& wave, const std::string& actor);
  // Lifts the pause of `wave`, or ("") every pause of the fleet; how many.
  int resume(Connection& c, const std::string& wave, const std::string& actor);
  // wave ("" : the whole fleet) -> who paused it.
  std::map<std::string, std::string> pauses(Connection& c);
  // Sets failed and held targets (only `target`, unless "") to pending, each
  // with an event `retried`; how many.
  int retry(Connection& c, const std::string& target, const std::string& actor);
  // Nobody works on `target` now (its runner stopped it at a safe point).
  void disown(Connection& c, const std::string& target);
  // The newest `limit` events, oldest first.
  nlohmann::json events(Connection& c, int limit);
  // The advisory lock key of `what` ("target/NAME", "slot/WAVE/3", ...).
  std::string lock_key_sql(const std::string& what) const;

 private:
  std::string fleet_;
};

// The schema of `tables` (schema.name) in `c`'s database as text, one
// line per column, constraint, index and trigger, sorted; a table that does
// not exist is a line too. Names of indexes and constraints are left out
// (they may differ between databases that match).
std::string schema_fingerprint_text(Connection& c, const std::vector<std::string>& tables);
// A short hash of that text.
std::string fingerprint_of(const std::string& text);
// The lines of `a` not in `b` ("-") and of `b` not in `a` ("+"), at most `limit`.
std::string fingerprint_diff(const std::string& a, const std::string& b, int limit = 8);

}  // namespace tandem
