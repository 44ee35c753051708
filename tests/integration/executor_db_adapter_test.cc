// The database adapter against a real server: SQLSTATEs kept, session limits.
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

}  // namespace
}  // namespace tandem::testing
