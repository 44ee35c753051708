// The state store: schema `tandem` in the target database. Every record of
// progress is written in the same transaction as the work it describes, so
// what the store says happened is exactly what happened.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "db/connection.h"
#include "engine/lifecycle.h"
#include "tandem/phase.h"
#include "tandem/plan.h"

namespace tandem {

struct MigrationRecord {
  std::string name;
  std::string spec_hash;
  MigrationState state = MigrationState::kRunning;
  Phase phase = Phase::kPrepare;
  std::set<Phase> approved;
  std::string last_step, last_error, last_sqlstate;
  std::string created_at, updated_at;
};

struct StepRecord {
  std::string step_id;
  Phase phase = Phase::kPrepare;
  StepStatus status = StepStatus::kPending;
  int attempts = 0;
  std::string started_at, finished_at, last_error, last_sqlstate;
};

// A backfill or verify step's progress over all its ranges.
struct Checkpoint {
  long long rows_done = 0;
  std::optional<long long> rows_total;
  long long mismatches = 0;
  std::string sample;
  double seconds = 0;  // since the step started
  int ranges = 1;      // key ranges, one per worker
  int ranges_finished = 0;
};

// One range of a step's key space (keys > after and <= upper; empty: no
// bound) and how far its worker got.
struct Partition {
  int worker = 0;
  std::vector<std::string> after, upper;
  std::vector<std::string> last_key;  // empty: no batch done yet
  long long rows_done = 0;
  long long mismatches = 0;
  bool finished = false;
};

// PostgreSQL's text form of an int[] of phases, "{1,6}", as phases.
std::set<Phase> parse_phase_array(const std::string& text);

class StateStore {
 public:
  explicit StateStore(std::string migration) : migration_(std::move(migration)) {}

  // Creates schema `tandem` or upgrades it to the newest version this binary
  // knows. Safe to call from several processes at once. Throws Error(kFatal)
  // when the database holds a newer version than this binary understands.
  static void ensure_schema(Connection& conn);
  // 0 when tandem has never run on this database.
  static int schema_version(Connection& conn);

  // Takes the session-level advisory lock of this migration. Returns false
  // when another session holds it; `holder` then describes that session.
  bool try_lock(Connection& conn, std::string& holder) const;
  // The same for one key range of a backfill or verify step (numbered as in
  // tandem.checkpoints.worker): a worker session that outlives its executor
  // keeps the range from a new executor's workers until its batch is over.
  bool try_range_lock(Connection& conn, int range, std::string& holder) const;
  // Lets go of a range's lock, so the session can take another range's.
  void release_range_lock(Connection& conn, int range) const;

  std::optional<MigrationRecord> load(Connection& conn) const;
  std::vector<StepRecord> steps(Connection& conn) const;
  std::optional<Checkpoint> checkpoint(Connection& conn, const std::string& step_id) const;
  // By worker number; empty before the step started.
  std::vector<Partition> partitions(Connection& conn, const std::string& step_id) const;
  static std::string hash_of(Connection& conn, const std::string& text);
  // The error for state that this server does not hold as tandemd read it
  // (`what` says which): a write that changed no row, a range without its
  // checkpoint after a reconnect. Fatal: going on would work from memory.
  static Error state_not_held(const std::string& what);
  // The spec text the migration was started with (or last replaced by).
  std::string spec_text(Connection& conn) const;
  // Stores a new text of the spec (one that plans the same steps) and logs
  // it. Throws state_not_held() when no row changed: the migration is gone.
  void replace_spec(Connection& conn, const std::string& spec_text, const std::string& actor) const;

  // Inserts the migration and one pending row per step; or, for a migration
  // that was rolled back, resets it to start again.
  void start(Connection& conn, const std::string& spec_text, const Plan& plan,
             const std::string& actor) const;

  void set_state(Connection& conn, MigrationState state, Phase phase) const;
  void approve(Connection& conn, Phase phase, const std::string& actor) const;
  void mark_step(Connection& conn, const std::string& step_id, StepStatus status) const;
  // After a rollback: steps left running or failed are pending again, with
  // no attempts counted.
  void reset_unfinished_steps(Connection& conn) const;
  // Records a failed attempt of a step (best effort, in its own transaction);
  // when `migration_failed`, also parks the migration as failed and logs it.
  void record_failure(Connection& conn, const std::string& step_id, const Error& e,
                      bool migration_failed, int attempts) const;
  // Splits the step's key space at `bounds` (ascending): bounds.size() + 1
  // ranges, worker 0 first.
  void init_partitions(Connection& conn, const std::string& step_id,
                       std::optional<long long> rows_total,
                       const std::vector<std::vector<std::string>>& bounds) const;
  // Cuts range `worker` of a step at key `at`: it ends there, and a new
  // range `next` takes the keys after it up to where `worker` ended.
  void split_partition(Connection& conn, const std::string& step_id, int worker,
                       const std::vector<std::string>& at, int next) const;
  // Moves range `worker`'s checkpoint from `from` (its last key as the batch
  // read it; empty: none yet) to `last_key`. Throws Error(kFatal) when the
  // checkpoint is not at `from` (or is missing, or finished): the batch ran
  // from a state that this server does not hold. Like every write here that
  // must change one row (step and migration states, range splits), it
  // fails rather than change none.
  void save_checkpoint(Connection& conn, const std::string& step_id, int worker,
                       const std::vector<std::string>& from,
                       const std::vector<std::string>& last_key, long long rows,
                       long long mismatches, const std::string& sample, bool finished) const;
  void clear_checkpoint(Connection& conn, const std::string& step_id) const;
  void event(Connection& conn, const std::string& kind, std::optional<Phase> phase,
             const std::string& step_id, const std::string& actor,
             const nlohmann::json& detail = nlohmann::json::object()) const;

  nlohmann::json events_json(Connection& conn, int limit) const;
  // Wall time of each phase with finished steps: first step start to last step end.
  std::vector<std::pair<Phase, double>> phase_seconds(Connection& conn) const;

 private:
  static bool try_lock_named(Connection& conn, const std::string& name, std::string& holder);
  std::string range_lock_name(int range) const;

  std::string migration_;
};

}  // namespace tandem
