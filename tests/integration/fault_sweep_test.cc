// Sweeps a fault over every database call of a whole migration: for each N,
// the Nth call fails (lock timeout, lost connection, or lost connection right
// after a successful COMMIT), and the migration must still complete with every
// row intact and nothing left behind.
#include <gtest/gtest.h>

#include "support/fault_injection.h"
#include "support/scenario.h"

namespace tandem::testing {
namespace {

const char* kSpec =
    "name: sweep\n"
    "settings:\n"
    "  batch_size: 400\n"
    "  retry_budget: 5\n"
    "  retry_backoff: 1ms\n"
    "  retry_backoff_max: 2ms\n"
    "operations:\n"
    "  - alter_column_type: {table: items, column: qty, type: bigint}\n";

class FaultSweep : public ::testing::TestWithParam<Fault> {
 protected:
  void SetUp() override {
    db_ = pg_.create_database("sweep");
    check_ = pg_.connect(db_);
  }
  void reset_database() {
    check_->exec(
        "DROP SCHEMA IF EXISTS tandem CASCADE; DROP TABLE IF EXISTS items;"
        "CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL DEFAULT 7);"
        "INSERT INTO items SELECT g, g * 3 FROM generate_series(1, 1000) g;");
  }
  // One row, its columns joined with '|', like psql -At.
  std::string query(const std::string& sql) {
    Rows r = check_->exec(sql);
    std::string out;
    for (size_t c = 0; c < r.columns.size(); ++c) out += (c ? "|" : "") + r.text(0, c);
    return out;
  }
  RunOptions options(FaultPlan* plan) {
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    o.actor = "sweep";
    o.approve_all = true;
    if (plan) o.connect = plan->connector();
    return o;
  }
  RunOutcome run(FaultPlan& plan) {
    Spec spec = spec_from(kSpec);
    Plan p = make_plan(spec);
    return Executor(spec, p, options(&plan)).run();
  }
  // Every row, column and helper as it was before the migration.
  void expect_untouched() {
    ASSERT_EQ(query("SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
                    " WHERE attrelid = 'items'::regclass AND attname = 'qty'"),
              "integer|t");
    ASSERT_EQ(query("SELECT count(*), sum(qty) FROM items"), "1000|1501500");
    ASSERT_EQ(query("SELECT count(*) FROM pg_attribute WHERE attrelid = 'items'::regclass"
                    " AND attname LIKE '_tandem%' AND NOT attisdropped"),
              "0");
    ASSERT_EQ(query("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass"), "0");
    ASSERT_EQ(query("SELECT count(*) FROM pg_constraint WHERE conrelid = 'items'::regclass"
                    " AND contype = 'c'"),
              "0");
  }

  PgServer& pg_ = PgServer::shared();
  std::string db_;
  std::unique_ptr<Connection> check_;
};

TEST_P(FaultSweep, EveryCallCanFailAndTheMigrationStillCompletesIntact) {
  reset_database();
  FaultPlan clean(GetParam(), 0);
  ASSERT_EQ(run(clean), RunOutcome::kCompleted);
  const int total = clean.calls();
  ASSERT_GT(total, 30);
  int fired = 0;
  for (int n = 1; n <= total; ++n) {
    SCOPED_TRACE("fault at call " + std::to_string(n) + " of " + std::to_string(total));
    reset_database();
    FaultPlan plan(GetParam(), n);
    RunOutcome outcome;
    try {
      outcome = run(plan);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "the run failed: " << e.what();
      continue;
    }
    fired += plan.fired();
    ASSERT_EQ(outcome, RunOutcome::kCompleted);
    ASSERT_EQ(query("SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
                    " WHERE attrelid = 'items'::regclass AND attname = 'qty'"),
              "bigint|t");
    ASSERT_EQ(query("SELECT count(*), sum(qty) FROM items"), "1000|1501500");
    ASSERT_EQ(query("SELECT count(*) FROM pg_attribute WHERE attrelid = 'items'::regclass"
                    " AND attname LIKE '_tandem%' AND NOT attisdropped"),
              "0");
    ASSERT_EQ(query("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass"), "0");
    ASSERT_EQ(query("SELECT count(*) FROM tandem.steps WHERE status <> 'done'"), "0");
    check_->exec("INSERT INTO items (id) VALUES (1001)");  // the default moved too
    ASSERT_EQ(query("SELECT qty FROM items WHERE id = 1001"), "7");
  }
  EXPECT_GT(fired, total / 2) << "most sweeps must actually inject their fault";
}

// kill -9 at every call of the migration: a fresh run must finish it, or a
// fresh rollback must undo it, whichever the operator chooses.
class CrashSweep : public FaultSweep {
 protected:
  // A crash right after the final commit leaves nothing to do.
  static bool finishes(RunOutcome o) {
    return o == RunOutcome::kCompleted || o == RunOutcome::kAlreadyCompleted;
  }
};

TEST_P(CrashSweep, ACrashAtAnyCallResumesToCompletionOrRollsBackCleanly) {
  reset_database();
  FaultPlan clean(GetParam(), 0);
  ASSERT_EQ(run(clean), RunOutcome::kCompleted);
  const int total = clean.calls();
  Spec spec = spec_from(kSpec);
  Plan p = make_plan(spec);
  int crashed = 0;
  for (int n = 1; n <= total; ++n) {
    for (bool roll_back : {false, true}) {
      SCOPED_TRACE("crash at call " + std::to_string(n) + " of " + std::to_string(total) +
                   (roll_back ? ", then roll back" : ", then run again"));
      reset_database();
      FaultPlan plan(GetParam(), n);
      try {
        Executor(spec, p, options(&plan)).run();
      } catch (const SimulatedCrash&) {
        ++crashed;
      }
      try {
        if (roll_back) {
          Executor(spec, p, options(nullptr)).rollback();
        } else {
          ASSERT_TRUE(finishes(Executor(spec, p, options(nullptr)).run()));
        }
      } catch (const RollbackRefusedError&) {
        // The crash came after cleanup had begun: only forward is possible.
        ASSERT_TRUE(roll_back);
        ASSERT_TRUE(finishes(Executor(spec, p, options(nullptr)).run()));
        roll_back = false;
      } catch (const std::exception& e) {
        FAIL() << e.what();
      }
      if (roll_back) {
        expect_untouched();
      } else {
        ASSERT_EQ(query("SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                        " WHERE attrelid = 'items'::regclass AND attname = 'qty'"),
                  "bigint");
        ASSERT_EQ(query("SELECT count(*), sum(qty) FROM items"), "1000|1501500");
        ASSERT_EQ(query("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass"), "0");
      }
    }
  }
  EXPECT_GT(crashed, total) << "most runs must actually crash";
}

INSTANTIATE_TEST_SUITE_P(BeforeAndAfterCommit, CrashSweep,
                         ::testing::Values(Fault::kCrash, Fault::kCrashAfterCommit),
                         [](const auto& info) {
                           return std::string(info.param == Fault::kCrash ? "BeforeTheCall"
                                                                          : "AfterCommit");
                         });

INSTANTIATE_TEST_SUITE_P(AllFaults, FaultSweep,
                         ::testing::Values(Fault::kLockTimeout, Fault::kDropConnection,
                                           Fault::kDropAfterCommit),
                         [](const auto& info) {
                           switch (info.param) {
                             case Fault::kLockTimeout:
                               return std::string("LockTimeout");
                             case Fault::kDropConnection:
                               return std::string("DropConnection");
                             case Fault::kDropAfterCommit:
                               return std::string("DropAfterCommit");
                             default:
                               break;
                           }
                           return std::string("?");
                         });

}  // namespace
}  // namespace tandem::testing
