// A worker left without a range splits a running worker's range: the
// shortened checkpoint and the new one commit in one transaction. Here each
// fault of the fault sweep lands on each call of that transaction and on the
// first calls after it, while other workers run and a writer updates rows
// all over the table: the step must end with every row copied once and the
// ranges tiling the keys, after retries or, for a crash, after a fresh run.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "engine/run_control.h"
#include "support/fault_injection.h"
#include "support/scenario.h"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;

// The first statement of a split (StateStore::split_partition): call 1 of the
// session that splits. Calls 2 and 3 are the shortening UPDATE and the
// COMMIT; call 4 is the first of that worker's next batch.
constexpr const char* kSplitSql = "SELECT migration, step_id, $5::int";

struct SplitFault {
  Fault fault;
  int at;  // the call of the splitting session that fails, counting from kSplitSql
};

class SplitFaults : public ::testing::TestWithParam<SplitFault> {
 protected:
  void SetUp() override {
    db_ = pg_.create_database("split");
    pg_.psql(db_,
             "CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL);"
             "INSERT INTO items SELECT g, g % 100 FROM generate_series(1, 5000) g;"
             "ANALYZE items;");
  }
  RunOptions options() const {
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    o.actor = "test";
    o.until = Phase::kBackfill;
    return o;
  }
  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

TEST_P(SplitFaults, TheStepEndsWithEveryRowCopiedOnceAndTheRangesTilingTheKeys) {
  const SplitFault param = GetParam();
  // Batches of 2000 rows cut 5000 keys into two ranges. The step starts held
  // by a manual throttle; before it goes, batches become 100 rows and three
  // workers are allowed, so at once a worker splits its range for the third.
  Spec spec = spec_from(
      "name: split\nsettings:\n  batch_size: 2000\n  lock_timeout: 200ms\n"
      "  retry_budget: 20\n  retry_backoff: 5ms\n  retry_backoff_max: 20ms\n"
      "operations:\n  - alter_column_type: {table: items, column: qty, type: bigint}\n");
  Plan plan = make_plan(spec);
  RunControl control(spec.settings);
  control.throttle(std::nullopt);
  FaultPlan faults(param.fault, param.at, kSplitSql);
  RunOptions o = options();
  o.control = &control;
  o.connect = faults.connector();

  std::atomic<bool> stop{false};
  std::thread writer([&] {
    auto c = pg_.connect(db_);
    for (int i = 0; !stop; ++i) {
      try {
        c->exec("UPDATE items SET qty = qty + 1 WHERE id = $1",
                {std::to_string(1 + (i * 37) % 5000)});
      } catch (const std::exception&) {
        // The DDL of a resumed run's prepare phase may make it wait; go on.
      }
    }
  });
  auto run = std::async(std::launch::async, [&]() -> std::optional<RunOutcome> {
    try {
      return Executor(spec, plan, o).run();
    } catch (const SimulatedCrash&) {
      return std::nullopt;
    }
  });
  const bool planned = answers_within(
      pg_, db_, "SELECT count(*) FROM tandem.checkpoints WHERE step_id = '1.backfill'", "2", 20s);
  Settings st = control.settings();
  st.batch_size = 100;
  st.backfill_workers = 3;
  control.set_settings(st);
  control.lift_throttle();
  std::optional<RunOutcome> outcome;
  try {
    outcome = run.get();
  } catch (const std::exception& e) {
    stop = true;
    writer.join();
    FAIL() << "the run failed: " << e.what();
  }
  const bool crashes = param.fault == Fault::kCrash || param.fault == Fault::kCrashAfterCommit;
  if (crashes) {
    EXPECT_FALSE(outcome) << "the crash did not end the run";
    // kill -9 and start again: the fresh run finds the ranges as committed.
    EXPECT_EQ(Executor(spec, plan, options()).run(), RunOutcome::kReachedUntil);
  } else {
    EXPECT_EQ(outcome, RunOutcome::kReachedUntil);
  }
  stop = true;
  writer.join();

  ASSERT_TRUE(planned);
  EXPECT_TRUE(faults.fired()) << "no split reached call " << param.at
                              << ": the test proves nothing";
  const int ranges = std::stoi(
      pg_.psql(db_, "SELECT count(*) FROM tandem.checkpoints WHERE step_id = '1.backfill'"));
  // A split that committed is kept; one that failed before its COMMIT is
  // done again by the retry, or not at all after a crash (the fresh run has
  // one worker, which never splits; another worker of the crashed run may
  // have split its own range meanwhile).
  const bool split_committed = !(param.fault == Fault::kCrash && param.at <= 3);
  EXPECT_GE(ranges, split_committed ? 3 : 2);
  EXPECT_EQ(key_ranges_summary(pg_, db_, "1.backfill"), std::to_string(ranges) + "|t|5000|t");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM items WHERE _tandem_new_qty IS DISTINCT FROM qty"),
            "0");
  EXPECT_EQ(pg_.psql(db_, "SELECT status FROM tandem.steps WHERE step_id = '1.backfill'"), "done");
}

std::vector<SplitFault> cases() {
  std::vector<SplitFault> out;
  for (Fault f : {Fault::kLockTimeout, Fault::kDropConnection, Fault::kCrash}) {
    for (int at = 1; at <= 4; ++at) out.push_back({f, at});
  }
  // A commit fault falls on the first COMMIT at or after its call: the
  // split's own (call 3), and the next batch's.
  for (Fault f : {Fault::kDropAfterCommit, Fault::kCrashAfterCommit}) {
    for (int at : {3, 4}) out.push_back({f, at});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(AtEachCall, SplitFaults, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<SplitFault>& info) {
                           return fault_name(info.param.fault) + "_at_call_" +
                                  std::to_string(info.param.at);
                         });

}  // namespace
}  // namespace tandem::testing
