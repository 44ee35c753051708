// The example migrations in migrations/examples/<name>/, each run by the real
// tandemd binary under its own pgbench workload: through cleanup with a
// kill -9 in the middle, and rolled back after cutover (and, for one, from
// every phase). Each example's check.sql decides whether anything was lost.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/scenario.h"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;

std::string example_dir(const std::string& name) {
  return std::string(TANDEM_SOURCE_DIR) + "/migrations/examples/" + name;
}

class Example : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = example_dir(GetParam());
    spec_ = dir_ + "/spec.yaml";
    db_ = pg_.create_database("ex");
    pg_.psql(db_, read_file(dir_ + "/setup.sql"));
  }
  CommandResult tandem(const std::string& args) {
    return run_command("TANDEM_DSN='" + pg_.dsn(db_) + "' " + tandemd(args));
  }
  bool check_ok() { return pg_.psql(db_, read_file(dir_ + "/check.sql")) == "t"; }
  // tandem's triggers and trigger functions: none may be left after a
  // migration completed or was rolled back.
  std::string leftover_triggers() {
    return pg_.psql(db_,
                    "SELECT coalesce(string_agg(tgname, ', '), '') FROM pg_trigger"
                    " WHERE tgname LIKE 'zz_tandem%'") +
           pg_.psql(db_,
                    "SELECT coalesce(string_agg(proname, ', '), '') FROM pg_proc"
                    " WHERE pronamespace = to_regnamespace('tandem')"
                    "   AND prorettype = 'trigger'::regtype");
  }
  std::string state() { return pg_.psql(db_, "SELECT state FROM tandem.migrations"); }
  std::unique_ptr<PgbenchLoad> workload() {
    auto load = std::make_unique<PgbenchLoad>(pg_, db_, 4, dir_ + "/workload.sql");
    load->start();
    return load;
  }
  void expect_no_failures(PgbenchLoad& load) {
    load.stop();
    EXPECT_GT(load.transactions(), 0);
    EXPECT_EQ(load.failures(), 0) << load.last_error_output();
  }

  PgServer& pg_ = PgServer::shared();
  std::string dir_, spec_, db_;
};

TEST_P(Example, PlanListsEveryStepWithItsLockAndRollbackAndThePrechecksPass) {
  auto r = run_command(tandemd("plan --json " + spec_ + " --dsn '" + pg_.dsn(db_) + "'"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_TRUE(j["refusals"].empty()) << j["refusals"].dump();
  size_t steps = 0;
  for (const auto& phase : j["phases"]) {
    for (const auto& step : phase["steps"]) {
      ++steps;
      EXPECT_FALSE(step["lock"].get<std::string>().empty()) << step.dump();
      EXPECT_TRUE(step.contains("rollback")) << step.dump();
    }
  }
  EXPECT_GE(steps, 10u);
  r = run_command(tandemd("plan " + spec_));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("cleanup"), std::string::npos) << r.output;
}

TEST_P(Example, CompletesUnderItsWorkloadAcrossAKillNine) {
  ASSERT_TRUE(check_ok()) << "check.sql must hold before the migration";
  auto load = workload();
  const std::string run_cmd =
      "env TANDEM_DSN='" + pg_.dsn(db_) + "' " + tandemd("run " + spec_ + " --until cutover");
  pid_t pid = spawn(run_cmd);
  auto watcher = pg_.connect(db_);
  bool copying = false;
  for (int i = 0; i < 6000 && !copying; ++i) {
    try {
      copying = watcher->exec("SELECT 1 FROM tandem.checkpoints WHERE rows_done > 0").size() > 0;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_TRUE(copying) << "the backfill never started";
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status)) << "tandemd finished before the kill";

  auto r = run_command(run_cmd);
  if (read_file(spec_).find("\n  cutover: approval") != std::string::npos) {
    // A cutover gate (users_uuid_rekey): two more rounds of its shadow
    // reads on new samples under the workload, then the approval.
    EXPECT_EQ(r.exit_code, 3) << r.output;
    r = tandem("rounds " + spec_ + " --count 2");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("round 2: passed"), std::string::npos) << r.output;
    r = run_command(run_cmd + " --approve cutover");
  }
  EXPECT_EQ(r.exit_code, 0) << r.output;
  expect_no_failures(*load);
  // Its shadow reads (where the spec has them) compared every sampled set,
  // across the kill, and found no difference under the workload.
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(*) || '/' || count(done_at) || '/' || count(diff)"
                     " FROM tandem.shadow_samples WHERE step_id LIKE 'reads.%'"),
            pg_.psql(db_, "SELECT count(*) || '/' || count(*) || '/0' FROM tandem.shadow_samples"));
  // The application moves to the new shape before cleanup; cleanup drops
  // what the old application wrote to.
  r = tandem("run " + spec_ + " --approve cleanup");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(state(), "completed");
  EXPECT_TRUE(check_ok());
  EXPECT_EQ(leftover_triggers(), "");
}

TEST_P(Example, RollsBackAfterCutoverUnderItsWorkload) {
  auto load = workload();
  auto r = tandem("run " + spec_ + " --until cutover --approve cutover");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = tandem("rollback " + spec_);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  expect_no_failures(*load);
  EXPECT_EQ(state(), "rolled_back");
  EXPECT_TRUE(check_ok());
  EXPECT_EQ(leftover_triggers(), "");
}

INSTANTIATE_TEST_SUITE_P(Examples, Example,
                         ::testing::Values("users_uuid_rekey", "users_full_name_to_pii",
                                           "balance_v1_to_v2", "orders_id_to_bigint",
                                           "conversations_doc_to_tables"),
                         [](const auto& info) { return info.param; });

// contacts_by_customer_slices: old application instances write the legacy
// table all along (workload.sql); new ones, deployed once the routes exist,
// route every transaction (workload_routed.sql). Under both, the pilot is
// promoted, demoted and promoted again, eu goes live and the canary sends it
// back when its error rate rises, then every slice completes, the migration
// cuts over by itself and is cleaned up. check.sql holds both tables against
// the tally of what the workloads committed.
class SlicesExample : public Example {
 protected:
  CommandResult slices(const std::string& args) { return tandem("slices " + spec_ + " " + args); }
  void move(const std::string& args, int times = 1) {
    for (int i = 0; i < times; ++i) {
      auto r = slices(args);
      EXPECT_EQ(r.exit_code, 0) << args << ": " << r.output;
    }
  }
  std::string stages() {
    return pg_.psql(db_,
                    "SELECT string_agg(slice || ':' || stage, ',' ORDER BY ordinal)"
                    " FROM tandem.slices");
  }
};

TEST_P(SlicesExample, MovesSliceBySliceUnderOldAndNewApplicationsAtOnce) {
  ASSERT_TRUE(check_ok()) << "check.sql must hold before the migration";
  auto r = run_command(tandemd("plan " + spec_ + " --dsn '" + pg_.dsn(db_) + "'"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto legacy = workload();
  r = tandem("run " + spec_);
  ASSERT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("waits at cutover: slices not complete yet: pilot (old), eu (old), "
                          "rest (old)"),
            std::string::npos)
      << r.output;
  // The new application is deployed: it routes.
  PgbenchLoad routed(pg_, db_, 2, dir_ + "/workload_routed.sql");
  routed.start();
  auto settle = [] { std::this_thread::sleep_for(1500ms); };
  settle();
  move("promote pilot", 2);
  settle();
  move("demote pilot");
  settle();
  move("promote pilot");
  move("promote eu", 2);
  settle();
  EXPECT_EQ(stages(), "pilot:live,eu:live,rest:old");
  // eu's error rate rises: the canary sends it back and holds the slices.
  pg_.psql(db_, "UPDATE app_health SET error_rate = 0.3 WHERE slice = 'eu'");
  r = slices("watch");
  EXPECT_EQ(r.exit_code, 9) << r.output;
  EXPECT_NE(r.output.find("ALERT: migration contacts_by_customer_slices: the canary found eu "
                          "(value 0.3) unhealthy; back to shadow: eu"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(stages(), "pilot:live,eu:shadow,rest:old");
  r = slices("promote eu");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  settle();
  pg_.psql(db_, "UPDATE app_health SET error_rate = 0.01 WHERE slice = 'eu'");
  move("resume");
  move("promote eu");
  move("promote rest", 3);
  move("promote pilot");
  move("promote eu");
  settle();
  EXPECT_EQ(stages(), "pilot:complete,eu:complete,rest:complete");
  EXPECT_TRUE(check_ok());
  // Every slice complete: cutover begins by itself. The old instances are
  // retired before cleanup, which drops what they wrote to.
  r = tandem("run " + spec_ + " --until cutover");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  expect_no_failures(*legacy);
  r = tandem("run " + spec_ + " --approve cleanup");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  settle();
  routed.stop();
  EXPECT_GT(routed.transactions(), 0);
  EXPECT_EQ(routed.failures(), 0) << routed.last_error_output();
  EXPECT_EQ(state(), "completed");
  EXPECT_TRUE(check_ok());
  EXPECT_EQ(leftover_triggers(), "");
  // Writes went to both sides, and customers created meanwhile too.
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(DISTINCT side) || '/' || (count(*) FILTER (WHERE kind ="
                     " 'insert') > 0) FROM write_tally"),
            "2/true");
  EXPECT_EQ(pg_.psql(db_, "SELECT tandem.route('contacts_by_customer_slices', '7')"), "new");
}

INSTANTIATE_TEST_SUITE_P(Slices, SlicesExample, ::testing::Values("contacts_by_customer_slices"),
                         [](const auto& info) { return info.param; });

class EveryPhase : public Example {};

TEST_P(EveryPhase, RollsBackFromEachPhaseUnderItsWorkload) {
  auto load = workload();
  for (const char* phase : {"prepare", "dual_write", "backfill", "shadow_read", "cutover"}) {
    SCOPED_TRACE(phase);
    auto r = tandem("run " + spec_ + " --until " + phase);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    r = tandem("rollback " + spec_);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(state(), "rolled_back");
    EXPECT_EQ(leftover_triggers(), "");
  }
  expect_no_failures(*load);
  EXPECT_TRUE(check_ok());
}

INSTANTIATE_TEST_SUITE_P(Balance, EveryPhase, ::testing::Values("balance_v1_to_v2"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tandem::testing
