// Parallel workers over key ranges: splits, retiring, failures, lost range commits.
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

}  // namespace
}  // namespace tandem::testing
