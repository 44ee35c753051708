#include "engine/executor.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <thread>

#include "db/conninfo.h"
#include "engine/hooks.h"
#include "engine/retry_policy.h"
#include "engine/slices.h"
#include "util/duration.h"
#include "util/ident.h"
#include "util/logging.h"
#include "util/text.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string sqlstate_note(const Error& e) {
  return e.sqlstate().empty() ? "" : " [SQLSTATE " + e.sqlstate() + "]";
}

}  // namespace

ExecutorCore::ExecutorCore(const Spec& spec, const Plan& plan, RunOptions options)
    : spec_(spec),
      plan_(plan),
      options_(std::move(options)),
      own_store_(options_.store ? nullptr : std::make_unique<StateStore>(spec.name)),
      store_(options_.store ? *options_.store : *own_store_),
      migrated_tables_([&] {
        const std::set<std::string> t = tables_touched(spec);
        return std::vector<std::string>(t.begin(), t.end());
      }()),
      time_(options_.time ? *options_.time : real_time()),
      ctx_{spec.name,
           options_.actor,
           &store_,
           &time_,
           options_.control,
           [this] { return stop_requested(); },
           [this] { return settings(); },
           [this](const std::function<void(ProgressSink&)>& f) { report(f); }},
      throttle_(
          ctx_,
          [this]() -> Connection& {
            if (!conn_ || !conn_->is_open()) connect(main_);
            return *conn_;
          },
          application_name() + " ", migrated_tables_),
      autovacuum_(ctx_, migrated_tables_) {}

bool ExecutorCore::needs_approval(Phase phase) const {
  if (spec_.requires_approval(phase)) return true;
  // In slices, cutover waits for every slice to be complete.
  if (phase == Phase::kCutover && spec_.sliced()) return true;
  for (const Step* s : plan_.steps_in(phase)) {
    if (!s->reversible) return true;
  }
  return false;
}

std::string ExecutorCore::cutover_blocker() {
  if (spec_.sliced()) {
    std::string b = read_slices(*conn_, spec_.name).blocker();
    if (!b.empty()) return b;
  }
  return round_blocker();
}

bool ExecutorCore::approved_by_slices(Phase phase) {
  // Only where the slices are all that cutover waits for: no gate of the
  // spec's, no irreversible step, no failing shadow-read round.
  if (phase != Phase::kCutover || !spec_.sliced() || spec_.requires_approval(phase)) return false;
  for (const Step* s : plan_.steps_in(phase)) {
    if (!s->reversible) return false;
  }
  const std::string blocker = cutover_blocker();
  if (!blocker.empty()) {
    approval_withheld_ = blocker;
    return false;
  }
  store_.approve(*conn_, phase, "tandem (every slice complete)");
  spdlog::info("migration {}: every slice is complete; cutover begins", spec_.name);
  return true;
}

void ExecutorCore::report(const std::function<void(ProgressSink&)>& f) {
  if (!options_.progress) return;
  std::lock_guard<std::mutex> l(progress_mu_);
  f(*options_.progress);
}

std::optional<StepStatus> ExecutorCore::step_status(const std::string& step_id) {
  for (const auto& s : store_.steps(*conn_)) {
    if (s.step_id == step_id) return s.status;
  }
  return std::nullopt;
}

void ExecutorCore::with_retries(Lane& lane, const std::string& step_id, const std::string& what,
                                const std::function<void()>& work,
                                const std::function<bool()>& already_done) {
  const Settings st = settings();
  const int budget = st.retry_budget;
  bool check_done = false;
  // Attempts are counted per outage: once a lost session is replaced, the
  // count starts again, so a run that lives through several separate
  // restarts or failovers does not spend its budget on the earlier ones
  // (issue 16). The outages themselves are counted too, so that work that
  // takes the server down each time it runs does not go on for ever.
  int outages = 0;
  bool lost = false;
  for (int attempt = 1;; ++attempt) {
    try {
      if (!lane.conn || !lane.conn->is_open()) {
        connect(lane);
        if (lost) {
          lost = false;
          attempt = 1;
        }
      } else if (lane.held != lane.range) {
        take_lock(lane);  // a worker's session moving to another range
      }
      if (check_done) {
        check_done = false;
        if (already_done()) return;
      }
      work();
      return;
    } catch (const Error& e) {
      switch (RetryPolicy::judge(e, {attempt, outages, stop_requested(), ever_connected_}, st)) {
        case RetryPolicy::Verdict::kPassOn:
          throw;
        case RetryPolicy::Verdict::kStop:
          // Most likely cancelled by abort; the work rolled back and is done
          // again on resume, like after a crash.
          spdlog::info("{}: stopped: {}", what, e.what());
          throw StoppedError(what + " stopped: " + e.what());
        case RetryPolicy::Verdict::kReread:
          spdlog::warn("{}: {}; re-reading the state store before going on", what, e.what());
          lane.conn.reset();
          check_done = true;
          break;
        case RetryPolicy::Verdict::kFail:
          fail(lane, step_id, what, e, attempt);
        case RetryPolicy::Verdict::kRetry:
          if (lane.conn && lane.conn->is_open()) {
            store_.record_failure(*lane.conn, step_id, e, false, attempt);
          } else {
            lane.conn.reset();
          }
          break;
      }
      if ((!lane.conn || !lane.conn->is_open()) && !lost && ever_connected_) {
        lost = true;
        ++outages;
      }
      report([&](ProgressSink& p) { p.retrying(e.sqlstate()); });
      auto pause = RetryPolicy::backoff(attempt, settings(), lane.rng);
      spdlog::warn("{}: {}{}; attempt {}/{}, retrying in {}", what, e.what(), sqlstate_note(e),
                   attempt, budget, format_duration(pause));
      // A stop ends the wait: nothing is in flight while backing off.
      for (auto end = time_.now() + pause; time_.now() < end;) {
        if (stop_requested()) throw StoppedError(what + " stopped while waiting to retry");
        time_.sleep_for(std::min<Clock::duration>(end - time_.now(), 50ms));
      }
    }
  }
}

void ExecutorCore::record_state(MigrationState state, Phase phase, const std::string& event) {
  with_retries(
      "", std::string("recording state ") + to_string(state),
      [&] {
        Transaction tx(*conn_);
        store_.set_state(*conn_, state, phase);
        if (!event.empty()) store_.event(*conn_, event, phase, "", options_.actor);
        tx.commit();
      },
      [] { return false; });  // idempotent: doing it twice is harmless
}

void ExecutorCore::fail(Lane& lane, const std::string& step_id, const std::string& what,
                        const Error& e, int attempts) {
  const bool spent = e.retryable();
  if (lane.conn && lane.conn->is_open()) {
    store_.record_failure(*lane.conn, step_id, e, true, attempts);
  }
  const std::string resume = options_.under_daemon ? "`tandemctl resume " + spec_.name + "`"
                                                   : std::string("run the same command");
  const std::string undo = options_.under_daemon ? "`tandemctl rollback " + spec_.name + "`"
                                                 : std::string("run `tandemd rollback`");
  std::string next =
      spent && e.sqlstate() == "55P03"
          ? "Next: find the session holding a conflicting lock (pg_locks joined with "
            "pg_stat_activity), end it or wait for it, then " +
                resume + " to resume; or " + undo + " to undo the migration."
          : "Next: the migration is parked as failed; fix the cause, then " + resume +
                " to resume, or " + undo + " to undo the migration.";
  throw StepFailedError(
      what + " failed: " + e.what() + sqlstate_note(e) +
          (spent ? " (retry budget of " + std::to_string(attempts) + " attempts spent)" : "") +
          ".\n" + next,
      e.sqlstate());
}

RunOutcome ExecutorCore::run() {
  LogContextScope log({spec_.name, "", ""});
  held_by_hook_ = false;
  try {
    const RunOutcome outcome = run_phases();
    if (outcome == RunOutcome::kCompleted) notify_hooks("success", "", Phase::kCleanup);
    if (outcome == RunOutcome::kWaitingApproval && !held_by_hook_) {
      notify_hooks("waiting-approval", approval_withheld_, waiting_phase_);
    }
    return outcome;
  } catch (const CriticalPauseError& e) {
    pause_reason_ = e.what();
    notify_hooks("critical-pause", pause_reason_);
    return RunOutcome::kPaused;
  } catch (const StoppedError&) {
    return RunOutcome::kStopped;
  } catch (const Error& e) {
    // A step that failed for good, or a migration refused before it began.
    if (e.failure() == Failure::kStepFailed || e.kind() == ErrorKind::kBadInput) {
      notify_hooks("failure", e.what());
    }
    throw;
  }
}

RollbackOutcome ExecutorCore::rollback() {
  LogContextScope log({spec_.name, "rollback", ""});
  try {
    const RollbackOutcome outcome = rollback_steps();
    if (outcome == RollbackOutcome::kRolledBack) notify_hooks("rolled-back");
    return outcome;
  } catch (const StoppedError&) {
    return RollbackOutcome::kStopped;
  } catch (const Error& e) {
    if (e.failure() == Failure::kStepFailed) notify_hooks("failure", e.what());
    throw;
  }
}

HookEvent ExecutorCore::hook_event(const std::string& event, const std::string& error,
                                   std::optional<Phase> phase) const {
  const LogContext& c = log_context();
  return {event,
          spec_.name,
          phase ? phase_name(*phase) : c.phase,
          phase ? "" : c.step,
          error,
          redacted_conninfo(options_.dsn),
          options_.actor};
}

void ExecutorCore::notify_hooks(const std::string& event, const std::string& error,
                                std::optional<Phase> phase) {
  if (options_.hooks) options_.hooks->notify(hook_event(event, error, phase));
}

std::string ExecutorCore::before_cutover_hooks() {
  return options_.hooks ? options_.hooks->gate(hook_event("before-cutover", "", Phase::kCutover))
                        : "";
}

std::vector<std::pair<std::string, std::string>> precheck_refusals(
    Connection& conn, const Plan& plan,
    std::optional<std::pair<std::chrono::milliseconds, std::chrono::milliseconds>> timeouts) {
  std::vector<std::pair<std::string, std::string>> refusals;
  for (const auto& step : plan.steps) {
    if (step.kind != StepKind::kPrecheck) continue;
    Transaction tx(conn);
    if (timeouts) tx.set_timeouts(timeouts->first, timeouts->second);
    tx.exec("SET TRANSACTION READ ONLY");
    Rows problems = tx.exec(step.sql);
    // Ended by COMMIT, as every transaction here is: a ROLLBACK that does not
    // reach the server would leave the session read only.
    tx.commit();
    for (size_t i = 0; i < problems.size(); ++i)
      refusals.emplace_back(step.id, problems.text(i, 0));
  }
  return refusals;
}

void ExecutorCore::check_before_start() {
  const Settings st = settings();
  std::vector<std::string> refusals;
  for (const auto& [step, reason] :
       precheck_refusals(*conn_, plan_, std::make_pair(lock_wait(st), st.statement_timeout))) {
    refusals.push_back("step " + step + ": " + reason);
  }
  if (!refusals.empty()) {
    throw Error(ErrorKind::kBadInput, "migration \"" + spec_.name +
                                          "\" refused by its prechecks; nothing was changed:\n  " +
                                          join(refusals, "\n  "));
  }
}

bool ExecutorCore::spec_still_fits(const MigrationRecord& record, const std::string& hash) {
  if (record.spec_hash == hash) return true;
  const std::string stored = store_.spec_text(*conn_);
  auto started = parse_spec(stored, spec_.file);
  if (!started.spec || !plans_alike(*started.spec, spec_)) return false;
  store_.replace_spec(*conn_, spec_.text, options_.actor);
  spdlog::info(
      "migration {}: the spec's settings or layout changed since it started; its steps "
      "are the same, so it goes on with the new text",
      spec_.name);
  return true;
}

bool ExecutorCore::open_migration(std::optional<MigrationRecord>& record,
                                  std::map<std::string, StepStatus>& status) {
  bool already_completed = false;
  bool started = false;  // recorded now, not before
  // Everything here is idempotent, so after any retryable error or an
  // in-doubt commit it simply runs again from the top.
  with_retries(
      "", "starting migration " + spec_.name,
      [&] {
        record = store_.load(*conn_);
        const std::string hash = store_.spec_hash(*conn_, spec_.text);
        if (record && record->state != MigrationState::kRolledBack) {
          if (!spec_still_fits(*record, hash)) {
            throw Error(ErrorKind::kBadInput,
                        "the operations of migration \"" + spec_.name +
                            "\" have changed since it started (state " +
                            std::string(to_string(record->state)) +
                            "); restore the file it started with, or roll the migration back "
                            "before changing them (settings may change at any time)");
          }
          if (record->state == MigrationState::kCompleted) {
            already_completed = true;
            return;
          }
          auto stored = store_.steps(*conn_);
          bool same = stored.size() == plan_.steps.size();
          for (size_t i = 0; same && i < stored.size(); ++i) {
            same = stored[i].step_id == plan_.steps[i].id;
          }
          if (!same) {
            throw Error(ErrorKind::kBadInput,
                        "migration \"" + spec_.name +
                            "\" was started by a tandemd that planned different steps; finish "
                            "or roll it back with that version");
          }
          store_.event(*conn_, "resumed", record->phase, "", options_.actor,
                       {{"state", to_string(record->state)}});
        } else {
          // A refusal changes nothing, so it must record nothing either.
          check_before_start();
          store_.start(*conn_, spec_.text, plan_, options_.actor);
          record = store_.load(*conn_);
          started = true;
        }
        for (const auto& p : phase_table()) {
          const bool given = options_.approve_all || options_.approve.count(p.phase);
          if (!given || !needs_approval(p.phase) || record->approved.count(p.phase)) continue;
          if (p.phase == Phase::kCutover) {
            approval_withheld_ = cutover_blocker();
            if (!approval_withheld_.empty()) {
              spdlog::warn("migration {}: approval of cutover withheld: {}", spec_.name,
                           approval_withheld_);
              continue;
            }
          }
          store_.approve(*conn_, p.phase, options_.actor);
          record->approved.insert(p.phase);
        }
        status.clear();
        for (const auto& st : store_.steps(*conn_)) status[st.step_id] = st.status;
      },
      [] { return false; });
  if (started) notify_hooks("start", "", Phase::kPrepare);
  return already_completed;
}

RunOutcome ExecutorCore::run_phases() {
  SessionScope session(*this);
  std::optional<MigrationRecord> record;
  std::map<std::string, StepStatus> status;
  if (open_migration(record, status)) return RunOutcome::kAlreadyCompleted;

  for (const auto& p : phase_table()) {
    auto steps = plan_.steps_in(p.phase);
    bool done = true;
    for (const Step* s : steps) done = done && status[s->id] == StepStatus::kDone;
    // A phase without steps is passed, unless `gates:` names it and nothing
    // after it has begun: the team asked to stop there (shadow-read rounds
    // run at the cutover gate whether cutover has steps or not).
    const bool gated_stop =
        steps.empty() &&
        std::count(spec_.approval_gates.begin(), spec_.approval_gates.end(), p.phase) > 0 &&
        !record->approved.count(p.phase) &&
        std::none_of(plan_.steps.begin(), plan_.steps.end(), [&](const Step& s) {
          return static_cast<int>(s.phase) > static_cast<int>(p.phase) &&
                 status[s.id] != StepStatus::kPending;
        });
    if (done && !gated_stop) continue;
    if (options_.until && static_cast<int>(p.phase) > static_cast<int>(*options_.until)) {
      record_state(MigrationState::kPaused, p.phase, "");
      return RunOutcome::kReachedUntil;
    }
    if (needs_approval(p.phase) && !record->approved.count(p.phase) &&
        approved_by_slices(p.phase)) {
      record->approved.insert(p.phase);
    }
    if (needs_approval(p.phase) && !record->approved.count(p.phase)) {
      waiting_phase_ = p.phase;
      record_state(MigrationState::kWaitingApproval, p.phase, "waiting_approval");
      return RunOutcome::kWaitingApproval;
    }
    const bool begun = std::any_of(steps.begin(), steps.end(), [&](const Step* s) {
      return status[s->id] != StepStatus::kPending;
    });
    if (p.phase == Phase::kCutover && !begun) {
      const std::string why = before_cutover_hooks();
      if (!why.empty()) {
        held_by_hook_ = true;
        waiting_phase_ = p.phase;
        approval_withheld_ = "a before-cutover hook failed: " + why;
        spdlog::warn("migration {}: cutover is held: {}", spec_.name, approval_withheld_);
        record_state(MigrationState::kWaitingApproval, p.phase, "cutover_held");
        return RunOutcome::kWaitingApproval;
      }
    }
    record_state(MigrationState::kRunning, p.phase, "phase_started");
    notify_hooks("phase-change", "", p.phase);
    log_context().phase = phase_name(p.phase);
    log_context().step.clear();
    if (options_.progress) options_.progress->phase_started(p.phase);
    for (const Step* s : steps) {
      if (status[s->id] == StepStatus::kDone) continue;
      if (stop_requested()) {
        record_state(MigrationState::kPaused, p.phase, "");
        return RunOutcome::kStopped;
      }
      auto t0 = time_.now();
      log_context().step = s->id;
      if (options_.progress) options_.progress->step_started(*s);
      bool finished = true;  // false: stopped part way (the steps that run long)
      if (s->kind == StepKind::kBackfill || s->kind == StepKind::kVerify) {
        finished = run_keyset_step(*s);
      } else if (s->kind == StepKind::kShadowRead) {
        finished = run_shadow_read_step(*s);
      } else {
        run_step(*s);
      }
      if (!finished) {
        record_state(MigrationState::kPaused, p.phase, "");
        return RunOutcome::kStopped;
      }
      if (options_.progress) options_.progress->step_finished(*s, time_.seconds_since(t0));
    }
  }
  record_state(MigrationState::kCompleted, Phase::kCleanup, "completed");
  return RunOutcome::kCompleted;
}

void ExecutorCore::run_step(const Step& step) {
  if (step.kind == StepKind::kPrecheck) {
    run_precheck(step);
  } else {
    run_sql_step(step);
  }
}

void ExecutorCore::run_precheck(const Step& step) {
  with_retries(
      step.id, "step " + step.id,
      [&] {
        Transaction tx(*conn_);
        set_step_timeouts(tx);
        Rows problems = tx.exec(step.sql);
        if (!problems.empty()) {
          std::vector<std::string> reasons;
          for (size_t i = 0; i < problems.size(); ++i) reasons.push_back(problems.text(i, 0));
          throw Error(ErrorKind::kFatal, "refused: " + join(reasons, "; "));
        }
        store_.mark_step(*conn_, step.id, StepStatus::kDone);
        store_.event(*conn_, "step_done", step.phase, step.id, options_.actor);
        tx.commit();
      },
      [&] { return step_status(step.id) == StepStatus::kDone; });
}

void ExecutorCore::run_sql_step(const Step& step) {
  const Settings st = settings();
  if (step.transactional) {
    std::vector<TableLock> order = step.locks;  // learnt across attempts
    with_retries(
        step.id, "step " + step.id,
        [&] {
          autovacuum_.yield(*conn_, step);
          Transaction tx(*conn_);
          tx.set_timeouts(lock_wait(st), st.statement_timeout);
          add_queried_locks(tx, step, order);
          take_locks_first(tx, order, lock_wait(st), step.id);
          tx.exec(step.sql);
          store_.mark_step(*conn_, step.id, StepStatus::kDone);
          store_.event(*conn_, "step_done", step.phase, step.id, options_.actor);
          tx.commit();
        },
        [&] { return step_status(step.id) == StepStatus::kDone; });
    return;
  }
  // Outside a transaction the work and its record cannot commit together, so
  // the step is made idempotent: an earlier attempt's leftovers are repaired
  // before it runs again.
  with_retries(
      step.id, "step " + step.id,
      [&] {
        if (step.state_check) {
          Rows r = conn_->exec(*step.state_check);
          std::string state = r.empty() ? "" : r.text(0, 0);
          if (state == "done") {
            spdlog::info("step {}: already complete from an earlier attempt", step.id);
            Transaction tx(*conn_);
            store_.mark_step(*conn_, step.id, StepStatus::kDone);
            store_.event(*conn_, "step_done", step.phase, step.id, options_.actor,
                         {{"found_complete", true}});
            tx.commit();
            return;
          }
          if (state == "repair" && step.repair_sql) {
            spdlog::info("step {}: removing what an interrupted attempt left: {}", step.id,
                         *step.repair_sql);
            with_session_timeouts([&] { conn_->exec(*step.repair_sql); });
          }
        }
        store_.mark_step(*conn_, step.id, StepStatus::kRunning);
        autovacuum_.yield(*conn_, step);
        with_session_timeouts([&] { exec_outside_transaction(step.sql, step.generates); });
        Transaction tx(*conn_);
        store_.mark_step(*conn_, step.id, StepStatus::kDone);
        store_.event(*conn_, "step_done", step.phase, step.id, options_.actor);
        tx.commit();
      },
      [&] { return step_status(step.id) == StepStatus::kDone; });
}

Executor::Executor(const Spec& spec, const Plan& plan, RunOptions options)
    : core_(std::make_unique<ExecutorCore>(spec, plan, std::move(options))) {}
Executor::~Executor() = default;
RunOutcome Executor::run() { return core_->run(); }
RollbackOutcome Executor::rollback() { return core_->rollback(); }
RoundReport Executor::shadow_round() { return core_->shadow_round(); }
const std::string& Executor::approval_withheld() const { return core_->approval_withheld(); }
Phase Executor::waiting_phase() const { return core_->waiting_phase(); }
bool Executor::held_by_hook() const { return core_->held_by_hook(); }
const std::string& Executor::pause_reason() const { return core_->pause_reason(); }
bool Executor::needs_approval(Phase phase) const { return core_->needs_approval(phase); }

}  // namespace tandem
