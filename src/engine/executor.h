// The executor: runs a plan's phases in order against a database, resumably,
// and rolls completed steps back in reverse order.
//
// Contract:
//  - Exactly one executor runs a migration at a time: it holds the
//    migration's session advisory lock on the connection it works on, and a
//    lost connection is only replaced after the lock is taken again.
//  - A transactional step's work and its "done" record commit together. A
//    backfill batch and its checkpoint commit together. After a crash the same
//    command resumes exactly where the last commit left off.
//  - Retryable errors (lock timeout, deadlock, lost connection...) are retried
//    with exponential backoff and jitter up to the spec's retry budget; an
//    in-doubt commit is resolved by re-reading the state store, never by
//    replaying; any other error parks the migration as failed.
//  - A backfill or verify step splits its key space into ranges, several
//    per worker (see run_keyset_step); each range has its own checkpoint. Up
//    to `backfill_workers` threads, each on its own session, take ranges in
//    key order until none is left; a worker holds a lock of its own for the
//    range it works on. Raising backfill_workers while the step runs starts
//    more workers; lowering it retires some after their batch, and their
//    ranges go back to the queue. A worker that could start when no range
//    is left gets half of what is left of a running worker's range. A table
//    too small to split is one range, done on the executor's own session.
// Not thread-safe; one thread drives an executor (which may start workers).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "db/connection.h"
#include "engine/autovacuum_guard.h"
#include "engine/backfill.h"
#include "engine/hooks.h"
#include "engine/progress.h"
#include "engine/run_context.h"
#include "engine/run_control.h"
#include "engine/run_errors.h"
#include "engine/state_store.h"
#include "engine/throttle.h"
#include "engine/throttle_gate.h"
#include "engine/time_source.h"
#include "tandem/error.h"
#include "tandem/plan.h"
#include "tandem/run.h"
#include "tandem/spec.h"

namespace tandem {

// Runs every precheck step of `plan` on `conn`, each in a READ ONLY
// transaction (with these lock and statement timeouts when given; else the
// session's), and returns their refusals as (step id, reason), in plan order.
std::vector<std::pair<std::string, std::string>> precheck_refusals(
    Connection& conn, const Plan& plan,
    std::optional<std::pair<std::chrono::milliseconds, std::chrono::milliseconds>> timeouts =
        std::nullopt);

// What the public Executor (include/tandem/run.h) runs.
class ExecutorCore {
 public:
  ExecutorCore(const Spec& spec, const Plan& plan, RunOptions options);

  RunOutcome run();
  RollbackOutcome rollback();

  RoundReport shadow_round();
  Phase waiting_phase() const { return waiting_phase_; }
  const std::string& approval_withheld() const { return approval_withheld_; }
  // After kPaused: which threshold, e.g. "replica lag 31.0s over critical_replica_lag 30s".
  const std::string& pause_reason() const { return pause_reason_; }
  bool held_by_hook() const { return held_by_hook_; }
  // Whether a phase needs an explicit approval before it runs.
  bool needs_approval(Phase phase) const;

 private:
  using Clock = std::chrono::steady_clock;
  // Opens the executor's session (through the retry path) and closes every
  // session, and with it the migration lock, when run() or rollback()
  // returns: the lock is held for a call, not for the object's life.
  class SessionScope {
   public:
    explicit SessionScope(ExecutorCore& e);
    ~SessionScope();

   private:
    ExecutorCore& e_;
  };
  // A session the executor works on: its own (worker -1), which holds the
  // migration's lock, or a backfill worker's, which holds the lock of the
  // range it works on. A worker's session lasts the whole run: it changes
  // ranges by changing locks, and waits idle between steps, because a new
  // backend pays a page fault for each shared buffer it first touches (a
  // fresh session per range made a backfill 20% slower and the verify after
  // it twice as slow; see docs/performance.md).
  struct Lane {
    int worker = -1;
    int range = -1;  // the range it works on; -1: none
    int held = -1;   // the range whose lock its session holds; -1: none
    std::unique_ptr<Connection> conn;
    std::mt19937_64 rng{std::random_device{}()};
  };
  // Progress of one backfill or verify step over all its ranges; guarded by
  // progress_mu_.
  struct StepTally;
  // One worker thread's turn at a keyset step (keyset_step.cc).
  struct WorkerTurn;

  // (Re)opens the lane's session and takes its lock.
  void connect(Lane& lane);
  // Worker i's lane, made (without a session) when it has none yet.
  Lane& worker_lane(size_t i);
  // Takes the lane's lock on its open session (a worker's: that of
  // lane.range, letting go of the range it held), waiting up to lock_wait
  // for another holder to let go; then throws LockHeldError.
  void take_lock(Lane& lane);
  // A worker done with ranges for now lets go of its range's lock; its
  // session stays open for the next step unless `close`.
  void release(Lane& lane, bool close);
  std::string application_name() const;
  // Adds to `order` the tables step.locks_query names that it lacks.
  static void add_queried_locks(Transaction& tx, const Step& step, std::vector<TableLock>& order);
  // Takes `order` in order (see Step::locks): the first waits up to
  // `budget`, each later one only for what is left of it, and so do the
  // statements run after them in the transaction. A later lock that timed
  // out is moved to the front of `order` for the next attempt.
  static void take_locks_first(Transaction& tx, std::vector<TableLock>& order,
                               std::chrono::milliseconds budget, const std::string& step_id);
  // Runs `work` until it succeeds; see the contract above. `already_done`
  // answers, after an in-doubt commit, whether the work did commit.
  void with_retries(Lane& lane, const std::string& step_id, const std::string& what,
                    const std::function<void()>& work, const std::function<bool()>& already_done);
  // The same on the executor's own session.
  void with_retries(const std::string& step_id, const std::string& what,
                    const std::function<void()>& work, const std::function<bool()>& already_done) {
    with_retries(main_, step_id, what, work, already_done);
  }
  // Records the failure, parks the migration as failed and throws
  // StepFailedError with the next move for the operator.
  [[noreturn]] void fail(Lane& lane, const std::string& step_id, const std::string& what,
                         const Error& e, int attempts);
  // A stop was requested, or the other workers of a step must stop.
  bool stop_requested() const {
    return (options_.stop && options_.stop->load()) || halt_workers_.load();
  }
  // The settings in force now: the spec's, or the live ones.
  Settings settings() const {
    return options_.control ? options_.control->settings() : spec_.settings;
  }
  // How long a step or batch may wait for a lock: the spec's lock_timeout,
  // cut to 90% of the server's deadlock_timeout when it is not shorter
  // (with a warning, once). PostgreSQL's deadlock check cancels the waiter
  // that has waited deadlock_timeout first; tandem's waits end sooner, so in
  // a deadlock between a step and an application transaction that began
  // waiting about when the step did, the step is cancelled (and retried),
  // not the application's transaction (docs/operations.md).
  std::chrono::milliseconds lock_wait(const Settings& st);
  // The step's lock and statement timeouts, in force now, on `tx`.
  void set_step_timeouts(Transaction& tx) {
    const Settings st = settings();
    tx.set_timeouts(lock_wait(st), st.statement_timeout);
  }
  // Calls the progress sink, if any, one thread at a time.
  void report(const std::function<void(ProgressSink&)>& f);
  // Before a migration is first recorded: runs every precheck (read only)
  // and throws Error(kBadInput) listing their refusals, if any, so that a
  // refused migration leaves no trace.
  void check_before_start();
  // Whether this spec may carry on the recorded migration (`hash`: this
  // spec's): its text is the one recorded, or it plans the same steps (only
  // settings or layout changed), in which case the new text is recorded.
  bool spec_still_fits(const MigrationRecord& record, const std::string& hash);
  // Loads the migration's record and its steps' status, or records a new
  // migration after its prechecks; records the approvals given now. Returns
  // true when the migration was completed before.
  bool open_migration(std::optional<MigrationRecord>& record,
                      std::map<std::string, StepStatus>& status);
  RunOutcome run_phases();
  RollbackOutcome rollback_steps();
  // The step's status as stored; nullopt when it has no row.
  std::optional<StepStatus> step_status(const std::string& step_id);
  // Sets the migration's state (and logs an event) with retries.
  void record_state(MigrationState state, Phase phase, const std::string& event);
  // `event` of this migration, with the phase and step the run is in
  // (log_context()) unless `phase` is given.
  HookEvent hook_event(const std::string& event, const std::string& error,
                       std::optional<Phase> phase) const;
  // Queues `event` for the hooks, if any (hook_event).
  void notify_hooks(const std::string& event, const std::string& error = "",
                    std::optional<Phase> phase = std::nullopt);
  // Before cutover's first step: "" when every before-cutover hook passed.
  std::string before_cutover_hooks();

  void run_step(const Step& step);
  void run_sql_step(const Step& step);
  // Runs `work` with the spec's lock and statement timeouts set on the session.
  void with_session_timeouts(const std::function<void()>& work);
  // `sql` on the executor's session; with `generates`, it is a query and
  // each row it returns is a statement, run in turn (Step::generates).
  void exec_outside_transaction(const std::string& sql, bool generates);
  void run_precheck(const Step& step);
  // Returns false when stopped before the end.
  bool run_keyset_step(const Step& step);
  // A shadow-read pair over its sample (shadow_read_step.cc); false when
  // stopped before the end.
  bool run_shadow_read_step(const Step& step);
  // Draws round `round` of the pair's sample in `tx` unless it is drawn;
  // returns how many sets it holds.
  long long draw_sample(const Step& step, int round, Transaction& tx);
  // Compares every set of the round not compared yet, on backfill_workers
  // sessions at once; false when stopped.
  bool compare_samples(const Step& step, int round);
  // The sets of the round whose ordinal is `share` modulo `shares`, on `lane`.
  bool compare_share(Lane& lane, const Step& step, int round, int shares, int share);
  // The shadow_read phase's pair steps.
  std::vector<const Step*> pair_steps() const;
  // Why cutover may not be approved now: the last finished round has a pair
  // whose gate failed and whose differences are not accepted; or "".
  std::string round_blocker();
  // Why cutover cannot be approved now (slices not complete, a failing
  // round), or "".
  std::string cutover_blocker();
  // Records the approval of cutover when the slices are what it waited for
  // and they are all complete.
  bool approved_by_slices(Phase phase);
  // Marks the step running and reads its key and its ranges, cutting the
  // table into ranges when it first starts.
  void start_keyset_step(const Step& step, std::vector<std::string>& key,
                         std::vector<Partition>& ranges, StepTally& tally);
  // Records the step done when the server holds every range as finished;
  // false (with `ranges` read again) when it does not.
  bool finish_keyset_step(const Step& step, std::vector<Partition>& ranges);
  // Batches over one range until it is finished, on `lane`; `may_go` is asked
  // before each batch (false: stop). With `reread`, the range's checkpoint is
  // read again (under the lane's range lock) before the first batch. Returns
  // false when stopped.
  bool run_range(Lane& lane, const Step& step, const KeysetWalker& walker, Partition& range,
                 StepTally& tally, BatchSizer& sizer, bool reread,
                 const std::function<bool()>& may_go);
  // Reads `range` again from its checkpoint, and the tally with it.
  void reread_range(Connection& c, const Step& step, Partition& range, StepTally& tally);
  // A committed batch, as the tally and the progress sink count it.
  struct BatchCommit {
    Clock::time_point started, committed;
    double rested;   // seconds of rest before it, counted in the rate
    double seconds;  // the batch's own
    int batch_size;
    long long rows, mismatches;
    bool last;  // of its range
  };
  void count_batch(const Step& step, StepTally& tally, const BatchCommit& b);
  // Rests `seconds` between batches (`rested`: how long it did); false
  // when a stop is requested meanwhile.
  bool rest_for(double seconds, double& rested);
  // Between a worker's batches: cuts what is left of `range` in two at about
  // its middle key, both checkpoints in one transaction, and returns the
  // second part as a new range; nullopt when fewer than four batches
  // (`batch_rows` each) are left.
  std::optional<Partition> split_range(Lane& lane, const Step& step, const KeysetWalker& walker,
                                       Partition& range, int batch_rows);
  // Up to backfill_workers worker threads, each on its own session, take the
  // ranges in order, while this thread watches the throttle and starts
  // workers when backfill_workers is raised. When no range is left for a
  // worker that could start, a running worker splits its range for it.
  // Returns false when stopped.
  bool run_ranges_in_parallel(const Step& step, const KeysetWalker& walker,
                              const std::vector<Partition*>& ranges, StepTally& tally);
  void rollback_step(const Step& step);

  const Spec& spec_;
  const Plan& plan_;
  RunOptions options_;
  std::unique_ptr<MigrationStore> own_store_;  // when options_.store is null
  MigrationStore& store_;
  Lane main_;
  // Backfill workers' lanes, worker i on workers_[i]; open for the run.
  std::vector<std::unique_ptr<Lane>> workers_;
  std::unique_ptr<Connection>& conn_ = main_.conn;
  Phase waiting_phase_ = Phase::kPrepare;
  std::string approval_withheld_;
  bool ever_connected_ = false;
  std::string pause_reason_;
  bool held_by_hook_ = false;  // the last run() waits because a before-cutover hook failed
  std::atomic<bool> halt_workers_{false};
  const std::vector<std::string> migrated_tables_;  // schema.name: what the spec touches
  TimeSource& time_;
  RunContext ctx_;  // what the collaborators below share
  ThrottleGate throttle_;
  AutovacuumGuard autovacuum_;
  // The server's deadlock_timeout as tandem's session sees it (ms; 0: not
  // read yet), and the lock_timeout last warned about.
  std::atomic<long long> deadlock_timeout_ms_{0};
  std::atomic<long long> warned_lock_timeout_ms_{-1};
  std::mutex progress_mu_;
};

}  // namespace tandem
