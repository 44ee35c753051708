// alter_column_type against a real PostgreSQL under pgbench load: through
// cleanup, and rolled back from every phase, with the TPC-B invariant as the
// oracle that no write was lost.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "support/scenario.h"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;

class AlterColumnTypeUnderLoad : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = pg_.create_database("act");
    pgbench_init(pg_, db_, 2);
  }
  RunOptions options() const {
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    o.actor = "test";
    return o;
  }

  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

TEST_F(AlterColumnTypeUnderLoad, RunsThroughCleanupWithoutLosingAWrite) {
  Spec spec = spec_from(abalance_spec());
  Plan plan = make_plan(spec);
  PgbenchLoad load(pg_, db_);
  load.start();
  std::this_thread::sleep_for(1s);
  RunOptions o = options();
  o.approve_all = true;
  Executor executor(spec, plan, o);
  EXPECT_EQ(executor.run(), RunOutcome::kCompleted);
  std::this_thread::sleep_for(1s);
  load.stop();

  EXPECT_GT(load.transactions(), 1000);
  EXPECT_EQ(load.failures(), 0) << load.last_error_output();
  EXPECT_TRUE(tpcb_invariant_holds(pg_, db_));
  EXPECT_EQ(column_type(pg_, db_, "pgbench_accounts", "abalance"), "bigint");
  EXPECT_EQ(leftovers(pg_, db_, "pgbench_accounts"), "");
  // Every step is recorded as done, and the backfill saw every row.
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FILTER (WHERE status <> 'done') FROM tandem.steps"),
            "0");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT sum(rows_done) >= 200000 FROM tandem.checkpoints"
                     " WHERE step_id = '1.backfill'"),
            "t");
  // Running it again is a no-op.
  Executor again(spec, plan, o);
  EXPECT_EQ(again.run(), RunOutcome::kAlreadyCompleted);
}

class RollbackFromPhase : public AlterColumnTypeUnderLoad,
                          public ::testing::WithParamInterface<Phase> {};

TEST_P(RollbackFromPhase, RestoresTheIntegerColumnWithEveryConcurrentWrite) {
  Spec spec = spec_from(abalance_spec());
  Plan plan = make_plan(spec);
  PgbenchLoad load(pg_, db_);
  load.start();
  RunOptions o = options();
  o.until = GetParam();
  Executor forward(spec, plan, o);
  EXPECT_EQ(forward.run(), RunOutcome::kReachedUntil);
  // Writes land in the intermediate state (after cutover: in the bigint column).
  std::this_thread::sleep_for(1500ms);
  if (GetParam() == Phase::kCutover) {
    EXPECT_EQ(column_type(pg_, db_, "pgbench_accounts", "abalance"), "bigint");
  }
  Executor back(spec, plan, options());
  EXPECT_EQ(back.rollback(), RollbackOutcome::kRolledBack);
  std::this_thread::sleep_for(1s);
  load.stop();

  EXPECT_EQ(load.failures(), 0) << load.last_error_output();
  EXPECT_TRUE(tpcb_invariant_holds(pg_, db_));
  EXPECT_EQ(column_type(pg_, db_, "pgbench_accounts", "abalance"), "integer");
  EXPECT_EQ(leftovers(pg_, db_, "pgbench_accounts"), "");
  EXPECT_EQ(pg_.psql(db_, "SELECT state FROM tandem.migrations"), "rolled_back");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM tandem.checkpoints"), "0");
}

INSTANTIATE_TEST_SUITE_P(EveryReversiblePhase, RollbackFromPhase,
                         ::testing::Values(Phase::kPrepare, Phase::kDualWrite, Phase::kBackfill,
                                           Phase::kShadowRead, Phase::kCutover),
                         [](const auto& info) { return std::string(phase_name(info.param)); });

// Stops the run after the first backfill batch, as a signal would.
class StopAfterFirstBatch : public ProgressSink {
 public:
  explicit StopAfterFirstBatch(std::atomic<bool>& stop) : stop_(stop) {}
  void phase_started(Phase) override {}
  void step_started(const Step&) override {}
  void progress(const ProgressUpdate& u) override {
    if (u.step->kind == StepKind::kBackfill) stop_ = true;
  }
  void step_finished(const Step&, double) override {}

 private:
  std::atomic<bool>& stop_;
};

TEST_F(AlterColumnTypeUnderLoad, StopsMidBackfillThenRollsBackThePartialCopy) {
  Spec spec = spec_from(abalance_spec(1000));
  Plan plan = make_plan(spec);
  PgbenchLoad load(pg_, db_);
  load.start();
  std::atomic<bool> stop{false};
  StopAfterFirstBatch sink(stop);
  RunOptions o = options();
  o.stop = &stop;
  o.progress = &sink;
  Executor forward(spec, plan, o);
  EXPECT_EQ(forward.run(), RunOutcome::kStopped);
  EXPECT_EQ(pg_.psql(db_, "SELECT status FROM tandem.steps WHERE step_id = '1.backfill'"),
            "running");
  EXPECT_EQ(pg_.psql(db_, "SELECT sum(rows_done) BETWEEN 1 AND 199999 FROM tandem.checkpoints"),
            "t");
  Executor back(spec, plan, options());
  EXPECT_EQ(back.rollback(), RollbackOutcome::kRolledBack);
  load.stop();
  EXPECT_EQ(load.failures(), 0) << load.last_error_output();
  EXPECT_TRUE(tpcb_invariant_holds(pg_, db_));
  EXPECT_EQ(leftovers(pg_, db_, "pgbench_accounts"), "");
}

TEST_F(AlterColumnTypeUnderLoad, StartRollbackStartCompleteLifecycle) {
  // The column's comment goes with its name, forward and back (it stayed
  // behind on the old column, which cleanup drops).
  pg_.psql(db_, "COMMENT ON COLUMN pgbench_accounts.abalance IS 'in cents'");
  const std::string comment =
      "SELECT coalesce(col_description('pgbench_accounts'::regclass, attnum), '-') FROM"
      " pg_attribute WHERE attrelid = 'pgbench_accounts'::regclass AND attname = 'abalance'";
  Spec spec = spec_from(abalance_spec());
  Plan plan = make_plan(spec);
  EXPECT_EQ(run_until(spec, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  EXPECT_EQ(pg_.psql(db_, comment), "in cents");
  EXPECT_EQ(Executor(spec, plan, options()).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(column_type(pg_, db_, "pgbench_accounts", "abalance"), "integer");
  EXPECT_EQ(pg_.psql(db_, comment), "in cents");
  EXPECT_EQ(run_until(spec, pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(column_type(pg_, db_, "pgbench_accounts", "abalance"), "bigint");
  EXPECT_EQ(pg_.psql(db_, comment), "in cents");
  EXPECT_TRUE(tpcb_invariant_holds(pg_, db_));
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT string_agg(kind, ',' ORDER BY id) FROM tandem.events"
                     " WHERE kind IN ('started', 'rolled_back', 'restarted', 'completed')"),
            "started,rolled_back,restarted,completed");
}

TEST_F(AlterColumnTypeUnderLoad, RollbackAfterCleanupIsRefused) {
  Spec spec = spec_from(abalance_spec());
  Plan plan = make_plan(spec);
  EXPECT_EQ(run_until(spec, pg_.dsn(db_)), RunOutcome::kCompleted);
  try {
    Executor(spec, plan, options()).rollback();
    FAIL() << "rollback after cleanup must be refused";
  } catch (const RollbackRefusedError& e) {
    EXPECT_STREQ(e.what(),
                 "cannot roll back migration \"abalance_bigint\": step 1.drop_old_column "
                 "(cleanup: drop the backward sync and the old column _tandem_old_abalance) has "
                 "run and cannot be undone. The migration is complete; to undo its changes, "
                 "write a migration that makes them the other way.");
  }
  EXPECT_EQ(column_type(pg_, db_, "pgbench_accounts", "abalance"), "bigint");
}

TEST_F(AlterColumnTypeUnderLoad, CleanupWaitsForApproval) {
  Spec spec = spec_from(abalance_spec());
  Plan plan = make_plan(spec);
  Executor executor(spec, plan, options());
  EXPECT_EQ(executor.run(), RunOutcome::kWaitingApproval);
  EXPECT_EQ(executor.waiting_phase(), Phase::kCleanup);
  EXPECT_EQ(pg_.psql(db_, "SELECT state || ' ' || phase FROM tandem.migrations"),
            "waiting_approval 6");
  // The old column is still there, kept in sync by the backward trigger.
  EXPECT_EQ(column_type(pg_, db_, "pgbench_accounts", "_tandem_old_abalance"), "integer");
  pg_.psql(db_, "UPDATE pgbench_accounts SET abalance = 77 WHERE aid = 1");
  EXPECT_EQ(pg_.psql(db_, "SELECT _tandem_old_abalance FROM pgbench_accounts WHERE aid = 1"), "77");
  // A value that `down` cannot carry back is refused rather than silently
  // making rollback lossy (documented in docs/operations.md).
  try {
    pg_.psql(db_, "UPDATE pgbench_accounts SET abalance = 3000000000 WHERE aid = 2");
    ADD_FAILURE() << "an out-of-range write after cutover must fail";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("integer out of range"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tandem::testing
