// Locks: DDL waits at most the lock timeout, a lock timeout cut below deadlock_timeout,
// a deadlock with the application, a second runner.
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

TEST_F(ExecutorTest, DdlWaitsAtMostTheLockTimeoutAndSucceedsOnceTheBlockerEnds) {
  Spec spec = spec_from(items_spec("  retry_budget: 200\n"));
  Plan plan = make_plan(spec);
  auto blocker = pg_.connect(db_);
  blocker->exec("BEGIN");
  blocker->exec("SELECT * FROM items LIMIT 1");  // holds ACCESS SHARE until it ends

  RunOptions o = options();
  o.until = Phase::kPrepare;
  auto run = std::async(std::launch::async, [&] { return Executor(spec, plan, o).run(); });

  // An application reader, queued behind each waiting DDL attempt, waits at
  // most about one lock timeout; behind an unbounded DDL it would wait for
  // the blocker's whole 3 seconds.
  auto app = pg_.connect(db_);
  const double worst = worst_query_seconds(*app, "SELECT qty FROM items WHERE id = 1", 3s, 20ms);
  blocker->exec("COMMIT");
  EXPECT_EQ(run.get(), RunOutcome::kReachedUntil);
  EXPECT_LT(worst, 1.0) << "an application query waited " << worst << "s behind a tandem DDL";
  EXPECT_GT(worst, 0.05) << "the reader never queued behind the DDL: the test proves nothing";
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT attempts > 1, last_sqlstate, status FROM tandem.steps"
                     " WHERE step_id = '1.add_shadow_column'"),
            "t|55P03|done");
}

TEST_F(ExecutorTest, ALockTimeoutNotShorterThanDeadlockTimeoutIsCutBelowIt) {
  // PostgreSQL's deadlock check cancels whichever waiter has waited
  // deadlock_timeout first. A step that waited longer than that could let an
  // application transaction be the one cancelled, so its waits are cut to
  // 90% of deadlock_timeout (here 300ms) whatever the spec says (60s).
  pg_.psql(db_, "ALTER DATABASE " + db_ + " SET deadlock_timeout = '300ms'");
  Spec spec = spec_from(
      "name: items_qty\nsettings:\n  lock_timeout: 60s\n  retry_budget: 3\n"
      "  retry_backoff: 20ms\n  retry_backoff_max: 100ms\noperations:\n"
      "  - alter_column_type: {table: items, column: qty, type: bigint}\n");
  Plan plan = make_plan(spec);
  // The blocker lets go after 8 s: a step waiting the spec's 60 s would
  // get its lock then and succeed.
  auto blocker = pg_.connect(db_);
  blocker->exec("BEGIN");
  blocker->exec("SELECT * FROM items LIMIT 1");
  auto release = std::async(std::launch::async, [&] {
    std::this_thread::sleep_for(8s);
    blocker->exec("COMMIT");
  });
  RunOptions o = options();
  o.until = Phase::kPrepare;
  try {
    const auto t0 = Clock::now();
    const RunOutcome outcome = Executor(spec, plan, o).run();
    ADD_FAILURE() << "the step waited for the blocker instead of 270ms per attempt: outcome "
                  << static_cast<int>(outcome) << " after "
                  << std::chrono::duration<double>(Clock::now() - t0).count() << "s";
  } catch (const StepFailedError& e) {
    EXPECT_EQ(e.sqlstate(), "55P03");
    EXPECT_EQ(pg_.psql(db_,
                       "SELECT attempts, last_sqlstate, status FROM tandem.steps"
                       " WHERE step_id = '1.add_shadow_column'"),
              "3|55P03|failed");
  }
  release.get();
  EXPECT_EQ(Executor(spec, plan, o).run(), RunOutcome::kReachedUntil);
}

// A real deadlock between a step and an application transaction, in the
// order that makes the application the deadlock check's victim unless the
// step gives way first: the application waits on the step's first lock, and
// the step asks for the second (which the application holds) a little later.
// Both with the defaults (lock_timeout 500ms, deadlock_timeout 1s) and with a
// spec lock_timeout longer than deadlock_timeout (cut to 90% of it), the step
// times out, the application's transaction goes on and commits, and the
// retried step runs once.
TEST_F(ExecutorTest, InADeadlockWithTheApplicationTheStepGivesWay) {
  pg_.psql(db_,
           "CREATE TABLE lk_a (id int PRIMARY KEY, v int NOT NULL);"
           "CREATE TABLE lk_b (id int PRIMARY KEY, v int NOT NULL);"
           "INSERT INTO lk_a VALUES (1, 0); INSERT INTO lk_b VALUES (1, 0);");
  struct Case {
    std::string name, lock_timeout, deadlock_timeout;
    double step_waits;  // seconds, for its second lock
  };
  for (const Case& c : {Case{"deadlock_defaults", "500ms", "1s", 0.5},
                        Case{"deadlock_long_lock_timeout", "60s", "4s", 3.6}}) {
    SCOPED_TRACE(c.name);
    pg_.psql(db_, "ALTER DATABASE " + db_ + " SET deadlock_timeout = '" + c.deadlock_timeout + "'");
    // The step works 200 ms between its two locks: less than the margin
    // between its lock wait and deadlock_timeout (500 ms and 400 ms).
    Spec spec = spec_from("name: " + c.name + "\nsettings:\n  lock_timeout: " + c.lock_timeout +
                          "\n  retry_backoff: 20ms\n  retry_backoff_max: 100ms\noperations:\n"
                          "  - sql:\n      phase: prepare\n"
                          "      up: LOCK TABLE lk_a IN EXCLUSIVE MODE; SELECT pg_sleep(0.2);"
                          " UPDATE lk_b SET v = v + 10; UPDATE lk_a SET v = v + 10\n"
                          "      down: SELECT 1\n");
    Plan plan = make_plan(spec);
    auto app = pg_.connect(db_);
    app->exec("BEGIN");
    app->exec("UPDATE lk_b SET v = v + 1");
    const RunOptions o = options();
    auto run = std::async(std::launch::async, [&] { return Executor(spec, plan, o).run(); });
    // As soon as the step holds lk_a, the application asks for it too.
    auto watch = pg_.connect(db_);
    bool held = false;
    for (auto end = Clock::now() + 20s; !held && Clock::now() < end;) {
      held = watch
                 ->exec(
                     "SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                     " WHERE c.relname = 'lk_a' AND l.mode = 'ExclusiveLock' AND l.granted")
                 .size() == 1;
      if (!held) std::this_thread::sleep_for(2ms);
    }
    ASSERT_TRUE(held) << "the step never took its first lock";
    const auto t0 = Clock::now();
    try {
      app->exec("UPDATE lk_a SET v = v + 1");
      app->exec("COMMIT");
    } catch (const Error& e) {
      ADD_FAILURE() << "the application's transaction was cancelled: " << e.sqlstate() << " "
                    << e.what();
    }
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    ASSERT_EQ(run.wait_for(60s), std::future_status::ready);
    EXPECT_EQ(run.get(), RunOutcome::kCompleted);
    // The application waited for the step's work and its wait for lk_b.
    EXPECT_LT(waited, 0.2 + c.step_waits + 1.0) << waited;
    EXPECT_EQ(pg_.psql(db_,
                       "SELECT status, attempts > 0, last_sqlstate FROM tandem.steps"
                       " WHERE migration = '" +
                           c.name + "' AND step_id = '1.sql'"),
              "done|t|55P03");
    // Both the application's writes and the step's, the step's once.
    EXPECT_EQ(pg_.psql(db_, "SELECT a.v, b.v FROM lk_a a, lk_b b"), "11|11");
    pg_.psql(db_, "UPDATE lk_a SET v = 0; UPDATE lk_b SET v = 0");
  }
  pg_.psql(db_, "ALTER DATABASE " + db_ + " RESET deadlock_timeout");
}

TEST_F(ExecutorTest, ASecondRunnerIsToldWhoHoldsTheMigration) {
  Spec spec = spec_from(items_spec());
  Plan plan = make_plan(spec);
  auto holder = pg_.connect(db_);
  StateStore::ensure_schema(*holder);
  holder->exec("SET application_name = 'tandemd on host-a'");
  holder->exec("SELECT pg_advisory_lock($1::int, hashtext('items_qty'))",
               {std::to_string(kAdvisoryLockClass)});
  RunOptions o = options();
  o.lock_wait = 300ms;
  try {
    Executor(spec, plan, o).run();
    FAIL() << "expected the lock to be refused";
  } catch (const LockHeldError& e) {
    std::string m = e.what();
    EXPECT_EQ(m.rfind("migration \"items_qty\" is being run by another tandemd: backend pid " +
                          std::to_string(holder->backend_pid()) +
                          " (tandemd on host-a, from local socket",
                      0),
              0u)
        << m;
  }
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM tandem.migrations"), "0");
}

}  // namespace
}  // namespace tandem::testing
