// Rolling a migration back: every step that ran (or half ran), in reverse
// order, each with its rollback SQL and its "rolled back" record in one
// transaction; refused when an irreversible step has run.
#include <spdlog/spdlog.h>

#include <map>

#include "engine/executor.h"
#include "util/logging.h"

namespace tandem {

RollbackOutcome ExecutorCore::rollback_steps() {
  SessionScope session(*this);
  std::optional<MigrationRecord> record;
  std::map<std::string, StepStatus> status;
  with_retries(
      "", "reading migration " + spec_.name,
      [&] {
        record = store_.load(*conn_);
        if (!record || record->state == MigrationState::kRolledBack) return;
        if (!spec_still_fits(*record, store_.spec_hash(*conn_, spec_.text))) {
          throw Error(ErrorKind::kBadInput,
                      "the operations of migration \"" + spec_.name +
                          "\" have changed since it started; roll back with the file it started "
                          "with");
        }
        status.clear();
        for (const auto& r : store_.steps(*conn_)) status[r.step_id] = r.status;
      },
      [] { return false; });
  if (!record || record->state == MigrationState::kRolledBack) return RollbackOutcome::kNothingToDo;
  for (const auto& s : plan_.steps) {
    const StepStatus st = status[s.id];
    bool ran = st == StepStatus::kDone ||
               ((st == StepStatus::kRunning || st == StepStatus::kFailed) && !s.transactional);
    if (!s.reversible && ran) {
      // A completed migration has nothing left to finish: say so, not how.
      const std::string forward =
          record->state == MigrationState::kCompleted
              ? "The migration is complete; to undo its changes, write a migration that "
                "makes them the other way."
          : options_.under_daemon
              ? "The migration can only go forward: `tandemctl approve " + spec_.name + " " +
                    phase_name(s.phase) + "` and `tandemctl resume " + spec_.name + "` finish it."
              : "The migration can only go forward: run it again with --approve " +
                    std::string(phase_name(s.phase)) + " to finish it.";
      throw RollbackRefusedError("cannot roll back migration \"" + spec_.name + "\": step " + s.id +
                                 " (" + phase_name(s.phase) + ": " + s.description +
                                 ") has run and cannot be undone. " + forward);
    }
  }
  record_state(MigrationState::kRollingBack, record->phase, "rollback_started");
  for (auto it = plan_.steps.rbegin(); it != plan_.steps.rend(); ++it) {
    const Step& s = *it;
    const StepStatus st = status[s.id];
    bool partial = (st == StepStatus::kRunning || st == StepStatus::kFailed) &&
                   (!s.transactional || s.kind == StepKind::kBackfill ||
                    s.kind == StepKind::kVerify || s.kind == StepKind::kShadowRead);
    if (st != StepStatus::kDone && !partial) continue;
    if (stop_requested()) return RollbackOutcome::kStopped;
    rollback_step(s);
  }
  with_retries(
      "", "recording the rollback",
      [&] {
        Transaction tx(*conn_);
        store_.reset_unfinished_steps(*conn_);
        store_.set_state(*conn_, MigrationState::kRolledBack, Phase::kPrepare);
        store_.event(*conn_, "rolled_back", std::nullopt, "", options_.actor);
        tx.commit();
      },
      [] { return false; });
  return RollbackOutcome::kRolledBack;
}

void ExecutorCore::rollback_step(const Step& step) {
  log_context().step = step.id;
  const Settings st = settings();
  if (options_.progress) spdlog::info("rolling back step {}: {}", step.id, step.description);
  const std::string sql = step.rollback_sql.value_or("");
  std::vector<TableLock> order = step.rollback_locks;  // learnt across attempts
  with_retries(
      step.id, "rollback of step " + step.id,
      [&] {
        if (!sql.empty()) autovacuum_.yield(*conn_, step);
        if (!step.transactional && !sql.empty()) {
          with_session_timeouts([&] { exec_outside_transaction(sql, step.generates); });
        }
        Transaction tx(*conn_);
        tx.set_timeouts(lock_wait(st), st.statement_timeout);
        if (step.transactional && !sql.empty()) {
          add_queried_locks(tx, step, order);
          take_locks_first(tx, order, lock_wait(st), step.id);
          tx.exec(sql);
        }
        store_.clear_checkpoint(*conn_, step.id);
        store_.mark_step(*conn_, step.id, StepStatus::kRolledBack);
        store_.event(*conn_, "step_rolled_back", step.phase, step.id, options_.actor);
        tx.commit();
      },
      [&] { return step_status(step.id) == StepStatus::kRolledBack; });
  if (options_.progress) options_.progress->step_rolled_back(step);
}

}  // namespace tandem
