// Retries: the budget, per outage, a state write that changes nothing, a restart.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <sstream>
#include <thread>

#include "engine/backfill.h"
#include "engine/run_control.h"
#include "engine/state_schema.h"
#include "engine/state_store.h"
#include "integration/executor_fixture.h"
#include "support/scenario.h"
#include "util/ident.h"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST_F(ExecutorTest, FailsClearlyWhenTheRetryBudgetIsSpentAndResumesLater) {
  Spec spec = spec_from(items_spec("  retry_budget: 3\n"));
  Plan plan = make_plan(spec);
  auto blocker = pg_.connect(db_);
  blocker->exec("BEGIN");
  blocker->exec("SELECT * FROM items LIMIT 1");
  RunOptions o = options();
  o.until = Phase::kPrepare;
  try {
    Executor(spec, plan, o).run();
    FAIL() << "expected the step to fail";
  } catch (const StepFailedError& e) {
    EXPECT_EQ(e.sqlstate(), "55P03");
    EXPECT_STREQ(e.what(),
                 "step 1.add_shadow_column failed: canceling statement due to lock timeout "
                 "[SQLSTATE 55P03] (retry budget of 3 attempts spent).\n"
                 "Next: find the session holding a conflicting lock (pg_locks joined with "
                 "pg_stat_activity), end it or wait for it, then run the same command to resume; "
                 "or run `tandemd rollback` to undo the migration.");
  }
  EXPECT_EQ(pg_.psql(db_, "SELECT state, last_step, last_sqlstate FROM tandem.migrations"),
            "failed|1.add_shadow_column|55P03");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(*) FROM pg_attribute WHERE attrelid = 'items'::regclass"
                     " AND attname LIKE '_tandem%'"),
            "0");
  blocker->exec("COMMIT");
  EXPECT_EQ(Executor(spec, plan, o).run(), RunOutcome::kReachedUntil);
}

// Sessions that are lost on the backfill's first `losses` batches, after
// which the server cannot be reached for `down` connection attempts: one
// outage per loss.
struct Outages {
  int losses = 0;
  int down = 0;
  std::atomic<int> lost{0};
  std::atomic<int> refused_left{0};
};

class OutageConnection final : public Connection {
 public:
  OutageConnection(std::unique_ptr<Connection> inner, Outages& o)
      : inner_(std::move(inner)), o_(o) {}
  Rows exec(const std::string& sql, const std::vector<std::string>& params) override {
    if (sql.find("SET _tandem_new_qty") != std::string::npos && o_.lost < o_.losses) {
      ++o_.lost;
      o_.refused_left = o_.down;
      inner_.reset();
      throw Error(ErrorKind::kRetryable, "connection lost: the test's outage", "08006");
    }
    return inner_->exec(sql, params);
  }
  void commit() override { inner_->commit(); }
  bool is_open() const override { return inner_ && inner_->is_open(); }
  int backend_pid() const override { return inner_ ? inner_->backend_pid() : 0; }

 private:
  std::unique_ptr<Connection> inner_;
  Outages& o_;
};

// Issue 16: attempts were counted across separate outages, so a run that
// lived through several restarts spent its budget on the earlier ones. Two
// outages of three failed attempts each, with a budget of five: each is
// within it.
TEST_F(ExecutorTest, TheRetryBudgetIsCountedPerOutage) {
  Spec spec =
      spec_from(items_spec("  retry_budget: 5\n  retry_backoff: 10ms\n"
                           "  retry_backoff_max: 20ms\n"));
  Plan plan = make_plan(spec);
  Outages outages;
  outages.losses = 2;
  outages.down = 2;
  RunOptions o = options();
  o.until = Phase::kBackfill;
  o.connect = [&](const std::string& dsn, const std::string& app) -> std::unique_ptr<Connection> {
    if (outages.refused_left > 0) {
      --outages.refused_left;
      throw Error(ErrorKind::kRetryable, "cannot connect: the test's outage", "08001");
    }
    return std::make_unique<OutageConnection>(connect_postgres(dsn, app), outages);
  };
  EXPECT_EQ(Executor(spec, plan, o).run(), RunOutcome::kReachedUntil);
  EXPECT_EQ(outages.lost, 2);
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM items WHERE _tandem_new_qty IS DISTINCT FROM qty"),
            "0");
}

// Issue 16: after a failover the worker went on from memory, and a
// checkpoint UPDATE that touched no row counted as done. Every write of the
// store that must change one row fails when it changes none, and a
// checkpoint moves only from where the batch read it.
TEST_F(ExecutorTest, AStateWriteThatChangesNoRowIsAnError) {
  Spec spec = spec_from(items_spec());
  ASSERT_EQ(run_until(spec, pg_.dsn(db_), Phase::kDualWrite), RunOutcome::kReachedUntil);
  auto c = pg_.connect(db_);
  StateStore store("items_qty");
  store.init_partitions(*c, "1.backfill", 5000, {{"2500"}});
  store.save_checkpoint(*c, "1.backfill", 0, {}, {"100"}, 100, 0, "", false);
  auto fails = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.kind() == ErrorKind::kFatal;
    }
    return false;
  };
  // From where it no longer is, from a range that is not there, or another migration.
  EXPECT_TRUE(
      fails([&] { store.save_checkpoint(*c, "1.backfill", 0, {}, {"200"}, 100, 0, "", false); }));
  EXPECT_TRUE(
      fails([&] { store.save_checkpoint(*c, "1.backfill", 7, {}, {"200"}, 100, 0, "", false); }));
  EXPECT_TRUE(fails([&] { store.mark_step(*c, "1.nothing", StepStatus::kDone); }));
  EXPECT_TRUE(
      fails([&] { StateStore("gone").set_state(*c, MigrationState::kRunning, Phase::kBackfill); }));
  store.save_checkpoint(*c, "1.backfill", 0, {"100"}, {"200"}, 100, 0, "", true);
  EXPECT_TRUE(fails(
      [&] { store.save_checkpoint(*c, "1.backfill", 0, {"200"}, {"300"}, 1, 0, "", false); }));
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT last_key::text, rows_done, finished FROM tandem.checkpoints"
                     " WHERE worker = 0"),
            "{200}|200|t");
}

TEST_F(ExecutorTest, SurvivesAPostgresRestartMidBackfill) {
  pg_.psql(db_, "INSERT INTO items SELECT g, g % 100, 'n' FROM generate_series(5001, 60000) g");
  Spec spec =
      spec_from(items_spec("  batch_size: 200\n  retry_budget: 60\n"
                           "  retry_backoff_max: 500ms\n"));
  auto run = std::async(std::launch::async,
                        [&] { return run_until(spec, pg_.dsn(db_), Phase::kShadowRead); });
  ASSERT_TRUE(
      wait_for("SELECT bool_or(rows_done > 0) FROM tandem.checkpoints"
               " WHERE step_id = '1.backfill'",
               "t", 5s))
      << "the backfill never started";
  pg_.restart();
  EXPECT_EQ(run.get(), RunOutcome::kReachedUntil);
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT status, sum(mismatches) FROM tandem.steps JOIN tandem.checkpoints"
                     " USING (migration, step_id) WHERE step_id = '1.verify' GROUP BY status"),
            "done|0");
  // One worker, eight ranges (the least a step is cut into), each worked on
  // its worker's session, which the restart took away mid-range.
  EXPECT_EQ(key_ranges_summary(pg_, db_, "1.backfill"), "8|t|60000|t");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM items WHERE _tandem_new_qty IS DISTINCT FROM qty"),
            "0");
}

}  // namespace
}  // namespace tandem::testing
