// The autovacuum guard: cancelled, waited out, described.
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

}  // namespace
}  // namespace tandem::testing
