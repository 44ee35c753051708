// Resume and refusals: changed operations, prechecks, state schema upgrades,
// half-done concurrent index builds.
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
                 "  step 1.precheck: view item_qty uses column qty; tandem cannot carry it over "
                 "to the new column: drop it and create it again after the migration");
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
  EXPECT_EQ(pg_.psql(db_, "SELECT max(version) FROM tandem.schema_version"),
            std::to_string(state_schema_versions().size()));
  // Only the second half was copied again, and all of it was.
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(*), sum(rows_done), bool_and(finished) FROM tandem.checkpoints"
                     " WHERE step_id = '1.backfill'"),
            "1|5000|t");
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

}  // namespace
}  // namespace tandem::testing
