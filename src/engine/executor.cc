#include "engine/executor.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <thread>

#include "util/duration.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Rows per verify chunk, in batches (with a fixed batch size).
constexpr int kVerifyChunkFactor = 10;
// Key ranges a backfill or verify step is cut into: this many per worker,
// and at least kMinRanges, so that a worker that finishes early takes
// another range and backfill_workers can be raised while the step runs (one
// worker included). A table of fewer batches gets fewer ranges; one of a
// single range runs on the executor's own session.
constexpr int kRangesPerWorker = 4;
constexpr int kMinRanges = 8;
// A range is cut in two for an idle worker only with this many batches left.
constexpr int kSplitLeast = 4;
// How often the throttle is read while workers run.
constexpr auto kThrottleReadEvery = 200ms;
// How often a long wait for an autovacuum is logged again.
constexpr auto kAutovacuumReportEvery = 1min;

// Rows per batch of a step: a verify chunk takes no row lock and blocks no
// one, so it reads ten batches' worth of rows at a time (up to
// max_batch_size) and spends less on the per-chunk walk and commit. Not with
// a target batch time, which sizes the chunks itself.
int rows_per_batch(int batch_size, bool verify, const Settings& st) {
  if (!verify || st.target_batch_time.count() != 0) return batch_size;
  return std::max(batch_size,
                  std::min(batch_size * kVerifyChunkFactor, std::max(st.max_batch_size, 1)));
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string sqlstate_note(const Error& e) {
  return e.sqlstate().empty() ? "" : " [SQLSTATE " + e.sqlstate() + "]";
}

}  // namespace

Executor::Executor(const Spec& spec, const Plan& plan, RunOptions options)
    : spec_(spec),
      plan_(plan),
      options_(std::move(options)),
      store_(spec.name),
      migrated_tables_([&] {
        const std::set<std::string> t = tables_touched(spec);
        return std::vector<std::string>(t.begin(), t.end());
      }()) {}

bool Executor::needs_approval(Phase phase) const {
  if (spec_.requires_approval(phase)) return true;
  for (const Step* s : plan_.steps_in(phase)) {
    if (!s->reversible) return true;
  }
  return false;
}

std::string Executor::application_name() const {
  return "tandemd " + spec_.name + " pid " + std::to_string(getpid());
}

void Executor::connect(Lane& lane) {
  lane.conn.reset();
  const bool worker = lane.worker >= 0;
  const std::string app =
      application_name() + (worker ? " worker " + std::to_string(lane.worker) : "");
  auto conn =
      options_.connect ? options_.connect(options_.dsn, app) : connect_postgres(options_.dsn, app);
  if (!worker) StateStore::ensure_schema(*conn);
  lane.held = -1;
  lane.conn = std::move(conn);
  try {
    take_lock(lane);
  } catch (...) {
    lane.conn.reset();
    throw;
  }
  if (!worker) {
    ever_connected_ = true;
    deadlock_timeout_ms_ =
        lane.conn->exec("SELECT setting::bigint FROM pg_settings WHERE name = 'deadlock_timeout'")
            .integer(0, 0, 0);
  }
  if (options_.control)
    options_.control->set_backend_pid(lane.worker + 1, lane.conn->backend_pid());
}

namespace {

// Takes `locks` in order (see Step::locks): the first waits up to `budget`,
// each later one only for what is left of it, and so do the statements run
// after them in the transaction (at least 1 ms: 0 would mean no limit).
void take_locks_first(Transaction& tx, const std::vector<TableLock>& locks,
                      std::chrono::milliseconds budget) {
  if (locks.empty()) return;
  const auto start = std::chrono::steady_clock::now();
  auto left = budget;
  for (const auto& l : locks) {
    tx.exec("SET LOCAL lock_timeout = '" + std::to_string(left.count()) + "ms'");
    tx.exec("LOCK TABLE " + l.table + " IN " + l.mode + " MODE");
    const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    left = std::max(std::chrono::milliseconds(1), budget - spent);
  }
  tx.exec("SET LOCAL lock_timeout = '" + std::to_string(left.count()) + "ms'");
}

}  // namespace

std::chrono::milliseconds Executor::lock_wait(const Settings& st) {
  const long long deadlock = deadlock_timeout_ms_;
  if (deadlock <= 0 || st.lock_timeout.count() < deadlock) return st.lock_timeout;
  const std::chrono::milliseconds cut{std::max(1LL, deadlock * 9 / 10)};
  if (warned_lock_timeout_ms_.exchange(st.lock_timeout.count()) != st.lock_timeout.count()) {
    spdlog::warn(
        "{}: lock_timeout {}ms is not shorter than the server's deadlock_timeout {}ms; steps "
        "wait at most {}ms for a lock, so that in a deadlock with the application PostgreSQL "
        "cancels tandem's statement and not the application's transaction",
        spec_.name, st.lock_timeout.count(), deadlock, cut.count());
  }
  return cut;
}

void Executor::take_lock(Lane& lane) {
  Connection& conn = *lane.conn;
  const bool worker = lane.worker >= 0;
  if (worker && lane.held >= 0) {
    store_.release_range_lock(conn, lane.held);
    lane.held = -1;
  }
  if (worker && lane.range < 0) return;
  auto deadline = Clock::now() + options_.lock_wait;
  std::string holder;
  while (worker ? !store_.try_range_lock(conn, lane.range, holder)
                : !store_.try_lock(conn, holder)) {
    if (Clock::now() >= deadline) {
      throw LockHeldError("migration \"" + spec_.name + "\" is being run by another tandemd: " +
                          holder + ". Wait for it to finish or stop it, then run again.");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  lane.held = lane.range;
}

void Executor::release(Lane& lane, bool close) {
  lane.range = -1;
  if (!close && lane.conn && lane.conn->is_open()) {
    try {
      take_lock(lane);  // lets go of the range's lock and takes none
      return;
    } catch (const std::exception& e) {
      spdlog::debug("worker {}: closing its session: {}", lane.worker, e.what());
    }
  }
  lane.conn.reset();
  lane.held = -1;
  if (options_.control) options_.control->set_backend_pid(lane.worker + 1, 0);
}

void Executor::report(const std::function<void(ProgressSink&)>& f) {
  if (!options_.progress) return;
  std::lock_guard<std::mutex> l(progress_mu_);
  f(*options_.progress);
}

std::chrono::milliseconds Executor::backoff(Lane& lane, int attempt) {
  // Exponential, capped, with "equal jitter": half fixed, half random, so
  // retries spread out without ever collapsing to zero.
  double base = static_cast<double>(settings().retry_backoff.count());
  double cap = static_cast<double>(settings().retry_backoff_max.count());
  double d = std::min(cap, base * std::pow(2.0, std::min(attempt - 1, 30)));
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return std::chrono::milliseconds(static_cast<long long>(d * jitter(lane.rng)));
}

std::string Executor::step_status(const std::string& step_id) {
  for (const auto& s : store_.steps(*conn_)) {
    if (s.step_id == step_id) return s.status;
  }
  return "";
}

void Executor::with_retries(Lane& lane, const std::string& step_id, const std::string& what,
                            const std::function<void()>& work,
                            const std::function<bool()>& already_done) {
  const int budget = settings().retry_budget;
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
    } catch (const LockHeldError&) {
      throw;
    } catch (const StepFailedError&) {
      throw;
    } catch (const RollbackRefusedError&) {
      throw;
    } catch (const StoppedError&) {
      throw;
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::kBadInput) throw;
      if (stop_requested()) {
        // Most likely cancelled by abort; the work rolled back and is done
        // again on resume, like after a crash.
        spdlog::info("{}: stopped: {}", what, e.what());
        throw StoppedError(what + " stopped: " + e.what());
      }
      if (!ever_connected_ && e.sqlstate() == "08001") throw;  // never reached the server
      if (e.kind() == ErrorKind::kInDoubt) {
        spdlog::warn("{}: {}; re-reading the state store before going on", what, e.what());
        lane.conn.reset();
        check_done = true;
      } else if (!e.retryable() || attempt >= budget || outages >= budget) {
        fail(lane, step_id, what, e, attempt);
      } else if (lane.conn && lane.conn->is_open()) {
        store_.record_failure(*lane.conn, step_id, e, false, attempt);
      } else {
        lane.conn.reset();
      }
      if ((!lane.conn || !lane.conn->is_open()) && !lost && ever_connected_) {
        lost = true;
        ++outages;
      }
      report([&](ProgressSink& p) { p.retrying(e.sqlstate()); });
      auto pause = backoff(lane, attempt);
      spdlog::warn("{}: {}{}; attempt {}/{}, retrying in {}", what, e.what(), sqlstate_note(e),
                   attempt, budget, format_duration(pause));
      // A stop ends the wait: nothing is in flight while backing off.
      for (auto end = Clock::now() + pause; Clock::now() < end;) {
        if (stop_requested()) throw StoppedError(what + " stopped while waiting to retry");
        std::this_thread::sleep_for(std::min<Clock::duration>(end - Clock::now(), 50ms));
      }
    }
  }
}

// Closes the session, and with it the migration lock, when run() or
// rollback() returns: the lock is held for a call, not for the object's life.
class Executor::SessionScope {
 public:
  explicit SessionScope(Executor& e) : e_(e) {
    // The first connection, the state schema and the lock go through the
    // retry path like everything else; only a server that cannot be reached
    // at all fails at once.
    e_.with_retries(
        "", "connecting", [] {}, [] { return false; });
  }
  ~SessionScope() {
    for (auto& lane : e_.workers_) e_.release(*lane, true);
    e_.workers_.clear();
    e_.conn_.reset();
  }

 private:
  Executor& e_;
};

void Executor::record_state(const std::string& state, Phase phase, const std::string& event) {
  with_retries(
      "", "recording state " + state,
      [&] {
        Transaction tx(*conn_);
        store_.set_state(*conn_, state, phase);
        if (!event.empty()) store_.event(*conn_, event, phase, "", options_.actor);
        tx.commit();
      },
      [] { return false; });  // idempotent: doing it twice is harmless
}

void Executor::fail(Lane& lane, const std::string& step_id, const std::string& what, const Error& e,
                    int attempts) {
  const bool spent = e.retryable();
  if (lane.conn && lane.conn->is_open()) {
    store_.record_failure(*lane.conn, step_id, e, true, attempts);
  }
  std::string next =
      spent && e.sqlstate() == "55P03"
          ? "Next: find the session holding a conflicting lock (pg_locks joined with "
            "pg_stat_activity), end it or wait for it, then run the same command to resume; "
            "or run `tandemd rollback` to undo the migration."
          : "Next: the migration is parked as failed; fix the cause, then run the same "
            "command to resume, or run `tandemd rollback` to undo the migration.";
  throw StepFailedError(
      what + " failed: " + e.what() + sqlstate_note(e) +
          (spent ? " (retry budget of " + std::to_string(attempts) + " attempts spent)" : "") +
          ".\n" + next,
      e.sqlstate());
}

RunOutcome Executor::run() {
  try {
    return run_phases();
  } catch (const CriticalPauseError& e) {
    pause_reason_ = e.what();
    return RunOutcome::kPaused;
  } catch (const StoppedError&) {
    return RunOutcome::kStopped;
  }
}

RollbackOutcome Executor::rollback() {
  try {
    return rollback_steps();
  } catch (const StoppedError&) {
    return RollbackOutcome::kStopped;
  }
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

void Executor::check_before_start() {
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

bool Executor::spec_still_fits(const MigrationRecord& record, const std::string& hash) {
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

RunOutcome Executor::run_phases() {
  SessionScope session(*this);
  std::optional<MigrationRecord> record;
  std::map<std::string, std::string> status;
  bool already_completed = false;
  // Everything here is idempotent, so after any retryable error or an
  // in-doubt commit it simply runs again from the top.
  with_retries(
      "", "starting migration " + spec_.name,
      [&] {
        record = store_.load(*conn_);
        const std::string hash = StateStore::hash_of(*conn_, spec_.text);
        if (record && record->state != "rolled_back") {
          if (!spec_still_fits(*record, hash)) {
            throw Error(ErrorKind::kBadInput,
                        "the operations of migration \"" + spec_.name +
                            "\" have changed since it started (state " + record->state +
                            "); restore the file it started with, or roll the migration back "
                            "before changing them (settings may change at any time)");
          }
          if (record->state == "completed") {
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
                       {{"state", record->state}});
        } else {
          // A refusal changes nothing, so it must record nothing either.
          check_before_start();
          store_.start(*conn_, spec_.text, plan_, options_.actor);
          record = store_.load(*conn_);
        }
        for (const auto& p : phase_table()) {
          bool given = options_.approve_all || options_.approve.count(p.phase);
          if (given && needs_approval(p.phase) && !record->approved.count(p.phase)) {
            store_.approve(*conn_, p.phase, options_.actor);
            record->approved.insert(p.phase);
          }
        }
        status.clear();
        for (const auto& st : store_.steps(*conn_)) status[st.step_id] = st.status;
      },
      [] { return false; });
  if (already_completed) return RunOutcome::kAlreadyCompleted;

  for (const auto& p : phase_table()) {
    auto steps = plan_.steps_in(p.phase);
    bool done = true;
    for (const Step* s : steps) done = done && status[s->id] == "done";
    if (done) continue;
    if (options_.until && static_cast<int>(p.phase) > static_cast<int>(*options_.until)) {
      record_state("paused", p.phase, "");
      return RunOutcome::kReachedUntil;
    }
    if (needs_approval(p.phase) && !record->approved.count(p.phase)) {
      waiting_phase_ = p.phase;
      record_state("waiting_approval", p.phase, "waiting_approval");
      return RunOutcome::kWaitingApproval;
    }
    record_state("running", p.phase, "phase_started");
    if (options_.progress) options_.progress->phase_started(p.phase);
    for (const Step* s : steps) {
      if (status[s->id] == "done") continue;
      if (stop_requested()) {
        record_state("paused", p.phase, "");
        return RunOutcome::kStopped;
      }
      auto t0 = Clock::now();
      if (options_.progress) options_.progress->step_started(*s);
      if (s->kind == StepKind::kBackfill || s->kind == StepKind::kVerify) {
        if (!run_keyset_step(*s)) {
          record_state("paused", p.phase, "");
          return RunOutcome::kStopped;
        }
      } else {
        run_step(*s);
      }
      if (options_.progress) options_.progress->step_finished(*s, seconds_since(t0));
    }
  }
  record_state("completed", Phase::kCleanup, "completed");
  return RunOutcome::kCompleted;
}

void Executor::run_step(const Step& step) {
  if (step.kind == StepKind::kPrecheck) {
    run_precheck(step);
  } else {
    run_sql_step(step);
  }
}

void Executor::run_precheck(const Step& step) {
  with_retries(
      step.id, "step " + step.id,
      [&] {
        Transaction tx(*conn_);
        const Settings st = settings();
        tx.set_timeouts(lock_wait(st), st.statement_timeout);
        Rows problems = tx.exec(step.sql);
        if (!problems.empty()) {
          std::vector<std::string> reasons;
          for (size_t i = 0; i < problems.size(); ++i) reasons.push_back(problems.text(i, 0));
          throw Error(ErrorKind::kFatal, "refused: " + join(reasons, "; "));
        }
        store_.mark_step(*conn_, step.id, "done");
        store_.event(*conn_, "step_done", step.phase, step.id, options_.actor);
        tx.commit();
      },
      [&] { return step_status(step.id) == "done"; });
}

void Executor::run_sql_step(const Step& step) {
  const Settings st = settings();
  if (step.transactional) {
    with_retries(
        step.id, "step " + step.id,
        [&] {
          yield_to_autovacuum(step);
          Transaction tx(*conn_);
          tx.set_timeouts(lock_wait(st), st.statement_timeout);
          take_locks_first(tx, step.locks, lock_wait(st));
          tx.exec(step.sql);
          store_.mark_step(*conn_, step.id, "done");
          store_.event(*conn_, "step_done", step.phase, step.id, options_.actor);
          tx.commit();
        },
        [&] { return step_status(step.id) == "done"; });
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
            store_.mark_step(*conn_, step.id, "done");
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
        store_.mark_step(*conn_, step.id, "running");
        yield_to_autovacuum(step);
        with_session_timeouts([&] { conn_->exec(step.sql); });
        Transaction tx(*conn_);
        store_.mark_step(*conn_, step.id, "done");
        store_.event(*conn_, "step_done", step.phase, step.id, options_.actor);
        tx.commit();
      },
      [&] { return step_status(step.id) == "done"; });
}

void Executor::with_session_timeouts(const std::function<void()>& work) {
  // Statements that cannot run in a transaction cannot use SET LOCAL; the
  // session settings are put back whatever happens.
  const Settings st = settings();
  conn_->exec("SET lock_timeout = '" + std::to_string(lock_wait(st).count()) +
              "ms'; SET statement_timeout = '" + std::to_string(st.statement_timeout.count()) +
              "ms'");
  try {
    work();
  } catch (const Error&) {
    if (conn_->is_open()) conn_->exec(kSessionLimitsSql);
    throw;
  }
  conn_->exec(kSessionLimitsSql);
}

ThrottleVerdict Executor::throttle_verdict(const Settings& st) {
  if (options_.control && options_.control->manually_throttled()) {
    return {"manual", "throttled by an operator", false};
  }
  // The migration's own sessions (its workers) are not load to back off from.
  ThrottleReadings r =
      read_throttle_signals(*conn_, st, application_name() + " ", migrated_tables_);
  if (r.wal_lsn) {
    const WalRate::Reading w = wal_rate_.observe(*r.wal_lsn, st.throttle_wal_rate_mb * 1048576.0);
    r.wal_bytes_per_second = w.bytes_per_second;
    r.wal_bytes_ahead = w.bytes_ahead;
  }
  r.commit_quick_owed = commit_hold_.observe(r.commit_seconds, st.throttle_commit_latency);
  return decide_throttle(st, r);
}

ThrottleVerdict Executor::poll_throttle(std::string& last, Clock::time_point& since) {
  ThrottleVerdict v;
  try {
    if (!conn_ || !conn_->is_open()) connect(main_);
    v = throttle_verdict(settings());
  } catch (const LockHeldError&) {
    throw;
  } catch (const Error& e) {
    // The batches' own retries deal with a lost connection.
    spdlog::warn("cannot read the throttle signals: {}", e.what());
  }
  if (v.critical) {
    if (!last.empty()) report([&](ProgressSink& p) { p.throttling("", seconds_since(since)); });
    spdlog::error(
        "ALERT: migration {} paused: {}. No work is lost; resume it when the cause "
        "is gone (tandemctl resume {}, or run the same command again)",
        spec_.name, v.detail, spec_.name);
    try {
      store_.event(*conn_, "critical_pause", std::nullopt, "", options_.actor,
                   {{"reason", v.reason}, {"detail", v.detail}});
    } catch (const Error& e) {
      spdlog::warn("cannot record the pause in the event log: {}", e.what());
    }
    throw CriticalPauseError(v.detail);
  }
  if (!v.reason.empty() || !last.empty()) {
    const double held = last.empty() ? 0 : seconds_since(since);
    report([&](ProgressSink& p) { p.throttling(v.reason, held); });
  }
  since = Clock::now();
  if (v.reason != last) {
    // A WAL rate cap or a commit latency limit holds and lets go every
    // second or so: the first hold of each is said at info level, the rest
    // at debug (status and metrics show them all).
    const std::string& paced = v.reason.empty() ? last : v.reason;
    const unsigned bit = paced == "wal_rate" ? 1u : paced == "commit_latency" ? 2u : 0u;
    const auto level =
        (pacing_said_.fetch_or(bit) & bit) != 0 ? spdlog::level::debug : spdlog::level::info;
    if (!v.reason.empty()) {
      spdlog::log(level, "{}: throttled: {}{}", spec_.name, v.detail,
                  level == spdlog::level::info && bit != 0
                      ? "; further holds for this reason are logged at debug level"
                      : "");
    }
    if (v.reason.empty()) spdlog::log(level, "{}: throttle lifted", spec_.name);
    last = v.reason;
  }
  return v;
}

bool Executor::wait_while_throttled() {
  std::string last;
  auto since = Clock::now();
  for (;;) {
    if (poll_throttle(last, since).reason.empty()) return true;
    for (int i = 0; i < 5; ++i) {
      if (stop_requested()) {
        report([&](ProgressSink& p) { p.throttling("", seconds_since(since)); });
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

void Executor::yield_to_autovacuum(const Step& step) {
  if (!step.lock.conflicts_with_vacuum()) return;
  if (migrated_tables_.empty()) return;
  // Autovacuum workers holding VACUUM's lock on one of the tables; and any
  // session holding it that this role may not see (backend_type hidden):
  // most likely an autovacuum too (or another role's VACUUM, ANALYZE or
  // index build), which it may not cancel either.
  const std::string sql =
      "SELECT DISTINCT l.pid, n.nspname || '.' || c.relname,"
      " coalesce(a.query LIKE '%(to prevent wraparound)%', false), a.backend_type IS NULL,"
      " v.phase, v.heap_blks_scanned, v.heap_blks_total"
      " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
      " LEFT JOIN pg_stat_progress_vacuum v ON v.pid = l.pid"
      " JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace"
      " WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'ShareUpdateExclusiveLock'"
      " AND l.pid IS NOT NULL AND l.pid <> pg_backend_pid()"
      " AND (a.backend_type = 'autovacuum worker' OR a.backend_type IS NULL)"
      " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
      " AND n.nspname || '.' || c.relname IN (" +
      quote_literals(migrated_tables_) + ") ORDER BY 1";
  std::string waiting_for;  // what the last wait was for, once logged
  const auto since = Clock::now();
  auto last_said = since;
  VacuumPace pace;
  for (;;) {
    Rows r = conn_->exec(sql);
    std::string wait;
    std::string progress;  // of the vacuum waited for, when this role may read it
    for (size_t i = 0; i < r.size(); ++i) {
      const std::string pid = r.text(i, 0), table = r.text(i, 1);
      std::string why;
      if (r.text(i, 3) == "t") {
        wait = "a session that tandemd's role may not see (pid " + pid + ") holding " + table +
               " in SHARE UPDATE EXCLUSIVE mode: most likely its autovacuum, which this role " +
               "may not cancel (superuser, or pg_signal_autovacuum_worker on PostgreSQL 18)";
        progress.clear();
        continue;
      }
      if (r.text(i, 2) == "t") {
        why = "it runs to prevent transaction ID wraparound and must not be cancelled";
      } else {
        try {
          if (conn_->exec("SELECT pg_cancel_backend(" + pid + ")").text(0, 0) == "t") {
            spdlog::warn(
                "step {}: cancelled the autovacuum of {} (pid {}): it held a lock the step "
                "needs. PostgreSQL cancels it the same way for any lock request that waits "
                "deadlock_timeout; it runs again later",
                step.id, table, pid);
            store_.event(*conn_, "autovacuum_cancelled", step.phase, step.id, options_.actor,
                         {{"pid", std::stoll(pid)}, {"table", table}});
            continue;
          }
          why = "it could not be signalled";
        } catch (const Error& e) {
          if (e.sqlstate() != "42501") throw;
          why =
              "tandemd's role may not cancel it (superuser, or pg_signal_autovacuum_worker "
              "on PostgreSQL 18)";
        }
      }
      wait = "the autovacuum of " + table + " (pid " + pid + "): " + why;
      progress = r.is_null(i, 4) ? ""
                                 : pace.describe(std::stoll(pid), r.text(i, 4), r.integer(i, 5),
                                                 r.integer(i, 6));
    }
    if (wait.empty()) break;
    if (wait != waiting_for) {
      spdlog::warn(
          "step {}: waiting for {}{}. The step does not queue its lock meanwhile, so the "
          "application is not held up behind it",
          step.id, wait, progress.empty() ? "" : "; " + progress);
      waiting_for = wait;
      last_said = Clock::now();
      report([&](ProgressSink& p) { p.throttling("autovacuum", 0); });
    } else if (Clock::now() - last_said >= kAutovacuumReportEvery) {
      // A vacuum to prevent wraparound may take hours: say how it goes.
      spdlog::warn("step {}: still waiting, for {} now, for {}{}", step.id,
                   format_duration(
                       std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since)),
                   wait, progress.empty() ? "" : "; " + progress);
      last_said = Clock::now();
    }
    for (int i = 0; i < 20; ++i) {
      if (stop_requested()) throw StoppedError("step " + step.id + " stopped");
      std::this_thread::sleep_for(50ms);
    }
  }
  if (!waiting_for.empty()) {
    report([&](ProgressSink& p) { p.throttling("", seconds_since(since)); });
    spdlog::info("step {}: the autovacuum is over; going on", step.id);
  }
}

struct Executor::StepTally {
  long long rows_done = 0;
  std::optional<long long> rows_total;
  long long mismatches = 0;
  RateMeter meter;
  std::optional<Clock::time_point> last_commit;  // of any range's batch
  int ranges = 1;
  int ranges_finished = 0;
  int workers = 0;  // running batches now
};

bool Executor::run_keyset_step(const Step& step) {
  const BatchWork& work = *step.batch;
  const bool verify = step.kind == StepKind::kVerify;
  std::vector<std::string> key;
  std::vector<Partition> ranges;
  StepTally tally;
  with_retries(
      step.id, "step " + step.id,
      [&] {
        key = walk_key_columns(*conn_, work.table);
        // A verification that failed starts over: its earlier verdict is void.
        if (verify && step_status(step.id) == "failed") store_.clear_checkpoint(*conn_, step.id);
        store_.mark_step(*conn_, step.id, "running");
        ranges = store_.partitions(*conn_, step.id);
        if (ranges.empty()) {
          // The ranges are fixed when the step starts, so a resumed step
          // goes on over the same ranges whatever backfill_workers says now.
          // No range is smaller than a batch.
          const Settings st = settings();
          const TableSize size = table_size(*conn_, work.table);
          const long long rows = size.rows;
          if (!verify && work.statement.empty()) {
            const RewriteEstimate e = estimate_rewrite(size);
            spdlog::info(
                "step {}: about {} rows; expect about {} of WAL, and {} and its indexes to grow"
                " by about {} (estimates, which `tandemd plan --dsn` prints beforehand)",
                step.id, with_commas(rows), format_bytes(e.wal_bytes), work.table,
                format_bytes(e.growth_bytes));
          }
          const long long worth = rows / std::max(1, rows_per_batch(st.batch_size, verify, st));
          const long long most =
              std::max<long long>(kMinRanges, 1LL * kRangesPerWorker * st.backfill_workers);
          const int count = static_cast<int>(std::clamp<long long>(worth, 1, most));
          const auto bounds = KeysetWalker(work.table, key).split_points(*conn_, rows, count);
          Transaction tx(*conn_);
          store_.init_partitions(*conn_, step.id, rows, bounds);
          tx.commit();
          ranges = store_.partitions(*conn_, step.id);
        }
        tally.rows_total.reset();
        if (auto cp = store_.checkpoint(*conn_, step.id)) tally.rows_total = cp->rows_total;
      },
      [] { return false; });
  KeysetWalker walker(work.table, key);
  for (;;) {
    std::vector<Partition*> pending;
    {
      std::lock_guard<std::mutex> l(progress_mu_);
      tally.ranges = static_cast<int>(ranges.size());
      tally.rows_done = tally.mismatches = 0;
      tally.ranges_finished = 0;
      for (auto& r : ranges) {
        tally.rows_done += r.rows_done;
        tally.mismatches += r.mismatches;
        if (r.finished) ++tally.ranges_finished;
        if (!r.finished) pending.push_back(&r);
      }
    }
    // A step cut into ranges runs them on worker sessions, which take the
    // ranges' locks; one of a single range (a small table, or a checkpoint of
    // state schema 4) runs on this session, under the migration's lock.
    if (ranges.size() > 1 && !pending.empty()) {
      if (!run_ranges_in_parallel(step, walker, pending, tally)) return false;
    } else if (pending.size() == 1) {
      BatchSizer sizer(settings());
      if (!run_range(main_, step, walker, *pending[0], tally, sizer, false,
                     [&] { return wait_while_throttled(); }))
        return false;
    }
    if (tally.mismatches > 0) {
      // The checkpoints hold the sample keys of every chunk, including chunks
      // verified by an earlier, interrupted run.
      std::string sample = store_.checkpoint(*conn_, step.id)->sample;
      fail(main_, step.id, "step " + step.id,
           Error(ErrorKind::kFatal,
                 std::to_string(tally.mismatches) +
                     " rows differ between old and new storage (first keys: " + sample + ")"),
           1);
    }
    // Done only when the server holds every range as finished, read in the
    // transaction that says so: a batch commit it acknowledged can still be
    // lost in a crash or a failover (batches commit with synchronous_commit
    // off), and the range it finished is then to do again. This commit,
    // synchronous, makes every earlier one durable.
    std::vector<int> unfinished;
    with_retries(
        step.id, "step " + step.id,
        [&] {
          Transaction tx(*conn_);
          ranges = store_.partitions(*conn_, step.id);
          unfinished.clear();
          for (const auto& r : ranges) {
            if (!r.finished) unfinished.push_back(r.worker);
          }
          if (!unfinished.empty()) return;
          store_.mark_step(*conn_, step.id, "done");
          long long rows = 0;
          for (const auto& r : ranges) rows += r.rows_done;
          store_.event(*conn_, "step_done", step.phase, step.id, options_.actor, {{"rows", rows}});
          tx.commit();
        },
        [&] { return step_status(step.id) == "done"; });
    if (unfinished.empty()) return true;
    std::vector<std::string> names;
    for (int w : unfinished) names.push_back(std::to_string(w));
    spdlog::warn(
        "step {}: the server does not hold range(s) {} as finished (a batch commit lost in a "
        "crash or a failover); going on from their checkpoints",
        step.id, join(names, ", "));
  }
}

bool Executor::run_range(Lane& lane, const Step& step, const KeysetWalker& walker, Partition& range,
                         StepTally& tally, BatchSizer& sizer, bool reread,
                         const std::function<bool()>& may_go) {
  const BatchWork& work = *step.batch;
  const bool verify = step.kind == StepKind::kVerify;
  const std::string what = "batch of step " + step.id +
                           (lane.worker >= 0 ? " (range " + std::to_string(range.worker) +
                                                   ", worker " + std::to_string(lane.worker) + ")"
                                             : "");
  // `range` mirrors the committed checkpoint. It is read again when an
  // attempt did not finish (after a failure, or a commit whose outcome is
  // unknown, only the database knows where the range stands) and, with
  // `reread`, once its lock is held: a worker of an earlier tandemd may have
  // committed a batch since the step read it.
  bool current = !reread;
  double batch_seconds = 0;  // the last batch's, when it committed
  double rested = 0;         // the rest after it, counted in the next batch's rate
  while (!range.finished) {
    if (stop_requested() || !may_go()) return false;
    const Settings st = settings();
    const int batch_size = rows_per_batch(sizer.size(st), verify, st);
    with_retries(
        lane, step.id, what,
        [&] {
          Connection& c = *lane.conn;
          if (!current) {
            bool found = false;
            for (const auto& stored : store_.partitions(c, step.id)) {
              if (stored.worker != range.worker) continue;
              found = true;
              std::lock_guard<std::mutex> l(progress_mu_);
              tally.rows_done += stored.rows_done - range.rows_done;
              tally.mismatches += stored.mismatches - range.mismatches;
              if (stored.finished && !range.finished) ++tally.ranges_finished;
              range = stored;
            }
            if (!found) {
              throw StateStore::state_not_held("range " + std::to_string(range.worker) +
                                               " of step " + step.id + " has no checkpoint");
            }
            if (range.finished) return;
          }
          current = false;
          const auto t0 = Clock::now();
          Transaction tx(c);
          tx.set_timeouts(lock_wait(st), st.statement_timeout);
          // A batch and its checkpoint commit together, so a commit the server
          // loses in a crash loses both and the batch runs again: there is no
          // need to wait for the WAL flush.
          c.exec("SET LOCAL synchronous_commit = off");
          const auto& from = range.last_key.empty() ? range.after : range.last_key;
          KeyRange batch{from, walker.upper_bound(c, {from, range.upper}, batch_size)};
          const bool last = batch.upper.empty();
          if (last) batch.upper = range.upper;
          long long rows;
          KeysetWalker::VerifyResult v;
          if (verify) {
            v = walker.verify(c, work, batch);
            rows = v.rows;
          } else {
            rows = walker.backfill(c, work, batch);
          }
          const std::vector<std::string> reached = last ? from : batch.upper;
          store_.save_checkpoint(c, step.id, range.worker, range.last_key, reached, rows,
                                 v.mismatches, v.sample, last);
          tx.commit();
          range.last_key = reached;
          range.rows_done += rows;
          range.mismatches += v.mismatches;
          range.finished = last;
          current = true;
          const auto now = Clock::now();
          const double seconds = seconds_since(t0);
          batch_seconds = seconds;
          if (!last) sizer.observe(batch_size, seconds, st);
          std::lock_guard<std::mutex> l(progress_mu_);
          // The rate counts wall time between commits of any range (with
          // several workers, rows arrive that much faster), from the start
          // of this batch's rest at most: a throttle's wait is not work.
          auto began = t0 - std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(rested));
          if (tally.last_commit && *tally.last_commit > began) began = *tally.last_commit;
          tally.meter.add(rows, std::chrono::duration<double>(now - began).count());
          tally.last_commit = now;
          rested = 0;
          tally.rows_done += rows;
          tally.mismatches += v.mismatches;
          if (last) ++tally.ranges_finished;
          if (options_.progress) {
            options_.progress->batch_done(step, batch_size, rows, seconds, v.mismatches);
            ProgressUpdate u{
                &step, tally.rows_done, tally.rows_total, tally.meter.rows_per_second(), {}};
            u.ranges = tally.ranges;
            u.ranges_finished = tally.ranges_finished;
            u.workers = std::max(1, tally.workers);
            if (tally.rows_total) {
              u.eta_seconds = tally.meter.eta_seconds(*tally.rows_total - tally.rows_done);
            }
            options_.progress->progress(u);
          }
        },
        [] { return false; });  // the next attempt reads the checkpoint again
    // Rest a share of the batch's time: the application has the database to
    // itself meanwhile. The rate counts it, so the ETA stays honest.
    const double rest = range.finished ? 0 : batch_seconds * st.batch_rest_percent / 100.0;
    batch_seconds = 0;
    if (rest > 0) {
      const auto t0 = Clock::now();
      const auto end =
          t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(rest));
      while (Clock::now() < end) {
        if (stop_requested()) return false;
        std::this_thread::sleep_for(std::min<Clock::duration>(end - Clock::now(), 50ms));
      }
      rested = seconds_since(t0);
    }
  }
  return true;
}

std::optional<Partition> Executor::split_range(Lane& lane, const Step& step,
                                               const KeysetWalker& walker, Partition& range,
                                               int batch_rows) {
  std::optional<Partition> piece;
  with_retries(
      lane, step.id, "splitting range " + std::to_string(range.worker) + " of step " + step.id,
      [&] {
        piece.reset();
        Connection& c = *lane.conn;
        const Settings st = settings();
        Transaction tx(c);
        tx.set_timeouts(lock_wait(st), st.statement_timeout);
        // Only this worker, under the range's lock, splits the range; the
        // checkpoints are read as committed, since an attempt whose commit
        // was in doubt may have split it already.
        const auto stored = store_.partitions(c, step.id);
        const Partition* own = nullptr;
        int next = 0;
        for (const auto& p : stored) {
          next = std::max(next, p.worker + 1);
          if (p.worker == range.worker) own = &p;
        }
        if (!own || own->finished) return;
        if (own->upper != range.upper) {
          for (const auto& p : stored) {
            if (p.worker != range.worker && p.after == own->upper && p.upper == range.upper)
              piece = p;
          }
          range.upper = own->upper;
          return;
        }
        const auto& from = own->last_key.empty() ? own->after : own->last_key;
        const long long left = walker.count(c, {from, own->upper});
        if (left < 1LL * kSplitLeast * batch_rows) return;
        auto at = walker.upper_bound(c, {from, own->upper}, static_cast<int>(left / 2));
        if (at.empty()) return;
        store_.split_partition(c, step.id, range.worker, at, next);
        tx.commit();
        piece.emplace();
        piece->worker = next;
        piece->after = at;
        piece->upper = own->upper;
        range.upper = std::move(at);
      },
      [] { return false; });  // the next attempt reads the checkpoints again
  return piece;
}

bool Executor::run_ranges_in_parallel(const Step& step, const KeysetWalker& walker,
                                      const std::vector<Partition*>& ranges, StepTally& tally) {
  spdlog::info("step {}: {} key ranges to go, up to backfill_workers ({}) at a time", step.id,
               ranges.size(), settings().backfill_workers);
  // The ranges no worker has, in key order: a retired worker's unfinished
  // range goes back to the front.
  std::deque<Partition*> queue(ranges.begin(), ranges.end());
  std::deque<Partition> split_off;  // ranges cut off others while the step runs
  // How many workers could start if there were a range for them: as many
  // running workers split their range, each taking one.
  std::atomic<int> splits_wanted{0};
  std::mutex split_mu;
  const bool verify = step.kind == StepKind::kVerify;
  std::atomic<bool> hold{false};
  std::atomic<bool> stopped{false};
  std::mutex error_mu;
  std::exception_ptr error;
  bool error_is_stop = false;
  // Guards queue, busy and active. Worker i works on lanes[i] (its
  // application_name says "worker i"); busy[i] while its thread runs.
  std::mutex mu;
  std::condition_variable worker_ended;  // wakes this thread at once
  std::vector<std::unique_ptr<Lane>>& lanes = workers_;
  std::vector<bool> busy(lanes.size(), false);
  int active = 0;  // workers not retiring
  std::vector<std::thread> threads;
  auto set_workers = [&](int n) {
    std::lock_guard<std::mutex> l(progress_mu_);
    tally.workers = n;
  };
  // The first error wins, but a real failure beats a sibling's stop.
  auto record_error = [&](bool is_stop) {
    std::lock_guard<std::mutex> l(error_mu);
    if (!error || (error_is_stop && !is_stop)) {
      error = std::current_exception();
      error_is_stop = is_stop;
    }
    halt_workers_ = true;
  };
  // Takes the next range off the queue; nullptr when none is left.
  auto next_range = [&]() -> Partition* {
    std::lock_guard<std::mutex> l(mu);
    if (queue.empty()) return nullptr;
    Partition* r = queue.front();
    queue.pop_front();
    return r;
  };
  // Takes one of the splits wanted, if any is left.
  auto claim_split = [&] {
    for (int n = splits_wanted.load(); n > 0;) {
      if (splits_wanted.compare_exchange_weak(n, n - 1)) return true;
    }
    return false;
  };
  // A worker starts with the range it was started for, then takes the next.
  auto worker = [&](Lane& lane, Partition* range) {
    BatchSizer sizer(settings());
    bool retired = false;
    bool too_short = false;  // to split, the range it works on
    // Before each batch: waits while the throttle holds the step back;
    // retires this worker when more run than backfill_workers allows; cuts
    // its range in two when a worker could start but has no range to take.
    auto may_go = [&] {
      for (; !stop_requested(); std::this_thread::sleep_for(50ms)) {
        {
          std::lock_guard<std::mutex> l(mu);
          const int allowed = settings().backfill_workers;
          if (active > allowed) {
            --active;
            retired = true;
            spdlog::info("step {}: worker {} stops after its batch: backfill_workers is {}",
                         step.id, lane.worker, allowed);
            return false;
          }
        }
        if (hold.load()) continue;
        if (!too_short && claim_split()) {
          const int batch_rows = rows_per_batch(sizer.size(settings()), verify, settings());
          // One split at a time: each numbers its new range after the others.
          std::unique_lock<std::mutex> one(split_mu);
          if (auto piece = split_range(lane, step, walker, *range, batch_rows)) {
            one.unlock();
            spdlog::info(
                "step {}: range {} cut in two for a worker without one: range {} takes "
                "the keys after {}",
                step.id, range->worker, piece->worker, "(" + join(piece->after, ",") + ")");
            {
              std::lock_guard<std::mutex> l(progress_mu_);
              ++tally.ranges;
            }
            std::lock_guard<std::mutex> l(mu);
            split_off.push_back(std::move(*piece));
            queue.push_front(&split_off.back());
          } else {
            // Too little left to share: another worker may split instead,
            // and this one asks no more until it takes another range.
            too_short = true;
            ++splits_wanted;
          }
        }
        return true;
      }
      return false;
    };
    try {
      for (; range; range = next_range()) {
        lane.range = range->worker;  // its lock is taken before the first batch
        too_short = false;
        spdlog::debug("step {}: worker {} takes range {}", step.id, lane.worker, range->worker);
        if (!run_range(lane, step, walker, *range, tally, sizer, true, may_go)) {
          if (!range->finished) {
            std::lock_guard<std::mutex> l(mu);
            queue.push_front(range);
          }
          if (!retired) stopped = true;
          break;
        }
      }
      // Out of ranges: the session waits for the next step's.
      release(lane, retired || stopped.load());
    } catch (const StoppedError&) {
      record_error(true);
      release(lane, true);
    } catch (...) {
      record_error(false);
      release(lane, true);
    }
    std::lock_guard<std::mutex> l(mu);
    if (!retired) --active;
    busy[lane.worker] = false;
    worker_ended.notify_all();
  };
  // Starts workers up to backfill_workers while ranges are waiting. Returns
  // how many are busy (retiring ones included).
  auto staff = [&] {
    std::lock_guard<std::mutex> l(mu);
    const int allowed = settings().backfill_workers;
    while (!stop_requested() && !hold.load() && active < allowed && !queue.empty()) {
      size_t i = 0;
      while (i < busy.size() && busy[i]) ++i;
      if (i == busy.size()) {
        busy.push_back(false);
        lanes.push_back(std::make_unique<Lane>());
        lanes.back()->worker = static_cast<int>(i);
      }
      busy[i] = true;
      ++active;
      if (!threads.empty()) spdlog::info("step {}: worker {} starts", step.id, i);
      Lane& lane = *lanes[i];
      Partition* range = queue.front();
      queue.pop_front();
      threads.emplace_back([&worker, &lane, range] { worker(lane, range); });
    }
    return static_cast<int>(std::count(busy.begin(), busy.end(), true));
  };
  halt_workers_ = false;
  // This thread watches the throttle for all of them (five readings a
  // second, not one per batch and worker) and starts workers as needed.
  std::exception_ptr watch_error;
  try {
    std::string last;
    auto since = Clock::now();
    auto next_reading = Clock::now();
    for (;;) {
      if (Clock::now() >= next_reading) {
        hold = !poll_throttle(last, since).reason.empty();
        next_reading = Clock::now() + kThrottleReadEvery;
      }
      const int running = staff();
      set_workers(running);
      std::unique_lock<std::mutex> l(mu);
      if (running == 0 && (queue.empty() || stop_requested())) break;
      splits_wanted = queue.empty() && !hold.load() && !stop_requested()
                          ? std::max(0, settings().backfill_workers - active)
                          : 0;
      // Until a worker ends, or a changed backfill_workers may need more.
      worker_ended.wait_for(l, 50ms);
    }
    if (!last.empty()) report([&](ProgressSink& p) { p.throttling("", seconds_since(since)); });
  } catch (...) {
    watch_error = std::current_exception();
    halt_workers_ = true;
    hold = false;
  }
  for (auto& t : threads) t.join();
  set_workers(0);
  halt_workers_ = false;
  if (watch_error) std::rethrow_exception(watch_error);
  if (error) std::rethrow_exception(error);
  return !stopped.load() && queue.empty();
}

RollbackOutcome Executor::rollback_steps() {
  SessionScope session(*this);
  std::optional<MigrationRecord> record;
  std::map<std::string, std::string> status;
  with_retries(
      "", "reading migration " + spec_.name,
      [&] {
        record = store_.load(*conn_);
        if (!record || record->state == "rolled_back") return;
        if (!spec_still_fits(*record, StateStore::hash_of(*conn_, spec_.text))) {
          throw Error(ErrorKind::kBadInput,
                      "the operations of migration \"" + spec_.name +
                          "\" have changed since it started; roll back with the file it started "
                          "with");
        }
        status.clear();
        for (const auto& r : store_.steps(*conn_)) status[r.step_id] = r.status;
      },
      [] { return false; });
  if (!record || record->state == "rolled_back") return RollbackOutcome::kNothingToDo;
  for (const auto& s : plan_.steps) {
    const std::string& st = status[s.id];
    bool ran = st == "done" || ((st == "running" || st == "failed") && !s.transactional);
    if (!s.reversible && ran) {
      throw RollbackRefusedError(
          "cannot roll back migration \"" + spec_.name + "\": step " + s.id + " (" +
          phase_name(s.phase) + ": " + s.description +
          ") has run and cannot be undone. The migration can only go forward: run it again "
          "with --approve " +
          phase_name(s.phase) + " to finish it.");
    }
  }
  record_state("rolling_back", record->phase, "rollback_started");
  for (auto it = plan_.steps.rbegin(); it != plan_.steps.rend(); ++it) {
    const Step& s = *it;
    const std::string& st = status[s.id];
    bool partial =
        (st == "running" || st == "failed") &&
        (!s.transactional || s.kind == StepKind::kBackfill || s.kind == StepKind::kVerify);
    if (st != "done" && !partial) continue;
    if (stop_requested()) return RollbackOutcome::kStopped;
    rollback_step(s);
  }
  with_retries(
      "", "recording the rollback",
      [&] {
        Transaction tx(*conn_);
        conn_->exec(
            "UPDATE tandem.steps SET status = 'pending', attempts = 0 WHERE migration = $1"
            " AND status IN ('running', 'failed')",
            {spec_.name});
        store_.set_state(*conn_, "rolled_back", Phase::kPrepare);
        store_.event(*conn_, "rolled_back", std::nullopt, "", options_.actor);
        tx.commit();
      },
      [] { return false; });
  return RollbackOutcome::kRolledBack;
}

void Executor::rollback_step(const Step& step) {
  const Settings st = settings();
  if (options_.progress) spdlog::info("rolling back step {}: {}", step.id, step.description);
  const std::string sql = step.rollback_sql.value_or("");
  with_retries(
      step.id, "rollback of step " + step.id,
      [&] {
        if (!sql.empty()) yield_to_autovacuum(step);
        if (!step.transactional && !sql.empty()) {
          with_session_timeouts([&] { conn_->exec(sql); });
        }
        Transaction tx(*conn_);
        tx.set_timeouts(lock_wait(st), st.statement_timeout);
        if (step.transactional && !sql.empty()) {
          take_locks_first(tx, step.rollback_locks, lock_wait(st));
          tx.exec(sql);
        }
        store_.clear_checkpoint(*conn_, step.id);
        store_.mark_step(*conn_, step.id, "rolled_back");
        store_.event(*conn_, "step_rolled_back", step.phase, step.id, options_.actor);
        tx.commit();
      },
      [&] { return step_status(step.id) == "rolled_back"; });
  if (options_.progress) options_.progress->step_rolled_back(step);
}

}  // namespace tandem
