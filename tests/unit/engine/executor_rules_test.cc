// The executor's rules, run against a fake store, fake sessions and a fake
// clock (tests/support/fake_store.h): which phases run and when a run stops,
// resume from each state, approvals and gates, rollback and its refusal,
// retries and their backoff, in-doubt commits, lost sessions, the lock held
// by another runner, changed specs and refused prechecks. No PostgreSQL:
// the same rules against a real server are in tests/integration/executor_*.
#include <gtest/gtest.h>

#include <atomic>

#include "engine/executor.h"
#include "support/fake_store.h"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;

const std::string kSpec =
    four_step_spec("  retry_budget: 3\n  retry_backoff: 100ms\n  retry_backoff_max: 400ms\n");

class ExecutorRules : public ::testing::Test {
 protected:
  void SetUp() override { load(kSpec); }
  void load(const std::string& text) {
    auto parsed = parse_spec(text, "rules.yaml");
    ASSERT_TRUE(parsed.spec) << (parsed.errors.empty() ? "" : parsed.errors[0].to_string());
    spec_ = std::make_unique<Spec>(*parsed.spec);
    plan_ = std::make_unique<Plan>(make_plan(*spec_));
  }
  RunOptions options(std::set<Phase> approve = {}) {
    RunOptions o = db_.options();
    o.approve = std::move(approve);
    return o;
  }
  RunOptions until(Phase p) {
    RunOptions o = options();
    o.until = p;
    return o;
  }
  RunOutcome run(RunOptions o) {
    Executor ex(*spec_, *plan_, std::move(o));
    return ex.run();
  }
  RollbackOutcome rollback() {
    Executor ex(*spec_, *plan_, options());
    return ex.rollback();
  }
  // The error a run (or rollback) ends with; a failure when it ends without one.
  Error error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e;
    }
    ADD_FAILURE() << "ended without an error";
    return Error(ErrorKind::kFatal, "(none)");
  }
  Error run_error(RunOptions o) {
    return error_of([&] { run(std::move(o)); });
  }
  static bool says(const Error& e, const std::string& text) {
    return std::string(e.what()).find(text) != std::string::npos;
  }
  // The plan's step SQL (`up`) and rollback SQL (`down`) for step i.
  std::string up(int i) const { return plan_->steps.at(i).sql; }
  std::string down(int i) const { return plan_->steps.at(i).rollback_sql.value_or(""); }
  std::string id(int i) const { return plan_->steps.at(i).id; }
  std::vector<std::string> ups_sent() const { return db_.sent_of({up(0), up(1), up(2), up(3)}); }
  std::vector<std::string> downs_sent() const { return db_.sent_of({down(0), down(1), down(2)}); }
  MigrationRecord& record() { return *db_.store.state().migration; }
  StepStatus status(int i) const { return db_.store.status_of(id(i)); }
  // Total time the executor slept on the fake clock.
  std::chrono::milliseconds slept() {
    std::chrono::milliseconds total{0};
    for (auto d : db_.time.sleeps())
      total += std::chrono::duration_cast<std::chrono::milliseconds>(d);
    return total;
  }
  // A fault on the `n`th sending of `sql` (1-based) and every one after it,
  // until `times` of them have failed; -1: for ever.
  void fail_on(const std::string& sql, const Error& e, int times = -1, bool lose = false) {
    auto left = std::make_shared<int>(times);
    db_.fault = [sql, e, left, lose](FakeSession& s, const std::string& sent) {
      if (sent != sql || *left == 0) return;
      if (*left > 0) --*left;
      if (lose) s.lose();
      throw e;
    };
  }

  FakeDatabase db_{"rules"};
  std::unique_ptr<Spec> spec_;
  std::unique_ptr<Plan> plan_;
};

TEST_F(ExecutorRules, RunsThePhasesInOrderAndWaitsAtCleanupForItsApproval) {
  Executor ex(*spec_, *plan_, options());
  EXPECT_EQ(ex.run(), RunOutcome::kWaitingApproval);
  EXPECT_EQ(ex.waiting_phase(), Phase::kCleanup);
  EXPECT_EQ(ups_sent(), (std::vector<std::string>{up(0), up(1), up(2)}));
  EXPECT_EQ(record().state, MigrationState::kWaitingApproval);
  EXPECT_EQ(record().phase, Phase::kCleanup);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(status(i), StepStatus::kDone) << id(i);
  EXPECT_EQ(status(3), StepStatus::kPending);
  const auto kinds = db_.store.event_kinds();
  EXPECT_EQ(kinds.front(), "started");
  EXPECT_EQ(kinds.back(), "waiting_approval");
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "step_done"), 3);
  // Each step's SQL and its done record in one transaction.
  EXPECT_FALSE(db_.store.in_transaction());
}

TEST_F(ExecutorRules, AnApprovalGivenLaterFinishesItAndHoldsForLaterRuns) {
  ASSERT_EQ(run(options()), RunOutcome::kWaitingApproval);
  RunOptions o = options({Phase::kCleanup});
  o.actor = "alice";
  EXPECT_EQ(run(o), RunOutcome::kCompleted);
  EXPECT_EQ(ups_sent(), (std::vector<std::string>{up(0), up(1), up(2), up(3)}));
  EXPECT_EQ(record().state, MigrationState::kCompleted);
  EXPECT_TRUE(record().approved.count(Phase::kCleanup));
  bool approved_by_alice = false;
  for (const auto& e : db_.store.state().events) {
    approved_by_alice |= e.kind == "approved" && e.actor == "alice" && e.phase == Phase::kCleanup;
  }
  EXPECT_TRUE(approved_by_alice);
  // Done is done: a later run sends no step again.
  EXPECT_EQ(run(options()), RunOutcome::kAlreadyCompleted);
  EXPECT_EQ(ups_sent().size(), 4u);
}

TEST_F(ExecutorRules, AnApprovalRecordedAtTheStartHoldsWhenThePhaseIsReached) {
  RunOptions first = until(Phase::kPrepare);
  first.approve = {Phase::kCleanup};
  ASSERT_EQ(run(first), RunOutcome::kReachedUntil);
  EXPECT_EQ(ups_sent().size(), 1u);
  EXPECT_EQ(run(options()), RunOutcome::kCompleted);  // no --approve this time
  EXPECT_EQ(ups_sent().size(), 4u);
}

TEST_F(ExecutorRules, AnApprovalOfAPhaseThatNeedsNoneIsNotRecorded) {
  RunOptions o = until(Phase::kPrepare);
  o.approve = {Phase::kDualWrite};
  ASSERT_EQ(run(o), RunOutcome::kReachedUntil);
  EXPECT_TRUE(record().approved.empty());
}

TEST_F(ExecutorRules, AGateInTheSpecHoldsItsPhase) {
  load(kSpec + "gates:\n  cutover: approval\n");
  Executor ex(*spec_, *plan_, options({Phase::kCleanup}));
  EXPECT_EQ(ex.run(), RunOutcome::kWaitingApproval);
  EXPECT_EQ(ex.waiting_phase(), Phase::kCutover);
  EXPECT_EQ(ups_sent(), (std::vector<std::string>{up(0), up(1)}));
  EXPECT_EQ(run(options({Phase::kCutover})), RunOutcome::kCompleted);
}

TEST_F(ExecutorRules, UntilStopsAfterThePhaseAndTheNextRunGoesOn) {
  EXPECT_EQ(run(until(Phase::kDualWrite)), RunOutcome::kReachedUntil);
  EXPECT_EQ(ups_sent(), (std::vector<std::string>{up(0), up(1)}));
  EXPECT_EQ(record().state, MigrationState::kPaused);
  EXPECT_EQ(record().phase, Phase::kCutover);
  EXPECT_EQ(run(until(Phase::kCutover)), RunOutcome::kReachedUntil);
  EXPECT_EQ(ups_sent(), (std::vector<std::string>{up(0), up(1), up(2)}));
}

TEST_F(ExecutorRules, ResumesFromEveryStateARunCanLeaveWithoutRunningADoneStepAgain) {
  for (MigrationState state : {MigrationState::kRunning, MigrationState::kPaused,
                               MigrationState::kWaitingApproval, MigrationState::kFailed}) {
    SCOPED_TRACE(to_string(state));
    db_.store.state() = {};
    db_.log.clear();
    ASSERT_EQ(run(until(Phase::kPrepare)), RunOutcome::kReachedUntil);
    record().state = state;
    // A step left running or failed by the run that stopped runs again.
    db_.store.step(id(1)).status =
        state == MigrationState::kFailed ? StepStatus::kFailed : StepStatus::kRunning;
    EXPECT_EQ(run(options({Phase::kCleanup})), RunOutcome::kCompleted);
    EXPECT_EQ(ups_sent(), (std::vector<std::string>{up(0), up(1), up(2), up(3)}));
    bool resumed = false;
    for (const auto& e : db_.store.state().events) {
      resumed |= e.kind == "resumed" && e.detail.value("state", "") == to_string(state);
    }
    EXPECT_TRUE(resumed);
  }
}

TEST_F(ExecutorRules, APhaseResumedAfterAFailureSkipsItsStepsThatAreDone) {
  load(kSpec +
       "  - sql: {phase: dual_write, up: \"CREATE INDEX b_id ON b (id)\", down: \"DROP INDEX "
       "b_id\"}\n");
  const Step& first = *plan_->steps_in(Phase::kDualWrite).at(0);
  const Step& second = *plan_->steps_in(Phase::kDualWrite).at(1);
  fail_on(second.sql, Error(ErrorKind::kFatal, "relation \"b\" does not exist", "42P01"));
  EXPECT_THROW(run(options()), StepFailedError);
  EXPECT_EQ(db_.store.status_of(first.id), StepStatus::kDone);
  db_.fault = nullptr;
  EXPECT_EQ(run(until(Phase::kDualWrite)), RunOutcome::kReachedUntil);
  EXPECT_EQ(db_.count(first.sql), 1);
  EXPECT_EQ(db_.count(second.sql), 2);
  EXPECT_EQ(db_.store.status_of(second.id), StepStatus::kDone);
}

TEST_F(ExecutorRules, ADifferentPlanOfTheSameSpecIsRefusedBeforeAnythingRuns) {
  ASSERT_EQ(run(until(Phase::kPrepare)), RunOutcome::kReachedUntil);
  db_.store.state().steps.pop_back();  // as if an older tandemd had planned it
  db_.log.clear();
  const Error e = run_error(options());
  EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
  EXPECT_TRUE(says(e, "planned different steps"));
  EXPECT_TRUE(ups_sent().empty());
}

TEST_F(ExecutorRules, ChangedOperationsAreRefusedAndChangedSettingsAreTaken) {
  ASSERT_EQ(run(until(Phase::kPrepare)), RunOutcome::kReachedUntil);
  const std::string started = db_.store.state().spec_text;
  std::string other = kSpec;
  other.replace(other.find("CREATE TABLE b"), 14, "CREATE TABLE z");
  load(other);
  db_.log.clear();
  const Error e = run_error(options());
  EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
  EXPECT_TRUE(says(e, "have changed since it started"));
  EXPECT_TRUE(db_.sent_of({plan_->steps.at(1).sql}).empty());
  EXPECT_EQ(db_.store.state().spec_text, started);

  std::string slower = kSpec;
  slower.replace(slower.find("retry_budget: 3"), 15, "retry_budget: 5");
  load(slower);
  EXPECT_EQ(run(until(Phase::kDualWrite)), RunOutcome::kReachedUntil);
  EXPECT_EQ(db_.store.state().spec_text, slower);
  const auto kinds = db_.store.event_kinds();
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "spec_replaced"), kinds.end());
}

TEST_F(ExecutorRules, RollbackUndoesTheStepsThatRanInReverseOrderAndCanStartAgain) {
  ASSERT_EQ(run(until(Phase::kCutover)), RunOutcome::kReachedUntil);
  EXPECT_EQ(rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(downs_sent(), (std::vector<std::string>{down(2), down(1), down(0)}));
  EXPECT_EQ(record().state, MigrationState::kRolledBack);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(status(i), StepStatus::kRolledBack) << id(i);
  EXPECT_EQ(status(3), StepStatus::kPending);
  EXPECT_EQ(rollback(), RollbackOutcome::kNothingToDo);
  EXPECT_EQ(downs_sent().size(), 3u);
  // Run again: from the start.
  EXPECT_EQ(run(until(Phase::kPrepare)), RunOutcome::kReachedUntil);
  EXPECT_EQ(db_.store.event_kinds().back(), "step_done");
  const auto kinds = db_.store.event_kinds();
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "restarted"), kinds.end());
  EXPECT_EQ(db_.count(up(0)), 2);
}

TEST_F(ExecutorRules, RollbackIsRefusedOnceAnIrreversibleStepHasRun) {
  ASSERT_EQ(run(options({Phase::kCleanup})), RunOutcome::kCompleted);
  const Error e = error_of([&] { rollback(); });
  EXPECT_EQ(e.failure(), Failure::kRollbackRefused);
  EXPECT_TRUE(says(e, "step " + id(3))) << e.what();
  EXPECT_TRUE(says(e, "The migration is complete; to undo its changes, write a migration"))
      << e.what();
  EXPECT_TRUE(downs_sent().empty());
  EXPECT_EQ(record().state, MigrationState::kCompleted);
}

TEST_F(ExecutorRules, ARetryableErrorIsRetriedAfterABackoffThatGrows) {
  fail_on(up(1), Error(ErrorKind::kRetryable, "canceling statement due to lock timeout", "55P03"),
          2);
  EXPECT_EQ(run(until(Phase::kDualWrite)), RunOutcome::kReachedUntil);
  EXPECT_EQ(db_.count(up(1)), 3);
  EXPECT_EQ(status(1), StepStatus::kDone);
  EXPECT_EQ(db_.store.step(id(1)).attempts, 2);
  EXPECT_EQ(db_.store.step(id(1)).last_sqlstate, "55P03");
  // retry_backoff 100ms, doubled once, each with equal jitter: 50-100ms,
  // then 100-200ms.
  EXPECT_GE(slept(), 150ms);
  EXPECT_LE(slept(), 300ms);
}

TEST_F(ExecutorRules, ASpentRetryBudgetParksTheMigrationAsFailedAndItResumesLater) {
  fail_on(up(1), Error(ErrorKind::kRetryable, "canceling statement due to lock timeout", "55P03"));
  const Error e = run_error(options());
  EXPECT_EQ(e.failure(), Failure::kStepFailed);
  EXPECT_EQ(e.sqlstate(), "55P03");
  EXPECT_TRUE(says(e, "retry budget of 3 attempts spent")) << e.what();
  EXPECT_TRUE(says(e, "Next: find the session holding a conflicting lock")) << e.what();
  EXPECT_EQ(db_.count(up(1)), 3);
  EXPECT_EQ(record().state, MigrationState::kFailed);
  EXPECT_EQ(record().last_step, id(1));
  EXPECT_EQ(status(1), StepStatus::kFailed);
  EXPECT_EQ(db_.store.step(id(1)).attempts, 3);
  EXPECT_EQ(db_.store.event_kinds().back(), "step_failed");

  db_.fault = nullptr;  // the cause is fixed
  EXPECT_EQ(run(until(Phase::kDualWrite)), RunOutcome::kReachedUntil);
  EXPECT_EQ(status(1), StepStatus::kDone);
  EXPECT_EQ(db_.count(up(0)), 1);
}

TEST_F(ExecutorRules, AnErrorThatRetryingCannotHelpFailsAtOnce) {
  fail_on(up(1), Error(ErrorKind::kFatal, "relation \"a\" does not exist", "42P01"));
  EXPECT_THROW(run(options()), StepFailedError);
  EXPECT_EQ(db_.count(up(1)), 1);
  EXPECT_EQ(slept(), 0ms);
  EXPECT_EQ(record().state, MigrationState::kFailed);
}

// A COMMIT whose connection breaks: the executor cannot know whether it
// committed, so it reads the store again instead of running the step again.
TEST_F(ExecutorRules, AnInDoubtCommitThatCommittedIsNotRunAgain) {
  bool armed = false;
  db_.fault = [&](FakeSession& s, const std::string& sql) {
    if (sql == up(1)) armed = true;
    if (sql != "COMMIT" || !armed) return;
    armed = false;
    db_.store.commit();  // it did commit
    s.lose();
    throw Error(ErrorKind::kInDoubt, "server closed the connection during COMMIT");
  };
  EXPECT_EQ(run(until(Phase::kDualWrite)), RunOutcome::kReachedUntil);
  EXPECT_EQ(db_.count(up(1)), 1);
  EXPECT_EQ(status(1), StepStatus::kDone);
  EXPECT_EQ(db_.sessions_opened, 2);
}

TEST_F(ExecutorRules, AnInDoubtCommitThatDidNotCommitRunsTheStepAgain) {
  bool armed = false;
  db_.fault = [&](FakeSession& s, const std::string& sql) {
    if (sql == up(1)) armed = !armed && db_.count(up(1)) == 1;
    if (sql != "COMMIT" || !armed) return;
    armed = false;
    s.lose();  // rolled back with the session
    throw Error(ErrorKind::kInDoubt, "server closed the connection during COMMIT");
  };
  EXPECT_EQ(run(until(Phase::kDualWrite)), RunOutcome::kReachedUntil);
  EXPECT_EQ(db_.count(up(1)), 2);
  EXPECT_EQ(status(1), StepStatus::kDone);
}

TEST_F(ExecutorRules, ALostSessionIsReplacedAndTheLockTakenAgainBeforeGoingOn) {
  fail_on(up(1), Error(ErrorKind::kRetryable, "server closed the connection", "08006"), 1,
          /*lose=*/true);
  EXPECT_EQ(run(until(Phase::kDualWrite)), RunOutcome::kReachedUntil);
  EXPECT_EQ(db_.sessions_opened, 2);
  EXPECT_EQ(db_.store.prepared, 2);
  EXPECT_EQ(db_.count(up(1)), 2);
  EXPECT_EQ(status(1), StepStatus::kDone);
}

TEST_F(ExecutorRules, AStopTakesEffectBetweenStepsAndTheNextRunResumes) {
  std::atomic<bool> stop{false};
  db_.fault = [&](FakeSession&, const std::string& sql) {
    if (sql == up(1)) stop = true;  // asked while step 2 runs: it finishes
  };
  RunOptions o = options();
  o.stop = &stop;
  EXPECT_EQ(run(o), RunOutcome::kStopped);
  EXPECT_EQ(ups_sent(), (std::vector<std::string>{up(0), up(1)}));
  EXPECT_EQ(status(1), StepStatus::kDone);
  EXPECT_EQ(record().state, MigrationState::kPaused);
  db_.fault = nullptr;
  EXPECT_EQ(run(options({Phase::kCleanup})), RunOutcome::kCompleted);
  EXPECT_EQ(db_.count(up(1)), 1);
}

TEST_F(ExecutorRules, AMigrationLockHeldElsewhereIsReportedWithItsHolderAfterTheWait) {
  db_.store.lock_holder = "backend pid 4242 (tandemd rules pid 7, from local socket)";
  const Error e = run_error(options());
  EXPECT_EQ(e.failure(), Failure::kLockHeld);
  EXPECT_TRUE(says(e, "backend pid 4242")) << e.what();
  EXPECT_GE(slept(), 5000ms);  // RunOptions::lock_wait
  EXPECT_FALSE(db_.store.state().migration);
  EXPECT_TRUE(ups_sent().empty());
}

TEST_F(ExecutorRules, AMigrationRefusedByItsPrechecksRecordsNothing) {
  load(
      "name: rules\noperations:\n"
      "  - add_column: {table: items, column: note, type: text, backfill: \"''\"}\n");
  const Step* precheck = nullptr;
  for (const auto& s : plan_->steps) {
    if (s.kind == StepKind::kPrecheck) precheck = &s;
  }
  ASSERT_NE(precheck, nullptr);
  db_.answers.emplace_back(precheck->sql, one_value("column items.note already exists"));
  const Error e = run_error(options());
  EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
  EXPECT_TRUE(says(e, "column items.note already exists"));
  EXPECT_TRUE(says(e, "nothing was changed"));
  EXPECT_FALSE(db_.store.state().migration);
  EXPECT_TRUE(db_.store.state().events.empty());
}

TEST_F(ExecutorRules, AServerNeverReachedIsReportedAtOnceNotRetried) {
  db_.refuse_connections = Error(ErrorKind::kRetryable, "connection refused", "08001");
  EXPECT_THROW(run(options()), Error);
  EXPECT_EQ(slept(), 0ms);
  EXPECT_FALSE(db_.store.state().migration);
}

}  // namespace
}  // namespace tandem::testing
