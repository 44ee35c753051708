// The executor's safety mechanisms against a real PostgreSQL: lock timeouts
// and retries, the migration lock, prechecks, serial and identity columns.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <sstream>
#include <thread>

#include "engine/backfill.h"
#include "engine/run_control.h"
#include "engine/state_schema.h"
#include "engine/state_store.h"
#include "support/scenario.h"
#include "util/ident.h"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class ExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = pg_.create_database("exec");
    pg_.psql(db_,
             "CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL, note text);"
             "INSERT INTO items SELECT g, g % 100, 'n' FROM generate_series(1, 5000) g;"
             "ANALYZE items;");
  }
  RunOptions options() const {
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    o.actor = "test";
    return o;
  }
  // `settings`: more lines for the settings block, each "  key: value\n";
  // one that names a default here replaces it (a key may appear once).
  static std::string items_spec(const std::string& settings = "") {
    std::string defaults;
    for (const char* line :
         {"  lock_timeout: 200ms\n", "  retry_backoff: 20ms\n", "  retry_backoff_max: 100ms\n"}) {
      const std::string key = std::string(line).substr(0, std::string(line).find(':') + 1);
      if (settings.find(key) == std::string::npos) defaults += line;
    }
    return "name: items_qty\nsettings:\n" + defaults + settings +
           "operations:\n"
           "  - alter_column_type: {table: items, column: qty, type: bigint}\n";
  }

  bool start_slow_autovacuum_of_items(int delay_ms, const std::string& update) {
    return start_slow_autovacuum(pg_, db_, "items", delay_ms, update);
  }
  std::string dsn_of_items_owner(const std::string& role, const std::string& member_of = "") {
    return dsn_of_owner(pg_, db_, role, {"items"}, member_of);
  }

  bool wait_for(const std::string& sql, const std::string& want,
                std::chrono::milliseconds timeout) {
    return answers_within(pg_, db_, sql, want, timeout);
  }
  // Updates rows all over items until `stop`.
  std::thread hammer_items(const std::atomic<bool>& stop) {
    return std::thread([this, &stop] {
      auto c = pg_.connect(db_);
      for (int i = 0; !stop; ++i) {
        c->exec("UPDATE items SET qty = qty + 1 WHERE id = $1",
                {std::to_string(1 + (i * 37) % 5000)});
      }
    });
  }
  // After the backfill: corrupts two shadow values behind the trigger's back
  // and expects shadow_read's verification to name both.
  void expect_verify_finds_rows_7_and_4321_corrupted(const Spec& spec) {
    pg_.psql(db_,
             "SET session_replication_role = replica;"
             "UPDATE items SET _tandem_new_qty = -1 WHERE id IN (7, 4321);");
    try {
      run_until(spec, pg_.dsn(db_), Phase::kShadowRead);
      FAIL() << "the verification must fail";
    } catch (const StepFailedError& e) {
      std::string m = e.what();
      EXPECT_EQ(m.substr(0, m.find('\n')),
                "step 1.verify failed: 2 rows differ between old and new storage (first keys: "
                "(7) (4321)).");
    }
  }

  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

TEST_F(ExecutorTest, ADeadlockOrASerializationFailureIsRetryableAndKeepsItsSqlstate) {
  // libpqxx 6.4 throws these (and insufficient_privilege) without the
  // server's SQLSTATE, and not as sql_error: a real deadlock must still come
  // out as retryable, or a step under load fails for good on one.
  auto error_of = [](const std::function<void()>& f) -> std::pair<std::string, ErrorKind> {
    try {
      f();
    } catch (const Error& e) {
      return {e.sqlstate(), e.kind()};
    }
    return {"no error", ErrorKind::kFatal};
  };
  auto a = connect_postgres(pg_.dsn(db_), "deadlock a");
  auto b = connect_postgres(pg_.dsn(db_), "deadlock b");
  // a holds row 1 and waits for row 2; b holds row 2 and waits for row 1.
  // a checks for the deadlock first (100 ms), so a is the one cancelled.
  a->exec("SET deadlock_timeout = '100ms'");
  b->exec("SET deadlock_timeout = '10s'");
  a->exec("BEGIN");
  a->exec("UPDATE items SET qty = qty WHERE id = 1");
  b->exec("BEGIN");
  b->exec("UPDATE items SET qty = qty WHERE id = 2");
  auto b_waits =
      std::async(std::launch::async, [&] { b->exec("UPDATE items SET qty = qty WHERE id = 1"); });
  ASSERT_TRUE(
      wait_for("SELECT count(*) FROM pg_stat_activity WHERE application_name ="
               " 'deadlock b' AND wait_event_type = 'Lock'",
               "1", 10s));
  auto deadlock = error_of([&] { a->exec("UPDATE items SET qty = qty WHERE id = 2"); });
  a->exec("ROLLBACK");
  b_waits.get();
  b->exec("COMMIT");
  EXPECT_EQ(deadlock.first, "40P01");
  EXPECT_EQ(deadlock.second, ErrorKind::kRetryable);

  // a reads in a snapshot, b changes the row and commits, a writes it.
  a->exec("BEGIN ISOLATION LEVEL REPEATABLE READ");
  a->exec("SELECT qty FROM items WHERE id = 3");
  b->exec("UPDATE items SET qty = qty + 1 WHERE id = 3");
  auto serialization = error_of([&] { a->exec("UPDATE items SET qty = 0 WHERE id = 3"); });
  a->exec("ROLLBACK");
  EXPECT_EQ(serialization.first, "40001");
  EXPECT_EQ(serialization.second, ErrorKind::kRetryable);

  // A role that may not cancel a superuser's query.
  auto plain = connect_postgres(dsn_of_items_owner("tandem_plain"), "plain");
  auto denied = error_of(
      [&] { plain->exec("SELECT pg_cancel_backend(" + std::to_string(a->backend_pid()) + ")"); });
  EXPECT_EQ(denied.first, "42501");
  EXPECT_EQ(denied.second, ErrorKind::kFatal);
}

TEST_F(ExecutorTest, EverySessionStartsWithLimitsOnLocksStatementsAndIdleTransactions) {
  auto conn = connect_postgres(pg_.dsn(db_), "limits test");
  Rows r = conn->exec(
      "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'),"
      " current_setting('idle_in_transaction_session_timeout'),"
      " current_setting('max_parallel_workers_per_gather')");
  EXPECT_EQ(r.text(0, 0), "1min");
  EXPECT_EQ(r.text(0, 1), "5s");
  EXPECT_EQ(r.text(0, 2), "1min");
  EXPECT_EQ(r.text(0, 3), "0");  // no parallel workers taken from the application
  // A database whose default loses acknowledged commits in a crash: tandem's
  // own commits are durable all the same; a stronger default is kept.
  pg_.psql(db_, "ALTER DATABASE " + db_ + " SET synchronous_commit = off");
  EXPECT_EQ(connect_postgres(pg_.dsn(db_), "limits test")
                ->exec("SELECT current_setting('synchronous_commit')")
                .text(0, 0),
            "on");
  pg_.psql(db_, "ALTER DATABASE " + db_ + " SET synchronous_commit = remote_apply");
  EXPECT_EQ(connect_postgres(pg_.dsn(db_), "limits test")
                ->exec("SELECT current_setting('synchronous_commit')")
                .text(0, 0),
            "remote_apply");
  pg_.psql(db_, "ALTER DATABASE " + db_ + " RESET synchronous_commit");
  // A transaction left open is ended by the server, not held for ever.
  conn->exec("SET idle_in_transaction_session_timeout = '200ms'");
  conn->exec("BEGIN");
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_THROW(conn->exec("SELECT 1"), Error);
}

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

TEST_F(ExecutorTest, RefusesChangedOperationsMidMigrationButTakesNewSettings) {
  Spec spec = spec_from(items_spec());
  Plan plan = make_plan(spec);
  EXPECT_EQ(run_until(spec, pg_.dsn(db_), Phase::kDualWrite), RunOutcome::kReachedUntil);
  // Another type: other steps. Refused, and nothing changes.
  std::string other = items_spec();
  other.replace(other.find("type: bigint"), 12, "type: numeric");
  Spec changed = spec_from(other);
  Plan changed_plan = make_plan(changed);
  try {
    Executor(changed, changed_plan, options()).run();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    EXPECT_STREQ(e.what(),
                 "the operations of migration \"items_qty\" have changed since it started (state "
                 "paused); restore the file it started with, or roll the migration back before "
                 "changing them (settings may change at any time)");
  }
  RunOptions o = options();
  try {
    Executor(changed, changed_plan, o).rollback();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
  }
  EXPECT_EQ(pg_.psql(db_, "SELECT state FROM tandem.migrations"), "paused");
  // Only a setting and a comment changed (issue 16): it goes on with them,
  // and the stored text is the new one.
  const std::string retuned = "# smaller batches\n" + items_spec("  batch_size: 10\n");
  Spec tuned = spec_from(retuned);
  Plan tuned_plan = make_plan(tuned);
  o.approve_all = true;
  EXPECT_EQ(Executor(tuned, tuned_plan, o).run(), RunOutcome::kCompleted);
  EXPECT_EQ(
      pg_.psql(db_, "SELECT spec_text = " + quote_literal(retuned) + " FROM tandem.migrations"),
      "t");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM tandem.events WHERE kind = 'spec_replaced'"), "1");
  EXPECT_EQ(column_type(pg_, db_, "items", "qty"), "bigint");
}

TEST_F(ExecutorTest, PrecheckRefusesADependentViewAndChangesNothing) {
  pg_.psql(db_, "CREATE VIEW item_qty AS SELECT id, qty FROM items");
  Spec spec = spec_from(items_spec());
  Plan plan = make_plan(spec);
  try {
    Executor(spec, plan, options()).run();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    EXPECT_STREQ(e.what(),
                 "migration \"items_qty\" refused by its prechecks; nothing was changed:\n"
                 "  step 1.precheck: view item_qty depends on column qty; tandem cannot change the "
                 "type of a column that a view uses yet: drop it and recreate it after the "
                 "migration");
  }
  EXPECT_EQ(leftovers(pg_, db_, "items"), "");
}

// Issue 16: a refusal parked the migration as failed (exit 4) although
// nothing had changed. Now it records nothing, and once the cause is gone the
// same spec starts as new.
TEST_F(ExecutorTest, PrecheckRefusesAMissingColumnAndRecordsNothing) {
  Spec spec = spec_from(
      "name: nope\noperations:\n  - alter_column_type: {table: items, column: qtty, type: "
      "bigint}\n  - add_column: {table: gone, column: c, type: int, backfill: '1'}\n");
  Plan plan = make_plan(spec);
  try {
    Executor(spec, plan, options()).run();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    EXPECT_STREQ(e.what(),
                 "migration \"nope\" refused by its prechecks; nothing was changed:\n"
                 "  step 1.precheck: column qtty does not exist in table items\n"
                 "  step 2.precheck: table public.gone does not exist");
  }
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM tandem.migrations"), "0");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM tandem.events"), "0");
  pg_.psql(db_,
           "ALTER TABLE items RENAME COLUMN qty TO qtty; CREATE TABLE gone (id int PRIMARY KEY)");
  RunOptions o = options();
  o.approve_all = true;
  EXPECT_EQ(Executor(spec, plan, o).run(), RunOutcome::kCompleted);
}

// Issue 16: a text default ('0') on a column changed to integer failed at
// cutover, after the whole backfill and verification.
TEST_F(ExecutorTest, ADefaultTheNewTypeDoesNotTakeIsRefusedBeforeAnythingRuns) {
  pg_.psql(db_,
           "CREATE TABLE reviews (id int PRIMARY KEY, rating text DEFAULT '0',"
           " stars int DEFAULT 3, at timestamp DEFAULT now(), n int DEFAULT 1 + 1);"
           "INSERT INTO reviews (id) SELECT generate_series(1, 100);");
  Spec refused = spec_from(
      "name: rating\noperations:\n"
      "  - alter_column_type: {table: reviews, column: rating, type: integer,"
      " up: CAST(rating AS integer)}\n");
  Plan plan = make_plan(refused);
  try {
    Executor(refused, plan, options()).run();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    EXPECT_STREQ(e.what(),
                 "migration \"rating\" refused by its prechecks; nothing was changed:\n"
                 "  step 1.precheck: column rating has DEFAULT '0'::text, of type text, which "
                 "integer does not take by assignment: cutover would fail. Drop the default "
                 "(ALTER TABLE reviews ALTER COLUMN rating DROP DEFAULT) and set it again after "
                 "the migration");
  }
  // Constants, functions, operators and SQL value functions the new type
  // takes by assignment go through.
  Spec fine = spec_from(
      "name: widen\nsettings: {lock_timeout: 300ms, retry_backoff: 20ms}\noperations:\n"
      "  - alter_column_type: {table: reviews, column: stars, type: bigint}\n"
      "  - alter_column_type: {table: reviews, column: at, type: timestamptz}\n"
      "  - alter_column_type: {table: reviews, column: n, type: numeric}\n");
  EXPECT_EQ(run_until(fine, pg_.dsn(db_)), RunOutcome::kCompleted);
  pg_.psql(db_, "INSERT INTO reviews (id) VALUES (101)");
  EXPECT_EQ(pg_.psql(db_, "SELECT stars, at IS NOT NULL, n FROM reviews WHERE id = 101"), "3|t|2");
}

TEST_F(ExecutorTest, NotNullMovesToTheNewColumnWithoutAScanAtCutover) {
  Spec spec = spec_from(items_spec());
  Plan plan = make_plan(spec);
  EXPECT_EQ(run_until(spec, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
                     " WHERE attrelid = 'items'::regclass AND attname = 'qty'"),
            "bigint|t");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(*) FROM pg_constraint WHERE conrelid = 'items'::regclass"
                     " AND contype = 'c'"),
            "0");
  try {
    pg_.psql(db_, "INSERT INTO items (id, qty) VALUES (99999, NULL)");
    ADD_FAILURE() << "NULL must still be refused";
  } catch (const std::runtime_error&) {
  }
}

TEST_F(ExecutorTest, SerialColumnKeepsItsSequenceThroughCutoverRollbackAndCleanup) {
  pg_.psql(db_,
           "CREATE TABLE tickets (id bigint PRIMARY KEY, number serial, label text);"
           "INSERT INTO tickets (id, label) SELECT g, 'x' FROM generate_series(1, 1000) g;");
  Spec spec = spec_from(
      "name: tickets\noperations:\n"
      "  - alter_column_type: {table: tickets, column: number, type: bigint}\n");
  Plan plan = make_plan(spec);
  EXPECT_EQ(run_until(spec, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  pg_.psql(db_, "INSERT INTO tickets (id, label) VALUES (1001, 'after cutover')");
  EXPECT_EQ(Executor(spec, plan, options()).rollback(), RollbackOutcome::kRolledBack);
  pg_.psql(db_, "INSERT INTO tickets (id, label) VALUES (1002, 'after rollback')");
  EXPECT_EQ(run_until(spec, pg_.dsn(db_)), RunOutcome::kCompleted);
  pg_.psql(db_, "INSERT INTO tickets (id, label) VALUES (1003, 'after cleanup')");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT string_agg(number::text, ',' ORDER BY id) FROM tickets"
                     " WHERE id > 1000"),
            "1001,1002,1003");
  EXPECT_EQ(column_type(pg_, db_, "tickets", "number"), "bigint");
  EXPECT_EQ(pg_.psql(db_, "SELECT pg_get_serial_sequence('tickets', 'number')"),
            "public.tickets_number_seq");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(DISTINCT number) FROM tickets"), "1003");
}

TEST_F(ExecutorTest, IdentityColumnMovesWithItsNextValue) {
  pg_.psql(db_,
           "CREATE TABLE events (id int PRIMARY KEY,"
           " seq int GENERATED BY DEFAULT AS IDENTITY, body text);"
           "INSERT INTO events (id, body) SELECT g, 'x' FROM generate_series(1, 500) g;");
  Spec spec = spec_from(
      "name: events_seq\noperations:\n"
      "  - alter_column_type: {table: events, column: seq, type: bigint}\n");
  EXPECT_EQ(run_until(spec, pg_.dsn(db_)), RunOutcome::kCompleted);
  pg_.psql(db_, "INSERT INTO events (id, body) VALUES (501, 'new')");
  EXPECT_EQ(pg_.psql(db_, "SELECT seq FROM events WHERE id = 501"), "501");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT attidentity FROM pg_attribute WHERE attrelid = 'events'::regclass"
                     " AND attname = 'seq'"),
            "d");
  EXPECT_EQ(column_type(pg_, db_, "events", "seq"), "bigint");
}

TEST_F(ExecutorTest, ConcurrentUpdatesDuringBackfillAreNeverOverwrittenByStaleCopies) {
  // Small batches and a writer hammering the same rows: if the backfill ever
  // wrote a stale copy, the shadow_read verification would find the mismatch.
  Spec spec = spec_from(items_spec("  batch_size: 50\n"));
  Plan plan = make_plan(spec);
  std::atomic<bool> stop{false};
  std::thread writer = hammer_items(stop);
  RunOptions o = options();
  o.until = Phase::kShadowRead;
  RunOutcome outcome = Executor(spec, plan, o).run();
  stop = true;
  writer.join();
  EXPECT_EQ(outcome, RunOutcome::kReachedUntil);
  EXPECT_EQ(
      pg_.psql(db_, "SELECT sum(mismatches) FROM tandem.checkpoints WHERE step_id = '1.verify'"),
      "0");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM items WHERE _tandem_new_qty IS DISTINCT FROM qty"),
            "0");
}

TEST_F(ExecutorTest, ShadowReadCatchesACorruptedCopyAndStartsOverAfterARepair) {
  Spec spec = spec_from(items_spec("  batch_size: 700\n"));
  Plan plan = make_plan(spec);
  EXPECT_EQ(run_until(spec, pg_.dsn(db_), Phase::kBackfill), RunOutcome::kReachedUntil);
  expect_verify_finds_rows_7_and_4321_corrupted(spec);
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT status, mismatches FROM tandem.steps JOIN tandem.checkpoints"
                     " USING (migration, step_id) WHERE step_id = '1.verify'"),
            "failed|2");
  pg_.psql(db_, "UPDATE items SET qty = qty WHERE id IN (7, 4321)");  // the trigger repairs them
  EXPECT_EQ(run_until(spec, pg_.dsn(db_), Phase::kShadowRead), RunOutcome::kReachedUntil);
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT status, mismatches, rows_done FROM tandem.steps"
                     " JOIN tandem.checkpoints USING (migration, step_id)"
                     " WHERE step_id = '1.verify'"),
            "done|0|5000");
}

// Keeps every progress update of the backfill step (the executor reports one
// at a time, whichever worker committed), and its progress line: the step it
// points to lives only as long as the run's plan.
class BackfillProgress : public ProgressSink {
 public:
  void phase_started(Phase) override {}
  void step_started(const Step&) override {}
  void progress(const ProgressUpdate& u) override {
    if (u.step->kind != StepKind::kBackfill) return;
    lines.push_back(format_progress(u));
    updates.push_back(u);
    updates.back().step = nullptr;
  }
  void step_finished(const Step&, double) override {}
  std::vector<ProgressUpdate> updates;
  std::vector<std::string> lines;
};

TEST_F(ExecutorTest, ParallelWorkersSplitTheKeysAndEachFindsItsOwnMismatches) {
  Spec spec = spec_from(items_spec("  batch_size: 200\n  backfill_workers: 4\n"));
  Plan plan = make_plan(spec);
  std::atomic<bool> stop{false};
  std::thread writer = hammer_items(stop);
  BackfillProgress progress;
  RunOutcome outcome = run_until(spec, pg_.dsn(db_), Phase::kBackfill, &progress);
  stop = true;
  writer.join();
  EXPECT_EQ(outcome, RunOutcome::kReachedUntil);
  // Sixteen ranges, four per worker: progress counts them as they finish.
  ASSERT_FALSE(progress.updates.empty());
  int finished = 0;
  int most_workers = 0;
  for (const auto& u : progress.updates) {
    EXPECT_EQ(u.ranges, 16);
    EXPECT_GE(u.ranges_finished, finished);
    EXPECT_LE(u.workers, 4);
    finished = u.ranges_finished;
    most_workers = std::max(most_workers, u.workers);
  }
  EXPECT_EQ(most_workers, 4);
  EXPECT_EQ(progress.updates.front().ranges_finished, 0);
  EXPECT_EQ(progress.updates.back().ranges_finished, 16);
  EXPECT_EQ(progress.updates.back().rows_done, 5000);
  EXPECT_NE(progress.lines.back().find("16/16 ranges finished"), std::string::npos)
      << progress.lines.back();
  // They tile the keys, each of 312 or 313 (from a sample: every row, at this size).
  EXPECT_EQ(key_ranges_summary(pg_, db_, "1.backfill"), "16|t|5000|t");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT min(rows_done), max(rows_done) FROM tandem.checkpoints"
                     " WHERE step_id = '1.backfill'"),
            "312|313");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM items WHERE _tandem_new_qty IS DISTINCT FROM qty"),
            "0");
  // One row in the first range and one in the last.
  expect_verify_finds_rows_7_and_4321_corrupted(spec);
  pg_.psql(db_, "UPDATE items SET qty = qty WHERE id IN (7, 4321)");  // the trigger repairs them
  EXPECT_EQ(run_until(spec, pg_.dsn(db_), Phase::kShadowRead), RunOutcome::kReachedUntil);
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT status, count(*), sum(mismatches), sum(rows_done) FROM tandem.steps"
                     " JOIN tandem.checkpoints USING (migration, step_id)"
                     " WHERE step_id = '1.verify' GROUP BY status"),
            "done|2|0|5000");  // chunks of ten batches: two ranges' worth
}

// Loses the commits of the first range to finish, once, as a crash or a
// failover does with a commit the server acknowledged (batches commit with
// synchronous_commit off): its checkpoint and its rows go back to before it.
class LoseFirstFinishedRange : public ProgressSink {
 public:
  explicit LoseFirstFinishedRange(std::unique_ptr<Connection> conn) : conn_(std::move(conn)) {}
  void phase_started(Phase) override {}
  void step_started(const Step&) override {}
  void progress(const ProgressUpdate& u) override {
    if (u.step->kind != StepKind::kBackfill || u.ranges_finished == 0 || lost_) return;
    lost_ = true;
    Rows r = conn_->exec(
        "UPDATE tandem.checkpoints SET finished = false, last_key = NULL, rows_done = 0"
        " WHERE (step_id, worker) = (SELECT step_id, worker FROM tandem.checkpoints"
        "   WHERE step_id = '1.backfill' AND finished ORDER BY updated_at DESC LIMIT 1)"
        " RETURNING range_after[1], range_upper[1]");
    range = r.text(0, 0) + ".." + r.text(0, 1);
    conn_->exec(
        "SET session_replication_role = replica;"
        "UPDATE items SET _tandem_new_qty = NULL WHERE id > coalesce(" +
        (r.is_null(0, 0) ? std::string("NULL") : r.text(0, 0)) + ", 0) AND id <= coalesce(" +
        (r.is_null(0, 1) ? std::string("NULL") : r.text(0, 1)) +
        ", 2147483647);"
        "SET session_replication_role = origin");
  }
  void step_finished(const Step&, double) override {}
  std::string range;

 private:
  std::unique_ptr<Connection> conn_;
  bool lost_ = false;
};

// The soak: after an immediate restart, a backfill was marked done with two
// of its eight ranges unfinished on the server (their last batch's commit
// was lost), and NOT NULL validation failed at the step after.
TEST_F(ExecutorTest, AStepIsDoneOnlyWhenTheServerHoldsEveryRangeFinished) {
  Spec spec = spec_from(items_spec("  batch_size: 200\n  backfill_workers: 2\n"));
  LoseFirstFinishedRange lose(pg_.connect(db_));
  EXPECT_EQ(run_until(spec, pg_.dsn(db_), Phase::kBackfill, &lose), RunOutcome::kReachedUntil);
  EXPECT_FALSE(lose.range.empty());
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM items WHERE _tandem_new_qty IS DISTINCT FROM qty"),
            "0")
      << "the rows of range " << lose.range << " were never copied";
  EXPECT_EQ(key_ranges_summary(pg_, db_, "1.backfill"), "8|t|5000|t");
}

TEST_F(ExecutorTest, OneWorkerGoesThroughEveryRangeOfBothStepsOnOneSession) {
  // A new backend pays a page fault for each shared buffer it first touches:
  // a session per range made the backfill slower and the verify after it
  // twice as slow. The default single worker is cut into ranges too (so it
  // can be raised live), and must keep its one session through all of them.
  pg_.psql(db_, "INSERT INTO items SELECT g, g % 100, 'n' FROM generate_series(5001, 60000) g");
  pg_.psql(db_, "ANALYZE items");
  Spec spec = spec_from(items_spec("  batch_size: 200\n"));
  const std::string sessions =
      "SELECT sessions FROM pg_stat_database WHERE datname = current_database()";
  const long long before = std::stoll(pg_.psql(db_, sessions));
  EXPECT_EQ(run_until(spec, pg_.dsn(db_), Phase::kShadowRead), RunOutcome::kReachedUntil);
  // The executor's session and one worker's; the psql that read `before`
  // counts once it has ended. A session per range would be 16 more.
  EXPECT_EQ(std::stoll(pg_.psql(db_, sessions)) - before, 3);
  EXPECT_EQ(key_ranges_summary(pg_, db_, "1.backfill"), "8|t|60000|t");
  EXPECT_EQ(key_ranges_summary(pg_, db_, "1.verify"), "8|t|60000|t");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM items WHERE _tandem_new_qty IS DISTINCT FROM qty"),
            "0");
}

TEST_F(ExecutorTest, AnAutovacuumHoldingTheTableIsCancelledInsteadOfOutwaitingEveryAttempt) {
  // An autovacuum of items that takes a minute: wide dead rows, cost-limited
  // to one page per 100 ms. Its lock conflicts with every DDL step; each
  // attempt would wait out lock_timeout (shorter than deadlock_timeout, so
  // PostgreSQL never cancels the autovacuum itself) with the application
  // queued behind it, and the step would spend its retry budget.
  ServerSetting naptime(pg_, "autovacuum_naptime", "1");
  ASSERT_TRUE(start_slow_autovacuum_of_items(100, "note = repeat('x', 500)"));
  Spec spec = spec_from(items_spec("  retry_budget: 3\n"));
  EXPECT_EQ(run_until(spec, pg_.dsn(db_), Phase::kPrepare), RunOutcome::kReachedUntil);
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT detail->>'table' FROM tandem.events"
                     " WHERE kind = 'autovacuum_cancelled' ORDER BY id LIMIT 1"),
            "public.items");
  // The step that met it took its lock at the first attempt.
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT attempts <= 1 FROM tandem.steps"
                     " WHERE step_id = '1.add_shadow_column'"),
            "t");
}

TEST_F(ExecutorTest, AnAutovacuumItMayNotCancelIsWaitedOutWithoutQueueingALock) {
  // tandemd as a role that owns the table but may not signal autovacuum
  // workers (not a superuser): it waits for the autovacuum to end instead of
  // queueing lock requests that time out, a few seconds here.
  const std::string dsn = dsn_of_items_owner("tandem_owner");
  ServerSetting naptime(pg_, "autovacuum_naptime", "1");
  ASSERT_TRUE(start_slow_autovacuum_of_items(20, "qty = qty"));
  Spec spec = spec_from(items_spec("  retry_budget: 3\n"));
  EXPECT_EQ(run_until(spec, dsn, Phase::kPrepare), RunOutcome::kReachedUntil);
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM tandem.events WHERE kind = 'autovacuum_cancelled'"),
            "0");
  // No attempt timed out on its lock: the step waited before asking for it.
  EXPECT_EQ(
      pg_.psql(db_, "SELECT attempts FROM tandem.steps WHERE step_id = '1.add_shadow_column'"),
      "0");
}

TEST_F(ExecutorTest, ARoleThatMayReadStatisticsSaysHowTheAutovacuumItWaitsForGoes) {
  // With pg_read_all_stats (common for a monitoring-minded role) tandemd
  // sees the autovacuum, may still not cancel it, and reads its progress.
  const std::string dsn = dsn_of_items_owner("tandem_reader", "pg_read_all_stats");
  ServerSetting naptime(pg_, "autovacuum_naptime", "1");
  ASSERT_TRUE(start_slow_autovacuum_of_items(20, "qty = qty"));
  Spec spec = spec_from(items_spec("  retry_budget: 3\n"));
  ::testing::internal::CaptureStdout();  // the default logger's sink
  std::string failure;
  try {
    EXPECT_EQ(run_until(spec, dsn, Phase::kPrepare), RunOutcome::kReachedUntil);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  const std::string log = ::testing::internal::GetCapturedStdout();
  ASSERT_EQ(failure, "") << log;
  EXPECT_NE(log.find("waiting for the autovacuum of public.items (pid "), std::string::npos) << log;
  EXPECT_NE(log.find("tandemd's role may not cancel it"), std::string::npos) << log;
  EXPECT_NE(log.find("; its phase: "), std::string::npos) << log;
  EXPECT_NE(log.find(" heap blocks scanned ("), std::string::npos) << log;
  EXPECT_EQ(
      pg_.psql(db_, "SELECT attempts FROM tandem.steps WHERE step_id = '1.add_shadow_column'"),
      "0");
}

TEST_F(ExecutorTest, ABackfillCheckpointedBeforeStateSchemaFiveResumesAsOneRange) {
  Spec spec = spec_from(items_spec("  batch_size: 500\n"));
  ASSERT_EQ(run_until(spec, pg_.dsn(db_), Phase::kBackfill), RunOutcome::kReachedUntil);
  // Make it look like a tandemd of state schema 4 stopped halfway: the rows
  // past key 2500 not copied yet (-1), the checkpoint at 2500, no range columns.
  pg_.psql(db_,
           "SET session_replication_role = replica;"
           "UPDATE items SET _tandem_new_qty = -1 WHERE id > 2500;"
           "UPDATE tandem.steps SET status = 'running' WHERE step_id = '1.backfill';"
           "UPDATE tandem.migrations SET phase = 3;"
           "DELETE FROM tandem.checkpoints WHERE step_id = '1.backfill' AND worker > 0;"
           "UPDATE tandem.checkpoints SET last_key = '{2500}', rows_done = 2500"
           " WHERE step_id = '1.backfill';"
           "ALTER TABLE tandem.checkpoints DROP COLUMN range_after, DROP COLUMN range_upper,"
           " DROP COLUMN finished;"
           "DELETE FROM tandem.schema_version WHERE version >= 5;");
  EXPECT_EQ(run_until(spec, pg_.dsn(db_), Phase::kShadowRead), RunOutcome::kReachedUntil);
  EXPECT_EQ(pg_.psql(db_, "SELECT max(version) FROM tandem.schema_version"), "6");
  // Only the second half was copied again, and all of it was.
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(*), sum(rows_done), bool_and(finished) FROM tandem.checkpoints"
                     " WHERE step_id = '1.backfill'"),
            "1|5000|t");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM items WHERE _tandem_new_qty IS DISTINCT FROM qty"),
            "0");
}

TEST_F(ExecutorTest, AWorkerThatFailsStopsTheOthersAndItsErrorIsReported) {
  // One value in the last range does not fit the new type: that worker fails
  // for good, the others stop after their batch, and the run reports it.
  pg_.psql(db_, "UPDATE items SET qty = 100000 WHERE id = 4500");
  Spec spec = spec_from(
      "name: items_small\nsettings:\n  batch_size: 50\n  backfill_workers: 4\n"
      "operations:\n  - alter_column_type: {table: items, column: qty, type: smallint}\n");
  try {
    run_until(spec, pg_.dsn(db_), Phase::kBackfill);
    FAIL() << "the backfill must fail";
  } catch (const StepFailedError& e) {
    EXPECT_EQ(e.sqlstate(), "22003");
    // Sixteen ranges of 312 or 313 keys: key 4500 is in range 14.
    EXPECT_NE(std::string(e.what()).find("batch of step 1.backfill (range 14, worker "),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(pg_.psql(db_, "SELECT state, last_sqlstate FROM tandem.migrations"), "failed|22003");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT finished FROM tandem.checkpoints"
                     " WHERE step_id = '1.backfill' AND worker = 14"),
            "f");
  // No worker's session is left behind.
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(*) FROM pg_stat_activity"
                     " WHERE application_name LIKE 'tandemd items_small %'"),
            "0");
}

TEST_F(ExecutorTest, RaisingAndLoweringBackfillWorkersLiveStartsAndRetiresWorkers) {
  // One worker (the default) to begin with, and one-row batches with long
  // rests, so each of the eight ranges (the least a step is cut into) keeps
  // a worker busy for seconds: a batch of five rows took about a millisecond
  // here, and a worker moved a range's 625 rows in under two seconds.
  Spec spec = spec_from(items_spec("  batch_size: 1\n  batch_rest_percent: 1000\n"));
  Plan plan = make_plan(spec);
  RunControl control(spec.settings);
  RunOptions o = options();
  o.until = Phase::kBackfill;
  o.control = &control;
  auto run = std::async(std::launch::async, [&] { return Executor(spec, plan, o).run(); });
  auto rows_by_range = [&] {
    std::vector<long long> out;
    std::istringstream text(pg_.psql(db_,
                                     "SELECT string_agg(rows_done::text, ' ' ORDER BY worker)"
                                     " FROM tandem.checkpoints WHERE step_id = '1.backfill'"));
    for (long long n; text >> n;) out.push_back(n);
    return out;
  };
  // Ranges that moved in the window: a worker may finish one and take the
  // next meanwhile, so one worker moves one range or two.
  std::string seen;  // rows by range before and after the last window
  auto ranges_moving_in = [&](std::chrono::milliseconds window) {
    auto before = rows_by_range();
    std::this_thread::sleep_for(window);
    auto after = rows_by_range();
    int moving = 0;
    seen.clear();
    for (size_t i = 0; i < after.size() && i < before.size(); ++i) {
      moving += after[i] > before[i];
      seen += std::to_string(before[i]) + "->" + std::to_string(after[i]) + " ";
    }
    return moving;
  };
  const std::string worker_sessions =
      "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
      " AND application_name LIKE 'tandemd % worker %'";
  auto set = [&](const std::function<void(Settings&)>& change) {
    Settings st = control.settings();
    change(st);
    control.set_settings(st);
  };
  ASSERT_TRUE(
      wait_for("SELECT count(*) > 0 FROM tandem.checkpoints"
               " WHERE step_id = '1.backfill' AND rows_done > 0",
               "t", 20s));
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM tandem.checkpoints WHERE step_id = '1.backfill'"),
            "8");
  EXPECT_TRUE(wait_for(worker_sessions, "1", 5s));
  // Raised: three more workers start, on the next ranges.
  set([](Settings& st) { st.backfill_workers = 4; });
  EXPECT_TRUE(wait_for(worker_sessions, "4", 5s));
  EXPECT_GE(ranges_moving_in(1s), 4) << seen;
  // Lowered: three retire after their batch, and their ranges wait.
  set([](Settings& st) { st.backfill_workers = 1; });
  EXPECT_TRUE(wait_for(worker_sessions, "1", 5s));
  const int moving = ranges_moving_in(1s);
  EXPECT_GE(moving, 1) << seen;
  EXPECT_LE(moving, 2) << seen;
  // Faster, to the end: the retired workers' ranges are finished too.
  set([](Settings& st) {
    st.backfill_workers = 2;
    st.batch_size = 200;
    st.batch_rest_percent = 0;
  });
  EXPECT_EQ(run.get(), RunOutcome::kReachedUntil);
  EXPECT_EQ(key_ranges_summary(pg_, db_, "1.backfill"), "8|t|5000|t");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM items WHERE _tandem_new_qty IS DISTINCT FROM qty"),
            "0");
  EXPECT_EQ(pg_.psql(db_, worker_sessions), "0");
}

TEST_F(ExecutorTest, WorkersRaisedWhenNoRangeIsLeftSplitTheRangesStillBeingWalked) {
  // Batches of 2000 rows cut the 5000 keys into two ranges; the step starts
  // held back by a manual throttle, and before it goes, batches become one
  // row with long rests and four workers are allowed. Two ranges can keep
  // only two workers busy: the other two get theirs by splitting.
  Spec spec = spec_from(items_spec("  batch_size: 2000\n"));
  Plan plan = make_plan(spec);
  RunControl control(spec.settings);
  control.throttle(std::nullopt);
  RunOptions o = options();
  o.until = Phase::kBackfill;
  o.control = &control;
  auto run = std::async(std::launch::async, [&] { return Executor(spec, plan, o).run(); });
  const std::string ranges = "SELECT count(*) FROM tandem.checkpoints WHERE step_id = '1.backfill'";
  ASSERT_TRUE(wait_for(ranges, "2", 20s));
  auto set = [&](const std::function<void(Settings&)>& change) {
    Settings st = control.settings();
    change(st);
    control.set_settings(st);
  };
  set([](Settings& st) {
    st.batch_size = 1;
    st.batch_rest_percent = 1000;
    st.backfill_workers = 4;
  });
  control.lift_throttle();
  EXPECT_TRUE(
      wait_for("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
               " AND application_name LIKE 'tandemd % worker %'",
               "4", 10s));
  EXPECT_TRUE(
      wait_for("SELECT count(*) >= 4 FROM tandem.checkpoints"
               " WHERE step_id = '1.backfill' AND rows_done > 0",
               "t", 10s));
  // Faster, to the end.
  set([](Settings& st) {
    st.batch_size = 200;
    st.batch_rest_percent = 0;
  });
  EXPECT_EQ(run.get(), RunOutcome::kReachedUntil);
  const int count = std::stoi(pg_.psql(db_, ranges));
  EXPECT_GE(count, 4);
  // However many pieces, they tile the keys and hold every row once.
  EXPECT_EQ(key_ranges_summary(pg_, db_, "1.backfill"), std::to_string(count) + "|t|5000|t");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM items WHERE _tandem_new_qty IS DISTINCT FROM qty"),
            "0");
}

TEST_F(ExecutorTest, AFailedConcurrentIndexBuildIsDroppedAndRebuilt) {
  // CREATE INDEX CONCURRENTLY commits an INVALID index first, then waits for
  // every transaction that writes the table; when that wait hits the lock
  // timeout it fails and leaves the INVALID index behind. The retry must drop
  // it and build again.
  Spec spec = spec_from(
      "name: idx\nsettings:\n  lock_timeout: 150ms\n  retry_budget: 100\n"
      "  retry_backoff: 20ms\n  retry_backoff_max: 50ms\noperations:\n"
      "  - sql:\n      phase: prepare\n      transaction: false\n"
      "      up: CREATE INDEX CONCURRENTLY items_note ON items (note)\n"
      "      down: DROP INDEX CONCURRENTLY IF EXISTS items_note\n");
  auto blocker = pg_.connect(db_);
  blocker->exec("BEGIN");
  blocker->exec("UPDATE items SET note = 'held' WHERE id = 1");  // a writer, still open
  auto run = std::async(std::launch::async,
                        [&] { return run_until(spec, pg_.dsn(db_), Phase::kPrepare); });
  // Wait until an attempt has left an INVALID index behind, and a later
  // attempt (which finds it) has failed too: the blocker ends only then, so
  // the attempt that succeeds is one that had an INVALID index to repair.
  const bool saw_invalid = wait_for(
      "SELECT count(*) FROM pg_index WHERE NOT indisvalid AND indexrelid = "
      "to_regclass('items_note')",
      "1", 15s);
  const bool retried =
      wait_for("SELECT attempts >= 2 FROM tandem.steps WHERE step_id = '1.sql'", "t", 15s);
  blocker->exec("COMMIT");
  EXPECT_EQ(run.get(), RunOutcome::kCompleted);  // the later phases have no steps
  EXPECT_TRUE(saw_invalid) << "no attempt left an INVALID index: the test proves nothing";
  EXPECT_TRUE(retried);
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT string_agg(indexrelid::regclass || ' ' || indisvalid, ', ')"
                     " FROM pg_index WHERE indrelid = 'items'::regclass AND NOT indisprimary"),
            "items_note true");
  EXPECT_EQ(pg_.psql(db_, "SELECT status FROM tandem.steps WHERE step_id = '1.sql'"), "done");
  // Rolling back drops it outside a transaction, as it must.
  Plan plan = make_plan(spec);
  RunOptions o = options();
  EXPECT_EQ(Executor(spec, plan, o).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM pg_class WHERE relname = 'items_note'"), "0");
}

TEST_F(ExecutorTest, ConcurrentIndexFoundCompleteAfterACrashIsNotBuiltAgain) {
  Spec spec = spec_from(
      "name: idx2\noperations:\n"
      "  - sql:\n      phase: prepare\n      transaction: false\n"
      "      up: CREATE INDEX CONCURRENTLY items_qty_idx ON items (qty)\n");
  // As if a run built the index and died before recording it.
  pg_.psql(db_, "CREATE INDEX items_qty_idx ON items (qty)");
  EXPECT_EQ(run_until(spec, pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(*) FROM tandem.events WHERE kind = 'step_done'"
                     " AND detail->>'found_complete' = 'true'"),
            "1");
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
  EXPECT_TRUE(fails([&] { store.mark_step(*c, "1.nothing", "done"); }));
  EXPECT_TRUE(fails([&] { StateStore("gone").set_state(*c, "running", Phase::kBackfill); }));
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

TEST_F(ExecutorTest, BatchesFollowTheKeysOwnOrderNotTheirText) {
  // 1..5000: in text order "1000" < "999", so a walk that sorted the text
  // would cut batches of the wrong size.
  auto conn = connect_postgres(pg_.dsn(db_), "walker test");
  KeysetWalker ints("public.items", walk_key_columns(*conn, "public.items"));
  EXPECT_EQ(ints.upper_bound(*conn, {{}, {}}, 1000), std::vector<std::string>{"1000"});
  EXPECT_EQ(ints.upper_bound(*conn, {{"995"}, {}}, 10), std::vector<std::string>{"1005"});
  EXPECT_TRUE(ints.upper_bound(*conn, {{"4990"}, {}}, 11).empty());
  // Within a worker's range: not past its upper bound.
  EXPECT_EQ(ints.upper_bound(*conn, {{"995"}, {"2000"}}, 10), std::vector<std::string>{"1005"});
  EXPECT_TRUE(ints.upper_bound(*conn, {{"995"}, {"1000"}}, 10).empty());
  // Split points: every row is in a sample of a table this small.
  EXPECT_EQ(ints.split_points(*conn, 5000, 4),
            (std::vector<std::vector<std::string>>{{"1250"}, {"2500"}, {"3750"}}));
  EXPECT_TRUE(ints.split_points(*conn, 5000, 1).empty());
  // Every batch of a whole walk has exactly batch_size rows but the last.
  std::vector<std::string> after;
  std::vector<long long> sizes;
  for (;;) {
    auto upper = ints.upper_bound(*conn, {after, {}}, 700);
    KeyRange range{after, upper};
    sizes.push_back(std::stoll(
        conn->exec("SELECT count(*) FROM public.items AS _row WHERE " + ints.range_predicate(range),
                   [&] {
                     auto p = range.after;
                     p.insert(p.end(), upper.begin(), upper.end());
                     return p;
                   }())
            .text(0, 0)));
    if (upper.empty()) break;
    after = upper;
  }
  EXPECT_EQ(sizes, (std::vector<long long>{700, 700, 700, 700, 700, 700, 700, 100}));

  pg_.psql(db_,
           "CREATE TABLE pairs (a int, b int, PRIMARY KEY (a, b));"
           "INSERT INTO pairs SELECT a, b FROM generate_series(1, 12) a, generate_series(1, 12) b");
  KeysetWalker pairs("public.pairs", walk_key_columns(*conn, "public.pairs"));
  EXPECT_EQ(pairs.upper_bound(*conn, {{}, {}}, 13), (std::vector<std::string>{"2", "1"}));
  EXPECT_EQ(pairs.upper_bound(*conn, {{"9", "12"}, {}}, 12),
            (std::vector<std::string>{"10", "12"}));
  EXPECT_EQ(pairs.split_points(*conn, 144, 2),
            (std::vector<std::vector<std::string>>{{"6", "12"}}));
  // Too few rows to tell 20 ranges apart: no split.
  EXPECT_TRUE(pairs.split_points(*conn, 144, 20).empty());
}

TEST_F(ExecutorTest, ForwardTriggerFiresOnWritesOfTheColumnOrOnEveryUpdateBehindAnotherTrigger) {
  Spec spec = spec_from(items_spec());
  ASSERT_EQ(run_until(spec, pg_.dsn(db_), Phase::kDualWrite), RunOutcome::kReachedUntil);
  const std::string attrs = "SELECT tgattr::text FROM pg_trigger WHERE tgname LIKE 'zz_tandem%'";
  EXPECT_EQ(pg_.psql(db_, attrs), "2");  // qty only
  // An UPDATE that does not assign qty leaves the (not yet copied) shadow alone.
  pg_.psql(db_, "UPDATE items SET note = 'x' WHERE id = 1");
  EXPECT_EQ(pg_.psql(db_, "SELECT _tandem_new_qty IS NULL FROM items WHERE id = 1"), "t");
  pg_.psql(db_, "UPDATE items SET qty = 7 WHERE id = 1; INSERT INTO items VALUES (9001, 8, 'n')");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT string_agg(_tandem_new_qty::text, ',' ORDER BY id) FROM items"
                     " WHERE id IN (1, 9001)"),
            "7,8");
  Plan plan = make_plan(spec);
  Executor back(spec, plan, options());
  ASSERT_EQ(back.rollback(), RollbackOutcome::kRolledBack);

  // An application trigger that changes qty behind an UPDATE naming only note.
  pg_.psql(db_,
           "CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS"
           " $$ BEGIN NEW.qty := NEW.qty + 1; RETURN NEW; END $$;"
           "CREATE TRIGGER a_bump BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION bump()");
  ASSERT_EQ(run_until(spec, pg_.dsn(db_), Phase::kDualWrite), RunOutcome::kReachedUntil);
  EXPECT_EQ(pg_.psql(db_, attrs), "");  // every UPDATE
  pg_.psql(db_, "UPDATE items SET note = 'y' WHERE id = 2");
  EXPECT_EQ(pg_.psql(db_, "SELECT qty, _tandem_new_qty FROM items WHERE id = 2"), "3|3");
}

}  // namespace
}  // namespace tandem::testing
