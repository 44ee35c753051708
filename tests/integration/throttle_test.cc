// Throttle signals against a real PostgreSQL: a streaming standby that stops
// replaying (on an otherwise idle primary), a throttle query, a daily window,
// and a critical threshold that pauses the migration without losing work.
#include "engine/throttle.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "engine/state_store.h"
#include "spec/settings.h"
#include "support/scenario.h"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;

class ThrottleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = pg_.create_database("thr");
    pg_.psql(db_,
             "CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL);"
             "INSERT INTO items SELECT g, g % 100 FROM generate_series(1, 20000) g;"
             "ANALYZE items;");
  }
  // Small batches: the backfill takes a few seconds, long enough to be held.
  static std::string spec_text(const std::string& settings) {
    return "name: items_qty\n"
           "settings:\n"
           "  batch_size: 100\n"
           "  retry_backoff: 20ms\n" +
           settings +
           "operations:\n"
           "  - alter_column_type: {table: items, column: qty, type: bigint}\n";
  }
  RunOptions options(const std::atomic<bool>* stop = nullptr) const {
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    o.actor = "test";
    o.until = Phase::kBackfill;
    o.stop = stop;
    return o;
  }
  // Through prepare and dual_write, so the standby has the new schema; then
  // the standby stops replaying.
  void through_dual_write_then_pause(const Spec& spec, const Plan& plan, const PgStandby& standby) {
    RunOptions o = options();
    o.until = Phase::kDualWrite;
    ASSERT_EQ(Executor(spec, plan, o).run(), RunOutcome::kReachedUntil);
    standby.pause_replay();
  }
  // Whether the replica lag reads under 0.3 s within 30 s.
  bool caught_up() const {
    auto conn = pg_.connect(db_);
    Settings watch;
    watch.throttle_replica_lag = 100ms;
    for (int i = 0; i < 300; ++i) {
      if (read_throttle_signals(*conn, watch).replica_lag_seconds <= 0.3) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }
  long long rows_done() const {
    std::string v =
        pg_.psql(db_, "SELECT sum(rows_done) FROM tandem.checkpoints WHERE step_id = '1.backfill'");
    return v.empty() ? 0 : std::stoll(v);
  }
  // rows_done once it has stayed the same for `quiet`, or -1 if it kept moving for 20s.
  long long settled(std::chrono::milliseconds quiet) const {
    long long last = -1;
    auto since = std::chrono::steady_clock::now();
    for (auto end = since + 20s; std::chrono::steady_clock::now() < end;) {
      long long now = rows_done();
      if (now != last) {
        last = now;
        since = std::chrono::steady_clock::now();
      } else if (std::chrono::steady_clock::now() - since >= quiet) {
        return now;
      }
      std::this_thread::sleep_for(100ms);
    }
    return -1;
  }

  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

TEST_F(ThrottleTest, AStandbyThatStopsReplayingHoldsTheBackfillOnAnIdlePrimary) {
  PgStandby standby(pg_);
  // Resting ten times each batch's duration (as below): without it, on a busy
  // machine the backfill sometimes finished before the lag crossed 100 ms.
  Spec spec = spec_from(spec_text("  throttle_replica_lag: 100ms\n  batch_rest_percent: 1000\n"));
  Plan plan = make_plan(spec);
  ASSERT_NO_FATAL_FAILURE(through_dual_write_then_pause(spec, plan, standby));
  std::atomic<bool> stop{false};
  auto run =
      std::async(std::launch::async, [&] { return Executor(spec, plan, options(&stop)).run(); });
  // Nothing else writes: only tandem's heartbeat shows the standby falling behind.
  long long held = settled(1500ms);
  EXPECT_GE(held, 0) << "the backfill never stopped moving";
  EXPECT_LT(held, 20000);
  auto lag = pg_.connect(db_);
  Settings watch;
  watch.throttle_replica_lag = 100ms;
  ThrottleReadings r = read_throttle_signals(*lag, watch);
  EXPECT_EQ(r.replicas, 1);
  EXPECT_GT(r.replica_lag_seconds, 1.0);
  EXPECT_EQ(decide_throttle(watch, r).reason, "replica_lag");

  standby.resume_replay();
  ASSERT_EQ(run.wait_for(60s), std::future_status::ready);
  EXPECT_EQ(run.get(), RunOutcome::kReachedUntil);
  EXPECT_EQ(rows_done(), 20000);
  // Caught up: the lag reads as (nearly) nothing again.
  EXPECT_TRUE(caught_up());
  EXPECT_EQ(standby.psql(db_, "SELECT count(*) FROM items WHERE _tandem_new_qty IS NULL"), "0");
}

TEST_F(ThrottleTest, ACriticalReplicaLagPausesTheMigrationAndARerunFinishesIt) {
  PgStandby standby(pg_);
  // Resting ten times each batch's duration: the backfill takes seconds, far
  // longer than the lag needs to cross the threshold once replay stops (with
  // twice, it sometimes finished first on a worker session).
  Spec spec = spec_from(spec_text("  critical_replica_lag: 500ms\n  batch_rest_percent: 1000\n"));
  Plan plan = make_plan(spec);
  ASSERT_NO_FATAL_FAILURE(through_dual_write_then_pause(spec, plan, standby));
  Executor paused(spec, plan, options());
  ::testing::internal::CaptureStdout();  // the default logger's sink
  EXPECT_EQ(paused.run(), RunOutcome::kPaused);
  const std::string log = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(log.find("[error] ALERT: migration items_qty paused: replica lag "), std::string::npos)
      << log;
  EXPECT_NE(paused.pause_reason().find("over critical_replica_lag 500ms"), std::string::npos)
      << paused.pause_reason();
  EXPECT_EQ(
      pg_.psql(db_, "SELECT detail->>'reason' FROM tandem.events WHERE kind = 'critical_pause'"),
      "replica_lag");
  long long at_pause = rows_done();
  EXPECT_LT(at_pause, 20000);

  standby.resume_replay();
  // Until the standby replays what it missed, the lag is still critical.
  ASSERT_TRUE(caught_up());
  EXPECT_EQ(Executor(spec, plan, options()).run(), RunOutcome::kReachedUntil);
  EXPECT_EQ(rows_done(), 20000);
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM items WHERE _tandem_new_qty IS DISTINCT FROM qty"),
            "0");
}

TEST_F(ThrottleTest, AThrottleQueryHoldsTheBackfillWhileItSaysSoOrCannotAnswer) {
  Spec spec = spec_from(spec_text("  throttle_query: SELECT busy FROM ops_flags\n"));
  Plan plan = make_plan(spec);
  auto run = std::async(std::launch::async, [&] { return Executor(spec, plan, options()).run(); });
  // The table does not exist yet: a query that fails holds the backfill.
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(rows_done(), 0);
  // Table and row in one transaction: psql -f commits each statement, and
  // an empty table between the two answers "not busy" (a batch then ran).
  pg_.psql(db_,
           "BEGIN; CREATE TABLE ops_flags (busy boolean); INSERT INTO ops_flags VALUES (true);"
           " COMMIT;");
  std::this_thread::sleep_for(1000ms);
  EXPECT_EQ(rows_done(), 0);
  pg_.psql(db_, "UPDATE ops_flags SET busy = false");
  ASSERT_EQ(run.wait_for(60s), std::future_status::ready);
  EXPECT_EQ(run.get(), RunOutcome::kReachedUntil);
  EXPECT_EQ(rows_done(), 20000);
}

TEST_F(ThrottleTest, AWalRateCapHoldsTheBackfillToItAndNamesTheReason) {
  // 200,000 rows in 5000-row batches write about 55 MB of WAL in under a
  // second; capped at 8 MB/s the backfill is held back to about that on
  // average, and still copies every row.
  pg_.psql(db_,
           "INSERT INTO items SELECT g, g % 100 FROM generate_series(20001, 200000) g;"
           "ANALYZE items");
  Spec spec = spec_from(
      "name: items_qty\nsettings:\n  throttle_wal_rate_mb: 8\noperations:\n"
      "  - alter_column_type: {table: items, column: qty, type: bigint}\n");
  Plan plan = make_plan(spec);
  RunOptions o = options();
  o.until = Phase::kDualWrite;
  ASSERT_EQ(Executor(spec, plan, o).run(), RunOutcome::kReachedUntil);
  const std::string from = pg_.psql(db_, "SELECT pg_current_wal_lsn()");
  ::testing::internal::CaptureStdout();  // the default logger's sink
  const auto t0 = std::chrono::steady_clock::now();
  const RunOutcome outcome = Executor(spec, plan, options()).run();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string log = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(outcome, RunOutcome::kReachedUntil);
  EXPECT_EQ(rows_done(), 200000);
  EXPECT_NE(log.find("items_qty: throttled: WAL written "), std::string::npos) << log;
  EXPECT_NE(log.find(" MB ahead of throttle_wal_rate_mb 8 ("), std::string::npos) << log;
  const double mb = std::stod(
      pg_.psql(db_, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '" + from + "') / 1048576.0"));
  // Uncapped it writes some 50 MB/s; capped, about 9–11 MB/s here (the cap,
  // plus the first second's budget and the last batches before a hold, over
  // a short run); a slower machine only lowers it.
  EXPECT_LT(mb / seconds, 16.0) << mb << " MB of WAL in " << seconds << " s\n" << log;
  EXPECT_GT(mb, 30.0) << "too little WAL for the cap to matter: the test proves nothing";
}

TEST_F(ThrottleTest, TheApplicationsWalHoldsTheBackfillWhichGoesOnSoonAfterItQuietsDown) {
  // The cap is on the server's WAL, not tandem's: while the application alone
  // writes more than the cap the backfill holds; once it stops, the backfill
  // goes on within a few seconds (it does not repay the WAL the application
  // wrote while it held) and finishes.
  pg_.psql(db_,
           "CREATE TABLE noise (id bigserial PRIMARY KEY, body text);"
           "INSERT INTO items SELECT g, g % 100 FROM generate_series(20001, 200000) g;"
           "ANALYZE items");
  Spec spec = spec_from(spec_text("  throttle_wal_rate_mb: 4\n"));
  Plan plan = make_plan(spec);
  RunOptions o = options();
  o.until = Phase::kDualWrite;
  ASSERT_EQ(Executor(spec, plan, o).run(), RunOutcome::kReachedUntil);
  std::atomic<bool> quiet{false};
  std::thread app([&] {
    auto c = pg_.connect(db_);
    // Rows of 1,920 bytes, under the size PostgreSQL compresses: about half
    // a MB of WAL a statement, 40 statements a second (if it keeps up).
    auto next = std::chrono::steady_clock::now();
    while (!quiet) {
      c->exec(
          "INSERT INTO noise (body) SELECT repeat(md5(g::text), 60)"
          " FROM generate_series(1, 250) g");
      std::this_thread::sleep_until(next += 25ms);
    }
  });
  std::this_thread::sleep_for(500ms);
  const std::string from = pg_.psql(db_, "SELECT pg_current_wal_lsn()");
  const auto t0 = std::chrono::steady_clock::now();
  ::testing::internal::CaptureStdout();  // the default logger's sink
  auto run = std::async(std::launch::async, [&] { return Executor(spec, plan, options()).run(); });
  // The first second's budget lets some batches through; then nothing moves.
  std::this_thread::sleep_for(1500ms);
  const long long early = rows_done();
  std::this_thread::sleep_for(3s);
  const long long late = rows_done();
  const double app_mb_per_s =
      std::stod(pg_.psql(
          db_, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '" + from + "') / 1048576.0")) /
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  quiet = true;
  app.join();
  const auto stopped = std::chrono::steady_clock::now();
  long long resumed_after_ms = -1;
  for (auto end = stopped + 30s; resumed_after_ms < 0 && std::chrono::steady_clock::now() < end;
       std::this_thread::sleep_for(50ms)) {
    if (rows_done() > late) {
      resumed_after_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - stopped)
                             .count();
    }
  }
  ASSERT_EQ(run.wait_for(60s), std::future_status::ready);
  const std::string log = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(run.get(), RunOutcome::kReachedUntil);
  EXPECT_GT(app_mb_per_s, 8.0) << "the application wrote too little WAL for the test to prove "
                                  "anything";
  EXPECT_EQ(late, early) << "the backfill moved while the application alone was over the cap";
  EXPECT_LT(late, 200000);
  EXPECT_NE(log.find("items_qty: throttled: WAL written "), std::string::npos) << log;
  // The application's WAL while the backfill held adds two seconds of the
  // cap to the debt at most; repaying all of it would take four times as
  // long as the application ran over the cap.
  EXPECT_GE(resumed_after_ms, 0) << "the backfill did not go on after the application stopped";
  EXPECT_LT(resumed_after_ms, 8000) << app_mb_per_s << " MB/s from the application";
  EXPECT_EQ(rows_done(), 200000);
}

TEST_F(ThrottleTest, SlowCommitsHoldTheBackfillUntilTheyAreQuickAgain) {
  // Commits that wait 100 ms for their WAL flush (commit_delay, which
  // PostgreSQL applies only with fsync on): the batches, which commit without
  // waiting for the flush, would go on as if nothing were wrong.
  // throttle_commit_latency's probe commits as the application does, so the
  // backfill holds until commits are quick again, then finishes.
  Spec spec = spec_from(spec_text("  throttle_commit_latency: 50ms\n"));
  Plan plan = make_plan(spec);
  RunOptions o = options();
  o.until = Phase::kDualWrite;
  ASSERT_EQ(Executor(spec, plan, o).run(), RunOutcome::kReachedUntil);
  // For the sessions tandem opens from now on: a delay before every flush.
  pg_.psql(db_, "ALTER DATABASE " + db_ + " SET commit_delay = 100000;" + "ALTER DATABASE " + db_ +
                    " SET commit_siblings = 0");
  // Server-wide, and back off when the test ends. No autovacuum meanwhile:
  // an autovacuum worker's commit in this database sleeps 100 ms too, holding
  // the WAL flush, and a probe that arrives during that sleep rides on its
  // flush and can be quick. A quick probe before the first hold lets batches
  // through (once in CI: 14,400 rows moved); after it, the hold waits for
  // three in a row (CommitLatencyHold).
  ServerSetting no_autovacuum(pg_, "autovacuum", "off");
  auto fsync = std::make_unique<ServerSetting>(pg_, "fsync", "on");
  struct Reasons : ProgressSink {
    void phase_started(Phase) override {}
    void step_started(const Step&) override {}
    void progress(const ProgressUpdate&) override {}
    void step_finished(const Step&, double) override {}
    void throttling(const std::string& reason, double) override {
      if (reason == "commit_latency") held = true;
    }
    std::atomic<bool> held{false};
  } reasons;
  RunOptions watched = options();
  watched.progress = &reasons;
  ::testing::internal::CaptureStdout();  // the default logger's sink
  auto run = std::async(std::launch::async, [&] { return Executor(spec, plan, watched).run(); });
  for (int i = 0; i < 600 && !reasons.held; ++i) std::this_thread::sleep_for(50ms);
  std::this_thread::sleep_for(2s);
  const bool seen = reasons.held;
  const long long held = rows_done();
  fsync.reset();  // commit_delay does nothing without fsync: commits are quick again
  ASSERT_EQ(run.wait_for(60s), std::future_status::ready);
  const std::string log = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(run.get(), RunOutcome::kReachedUntil);
  EXPECT_TRUE(seen) << "never held for commit_latency\n" << log;
  EXPECT_EQ(held, 0) << "the backfill moved while every commit waited 100 ms\n" << log;
  EXPECT_NE(log.find("items_qty: throttled: a one-row commit took "), std::string::npos) << log;
  EXPECT_NE(log.find(" ms, over throttle_commit_latency 50ms"), std::string::npos) << log;
  EXPECT_EQ(rows_done(), 20000);
}

TEST_F(ThrottleTest, HeartbeatsOlderThanAnHourArePrunedAndTheRecentOnesKept) {
  auto conn = pg_.connect(db_);
  StateStore::ensure_schema(*conn);
  // In WAL order, as tandem writes them: 5000 two hours old, 5 from the
  // last minutes.
  conn->exec(
      "INSERT INTO tandem.heartbeat SELECT now() - interval '2 hours' + g * interval '1 ms',"
      " ('0/' || to_hex(1000 + g))::pg_lsn FROM generate_series(1, 5000) g;"
      "INSERT INTO tandem.heartbeat SELECT now() - interval '5 minutes' + g * interval '1 s',"
      " ('0/' || to_hex(100000 + g))::pg_lsn FROM generate_series(1, 5) g");
  Settings st;
  st.throttle_commit_latency = 1000ms;
  const ThrottleReadings r = read_throttle_signals(*conn, st);
  ASSERT_TRUE(r.commit_seconds.has_value());
  EXPECT_EQ(r.commit_error, "");
  EXPECT_GT(*r.commit_seconds, 0.0);
  // The recent five and the probe's own.
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(*), count(*) FILTER (WHERE at > now() - interval '1 hour')"
                     " FROM tandem.heartbeat"),
            "6|6");
}

TEST_F(ThrottleTest, LockWaitsCountOnlySessionsWaitingOnTheMigratedTablesOrOnTandem) {
  // Sessions queued on an unrelated table are none of the backfill's doing;
  // a session waiting for a lock on the migrated table, or behind one of
  // tandem's sessions (a batch's row lock), is.
  pg_.psql(db_, "CREATE TABLE other (id int)");
  auto other_holder = pg_.connect(db_);
  other_holder->exec("BEGIN");
  other_holder->exec("LOCK TABLE other IN ACCESS EXCLUSIVE MODE");
  auto worker = pg_.connect(db_);  // as a tandem worker holding a batch's rows
  worker->exec("SET application_name = 'tandemd items_qty pid 1 worker 0'");
  worker->exec("BEGIN");
  worker->exec("UPDATE items SET qty = qty WHERE id = 1");
  std::vector<std::thread> waiters;
  // One at a time, each waiting before the next starts.
  for (const char* sql : {"UPDATE items SET qty = qty + 1 WHERE id = 1",    // for the worker's row
                          "BEGIN; LOCK TABLE items IN SHARE MODE; COMMIT",  // for items itself
                          "SELECT * FROM other", "SELECT * FROM other"}) {
    waiters.emplace_back([this, sql] {
      try {
        pg_.connect(db_)->exec(sql);
      } catch (const Error& e) {  // the connection's own lock_timeout, if held too long
        ADD_FAILURE() << sql << ": " << e.what();
      }
    });
    const bool waiting = answers_within(
        pg_, db_, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        std::to_string(waiters.size()), 20s);
    EXPECT_TRUE(waiting) << sql;
    if (!waiting) break;
  }
  auto watch = pg_.connect(db_);
  Settings st;
  st.throttle_lock_waits = 1;
  const std::string own = "tandemd items_qty pid 1 ";
  EXPECT_EQ(read_throttle_signals(*watch, st).lock_waits, 4);  // no tables: every wait
  const ThrottleReadings r = read_throttle_signals(*watch, st, own, {"public.items"});
  EXPECT_EQ(r.lock_waits, 2);
  EXPECT_EQ(decide_throttle(st, r).reason, "lock_waits");
  // Each way on its own: a lock on the table (the LOCK TABLE; the UPDATE
  // waits for the worker's transaction), and behind tandem's session (both).
  EXPECT_EQ(read_throttle_signals(*watch, st, "", {"public.items"}).lock_waits, 1);
  EXPECT_EQ(read_throttle_signals(*watch, st, own, {"public.orders"}).lock_waits, 2);
  EXPECT_EQ(read_throttle_signals(*watch, st, "nobody ", {"public.orders"}).lock_waits, 0);
  worker->exec("COMMIT");
  // Only the queue on `other` is left, and a migration of items with
  // throttle_lock_waits 1 runs through it.
  EXPECT_TRUE(answers_within(
      pg_, db_, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'", "2", 20s));
  Spec spec = spec_from(spec_text("  throttle_lock_waits: 1\n"));
  Plan plan = make_plan(spec);
  std::atomic<bool> stop{false};
  auto run =
      std::async(std::launch::async, [&] { return Executor(spec, plan, options(&stop)).run(); });
  const bool finished = run.wait_for(60s) == std::future_status::ready;
  stop = true;
  EXPECT_TRUE(finished) << "the backfill was held by sessions waiting on another table";
  const RunOutcome outcome = run.get();
  if (finished) {
    EXPECT_EQ(outcome, RunOutcome::kReachedUntil);
    EXPECT_EQ(rows_done(), 20000);
  }
  other_holder->exec("COMMIT");
  for (auto& t : waiters) t.join();
}

TEST_F(ThrottleTest, OutsideTheBackfillWindowNoBatchRunsUntilTheWindowIsMoved) {
  int now = local_minute_of_day(std::chrono::system_clock::now());
  auto window = [](int from, int to) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%02d:%02d-%02d:%02d", (from / 60) % 24, from % 60,
                  (to / 60) % 24, to % 60);
    return std::string(buf);
  };
  // A one-hour window two hours from now.
  Spec spec = spec_from(spec_text("  backfill_window: " + window(now + 120, now + 180) + "\n"));
  Plan plan = make_plan(spec);
  RunControl control(spec.settings);
  RunOptions o = options();
  o.control = &control;
  auto run = std::async(std::launch::async, [&] { return Executor(spec, plan, o).run(); });
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(rows_done(), 0);
  // As `tandemctl set items_qty backfill_window=...` does: a window around now.
  Settings open = spec.settings;
  ASSERT_EQ(set_setting(open, "backfill_window", window(now + 1440 - 60, now + 120)), "");
  control.set_settings(open);
  ASSERT_EQ(run.wait_for(60s), std::future_status::ready);
  EXPECT_EQ(run.get(), RunOutcome::kReachedUntil);
  EXPECT_EQ(rows_done(), 20000);
}

}  // namespace
}  // namespace tandem::testing
