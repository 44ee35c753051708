// Where a migration's state lives, in tandem's own terms: its record, its
// steps' status, the checkpoints of its keyset steps, its locks and its event
// log. The executor reads and writes its state only through this interface.
//
// Every call takes the session it works on. In the real store (StateStore:
// schema `tandem` in the target database) a write joins the transaction open
// on that session, so a step's work and its "done" record commit together;
// a fake store for unit tests (tests/support/fake_store.h) does the same by
// watching its fake sessions' BEGIN, COMMIT and ROLLBACK.
//
// A write that must change one row (a step's or the migration's state, a
// checkpoint, a range split) throws state_not_held() when it changes none.
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

// The error for state that the store does not hold as tandemd read it
// (`what` says which): a write that changed no row, a range without its
// checkpoint after a reconnect. Fatal: going on would work from memory.
Error state_not_held(const std::string& what);

class MigrationStore {
 public:
  virtual ~MigrationStore() = default;

  // Makes the store ready on a new session of the executor's (the real one
  // creates or upgrades schema `tandem`). Throws Error(kFatal) when the
  // store is newer than this binary understands.
  virtual void prepare(Connection& conn) = 0;

  // Takes the migration's lock for the session's life. Returns false when
  // another session holds it; `holder` then describes that session.
  virtual bool try_lock(Connection& conn, std::string& holder) = 0;
  // The same for one key range of a backfill or verify step (numbered as
  // its checkpoint): a worker session that outlives its executor keeps the
  // range from a new executor's workers until its batch is over.
  virtual bool try_range_lock(Connection& conn, int range, std::string& holder) = 0;
  // Lets go of a range's lock, so the session can take another range's.
  virtual void release_range_lock(Connection& conn, int range) = 0;

  virtual std::optional<MigrationRecord> load(Connection& conn) = 0;
  // In plan order.
  virtual std::vector<StepRecord> steps(Connection& conn) = 0;
  virtual std::optional<Checkpoint> checkpoint(Connection& conn, const std::string& step_id) = 0;
  // By range number; empty before the step started.
  virtual std::vector<Partition> partitions(Connection& conn, const std::string& step_id) = 0;
  // The hash of a spec's text, as the record's spec_hash holds it.
  virtual std::string spec_hash(Connection& conn, const std::string& text) = 0;
  // The spec text the migration was started with (or last replaced by).
  virtual std::string spec_text(Connection& conn) = 0;
  // Stores a new text of the spec (one that plans the same steps) and logs
  // it. Throws state_not_held() when the migration is gone.
  virtual void replace_spec(Connection& conn, const std::string& spec_text,
                            const std::string& actor) = 0;

  // Records the migration, state running in phase prepare, and one pending
  // step per plan step; or, for a migration that was rolled back, starts it
  // again from nothing. Logs "started" or "restarted".
  virtual void start(Connection& conn, const std::string& spec_text, const Plan& plan,
                     const std::string& actor) = 0;
  virtual void set_state(Connection& conn, MigrationState state, Phase phase) = 0;
  // Records an approval of `phase` (once) and logs it.
  virtual void approve(Connection& conn, Phase phase, const std::string& actor) = 0;
  virtual void mark_step(Connection& conn, const std::string& step_id, StepStatus status) = 0;
  // After a rollback: steps left running or failed are pending again, with
  // no attempts counted.
  virtual void reset_unfinished_steps(Connection& conn) = 0;
  // Records a failed attempt of a step (best effort, in its own transaction);
  // when `migration_failed`, also parks the migration as failed and logs it.
  virtual void record_failure(Connection& conn, const std::string& step_id, const Error& e,
                              bool migration_failed, int attempts) = 0;
  // Splits the step's key space at `bounds` (ascending): bounds.size() + 1
  // ranges, range 0 first.
  virtual void init_partitions(Connection& conn, const std::string& step_id,
                               std::optional<long long> rows_total,
                               const std::vector<std::vector<std::string>>& bounds) = 0;
  // Cuts range `worker` of a step at key `at`: it ends there, and a new
  // range `next` takes the keys after it up to where `worker` ended.
  virtual void split_partition(Connection& conn, const std::string& step_id, int worker,
                               const std::vector<std::string>& at, int next) = 0;
  // Moves range `worker`'s checkpoint from `from` (its last key as the batch
  // read it; empty: none yet) to `last_key`. Throws state_not_held() when
  // the checkpoint is not at `from` (or is missing, or finished): the batch
  // ran from a state that the store does not hold.
  virtual void save_checkpoint(Connection& conn, const std::string& step_id, int worker,
                               const std::vector<std::string>& from,
                               const std::vector<std::string>& last_key, long long rows,
                               long long mismatches, const std::string& sample, bool finished) = 0;
  virtual void clear_checkpoint(Connection& conn, const std::string& step_id) = 0;
  // Appends to the migration's event log.
  virtual void event(Connection& conn, const std::string& kind, std::optional<Phase> phase,
                     const std::string& step_id, const std::string& actor,
                     const nlohmann::json& detail = nlohmann::json::object()) = 0;
};

}  // namespace tandem
