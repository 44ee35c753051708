// Slices at run time: what the database holds about a migration's slices,
// the moves of one slice up and down its stages (each in one transaction
// with its routing lock, after the checks its move asks for), and what keeps
// the migration's cutover waiting.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "db/connection.h"
#include "plan/slices.h"
#include "tandem/spec.h"

namespace tandem {

struct SliceRecord {
  std::string name;
  std::string predicate;  // "" for the rest
  long long keys = 0;
  SliceStage stage = SliceStage::kOld;
  std::string since;  // UTC, ISO 8601
  std::string actor;
  std::string checked_at;              // "" when never checked
  std::optional<long long> differing;  // what the last check found
};

struct SlicesState {
  bool defined = false;  // false before prepare defines them (or after a rollback)
  std::string by, new_keys;
  std::string routes;  // closed, open, cut_over
  std::string since;
  std::string held;                 // why no slice may go live now, or ""
  std::vector<SliceRecord> slices;  // in order

  const SliceRecord* find(const std::string& name) const;
  // "" when every slice is complete; else which are not and where they are.
  std::string blocker() const;
};

SlicesState read_slices(Connection& conn, const std::string& migration);
// {"defined", "by", "new_keys", "routes", "since", "held", "slices": [...]}
// (docs/cli.md); what tandemd, the daemon and tandemctl show.
nlohmann::json slices_json(const SlicesState& s);
// That JSON as a table for people: slice, stage, keys, since, the last check.
std::string slices_text(const std::string& migration, const nlohmann::json& slices);

struct SliceCheckResult {
  long long rows = 0, differing = 0;
  std::string sample;  // up to five keys of differing rows
};

// One shadow-read pair compared on parameter sets of one slice's keys.
struct SlicePairResult {
  std::string pair;
  long long compared = 0, differing = 0;
  long long allowed = 0;  // the pair's max_mismatches
  std::string first;      // "(params)\n<difference>" of the first that differed
};

struct SliceMoveResult {
  std::vector<SlicePairResult> pairs;
  std::string slice;
  SliceStage from = SliceStage::kOld;
  std::optional<SliceStage> to;  // set when the move happened
  std::optional<SliceCheckResult> check;
  std::string refused;  // why it did not happen
};

// {"slice", "action", "from", "to", "refused", "check": {"rows", "differing",
// "sample"}} and the same as sentences for people.
nlohmann::json slice_move_json(const SliceMoveResult& r, const std::string& action);
std::string slice_move_text(const nlohmann::json& move);
// The exit code of a slice command: 0 done, 1 refused, 10 the copy check
// found differences.
int slice_move_exit_code(const nlohmann::json& move);

// Moves `slice` of the sliced migration `spec` one step (promote, demote)
// or back to old (rollback). The copy check runs first where the move asks
// for it (into shadow and into live); the change of stage takes the slice's
// routing lock under `lock_timeout`, retried while it times out, and records
// an event "slice_moved" with `actor` in the same transaction.
SliceMoveResult move_slice(Connection& conn, const Spec& spec, const std::string& slice,
                           SliceMove move, const std::string& actor, const Settings& settings);

// A slice command: "check" (the slice's copy checked and recorded, and its
// shadow-read pairs compared on its keys; the slice not moved) or a move ("promote", "demote",
// "rollback": move_slice). Another action is bad input.
SliceMoveResult slice_action(Connection& conn, const Spec& spec, const std::string& slice,
                             const std::string& action, const std::string& actor,
                             const Settings& settings);

// Checks the copy of one slice's rows and records what it found; nullopt
// for an operation without a copy to check (transform: its shadow-read
// pairs, compare_slice_pairs, are its check).
std::optional<SliceCheckResult> check_slice(Connection& conn, const Spec& spec,
                                            const std::string& slice);

// The spec's shadow-read pairs whose parameters come from the sliced table
// with the routing column among them, each compared on up to its `sample`
// parameter sets drawn from the slice's rows, one REPEATABLE READ snapshot
// per set (a write probe first, rolled back, where the pair has one).
std::vector<SlicePairResult> compare_slice_pairs(Connection& conn, const Spec& spec,
                                                 const std::string& slice);

// One reading of the canary for one slice.
struct CanaryReading {
  std::string slice;
  std::string value;  // as the query returned it ("" for NULL)
  bool healthy = true;
  std::string error;  // the query failed (unhealthy)
};
// Runs the canary's query (read-only, 5s at most), with the slice's name as
// $1 when the query has $1.
CanaryReading read_canary(Connection& conn, const Canary& canary, const std::string& slice);

struct CanaryOutcome {
  std::vector<CanaryReading> readings;   // one per live slice
  std::vector<std::string> rolled_back;  // the slices sent back to shadow
  std::string alert;                     // what was logged, when any was
};
// Reads the canary of every live slice. An unhealthy one goes back to
// shadow (actor "canary"), after the slices are held (no slice goes live
// until `resume_slices`), with an event "canary_rollback" and an ALERT line.
CanaryOutcome watch_canary(Connection& conn, const Spec& spec, const Settings& settings);
// Lifts the hold a canary rollback left; false when there was none.
bool resume_slices(Connection& conn, const Spec& spec, const std::string& actor);

}  // namespace tandem
