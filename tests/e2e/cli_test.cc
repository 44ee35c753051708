// End to end: the real tandemd binary against a real PostgreSQL under
// pgbench load, including kill -9 at random points of every phase.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "support/scenario.h"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = pg_.create_database("cli");
    pgbench_init(pg_, db_, 2);
    spec_path_ = write_temp_file(abalance_spec());
  }
  CommandResult run(const std::string& args) {
    return run_command("TANDEM_DSN='" + pg_.dsn(db_) + "' " + tandemd(args));
  }

  PgServer& pg_ = PgServer::shared();
  std::string db_, spec_path_;
};

TEST(CliStatic, ValidateReportsLocatedErrorsAndExitsOne) {
  std::string bad = write_temp_file("name: x\nsettings:\n  batch_sise: 10\noperations: []\n");
  auto r = run_command(tandemd("validate " + bad));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, bad +
                          ":3:3: unknown key \"batch_sise\" in settings; did you mean "
                          "\"batch_size\"?\n" +
                          bad +
                          ":4:13: operations: the list is empty; a migration needs at least one\n");
  std::string example =
      std::string(TANDEM_SOURCE_DIR) + "/migrations/examples/pgbench_abalance_bigint.yaml";
  r = run_command(tandemd("validate " + example));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(CliStatic, PlanJsonListsEveryPhaseWithLocksAndRollbacks) {
  std::string example =
      std::string(TANDEM_SOURCE_DIR) + "/migrations/examples/pgbench_abalance_bigint.yaml";
  auto r = run_command(tandemd("plan --json " + example + " 2>/dev/null"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  ASSERT_EQ(j["phases"].size(), 6u);
  for (const auto& phase : j["phases"]) {
    EXPECT_FALSE(phase["steps"].empty()) << phase["phase"];
    for (const auto& step : phase["steps"]) EXPECT_FALSE(step["lock"].get<std::string>().empty());
  }
}

// The markdown plan of an example, against its golden copy in
// tests/golden (TANDEM_UPDATE_GOLDEN=1 writes it again: review the diff).
TEST(CliStatic, PlanAsMarkdownIsItsGoldenCopy) {
  const std::string src = TANDEM_SOURCE_DIR;
  auto r = run_command(tandemd("plan --format markdown " + src +
                               "/migrations/examples/pgbench_abalance_bigint.yaml"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::string golden = src + "/tests/golden/plan_pgbench_abalance_bigint.md";
  if (std::getenv("TANDEM_UPDATE_GOLDEN")) {
    std::ofstream(golden) << r.output;
  }
  EXPECT_EQ(r.output, read_file(golden));
}

// The schemas published in schema/ are what `tandemd schema` prints (the
// same golden rule: TANDEM_UPDATE_GOLDEN=1 writes them again).
TEST(CliStatic, TheSchemasInTheRepositoryAreWhatTandemdSchemaPrints) {
  const std::string src = TANDEM_SOURCE_DIR;
  for (const std::string which : {"spec", "config"}) {
    auto r = run_command(tandemd("schema " + which));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto j = nlohmann::json::parse(r.output);
    EXPECT_EQ(j["$schema"], "http://json-schema.org/draft-07/schema#");
    const std::string file =
        src + "/schema/" + (which == "spec" ? "spec" : "tandemd-config") + ".schema.json";
    if (std::getenv("TANDEM_UPDATE_GOLDEN")) std::ofstream(file) << r.output;
    EXPECT_EQ(r.output, read_file(file))
        << file << " is stale: tandemd schema " << which << " > " << file;
  }
  EXPECT_EQ(run_command(tandemd("schema nonsense")).exit_code, 2);
}

TEST(CliStatic, TheLintOfSqlStepsWarnsInValidateAndPlanAndRefusesWhenStrict) {
  const std::string ops =
      "operations:\n"
      "  - sql:\n"
      "      phase: prepare\n"
      "      up: ALTER TABLE orders ALTER COLUMN id TYPE bigint\n"
      "      down: ALTER TABLE orders ALTER COLUMN id TYPE int\n";
  const std::string file = write_temp_file("name: widen\n" + ops);
  auto r = run_command(tandemd("validate " + file));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(
      r.output.find(file + ":3:5: warning: sql step 1.sql (up): ALTER COLUMN id TYPE on orders: a "
                           "type change rewrites orders and its indexes under an ACCESS EXCLUSIVE "
                           "lock (unless the new type is binary-coercible, such as varchar(n) to "
                           "text); instead: the alter_column_type operation (a shadow column, a "
                           "batched backfill, a swap in one short transaction)\n"),
      std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(file + ": ok (widen, 1 steps)"), std::string::npos) << r.output;
  r = run_command(tandemd("plan --format markdown " + file));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("**Lint of hand-written SQL:**\n\n- line 3: sql step 1.sql (up): ALTER "
                          "COLUMN id TYPE on orders"),
            std::string::npos)
      << r.output;
  r = run_command("(" + tandemd("plan --json " + file) + " 2>/dev/null)");
  EXPECT_EQ(nlohmann::json::parse(r.output)["warnings"].size(), 2u) << r.output;
  // Strict: refused by validate, and by run before it connects (exit 1, not 6).
  const std::string strict = write_temp_file("name: widen\nsettings:\n  sql_lint: error\n" + ops);
  r = run_command(tandemd("validate " + strict));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(strict + ":5:5: sql step 1.sql (up): ALTER COLUMN id TYPE on orders"),
            std::string::npos)
      << r.output;
  r = run_command("TANDEM_DSN='host=/nonexistent' " + tandemd("run " + strict));
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

TEST(CliStatic, BadCommandLineExitsTwo) {
  EXPECT_EQ(run_command(tandemd("run")).exit_code, 2);
  EXPECT_EQ(run_command(tandemd("frobnicate")).exit_code, 2);
  EXPECT_EQ(run_command(tandemd("run x.yaml --until later")).exit_code, 2);
  auto help = run_command(tandemd("run --help"));
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("3  waiting for approval"), std::string::npos) << help.output;
}

TEST_F(Cli, StatusSaysAStoppedRunHasNotBegunTheNextPhase) {
  auto r = run("run " + spec_path_ + " --until shadow_read");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto status = run("status " + spec_path_);
  EXPECT_EQ(status.output.rfind("migration " + std::string("abalance_bigint") +
                                    ": paused before phase cutover (updated ",
                                0),
            0u)
      << status.output;
  auto j = nlohmann::json::parse(run("status --json " + spec_path_).output);
  EXPECT_EQ(j["phase"], "cutover");
  EXPECT_EQ(j["phase_started"], false);
}

TEST_F(Cli, StopsAtTheCleanupGateWithItsOwnExitCodeThenFinishesWhenApproved) {
  auto r = run("run " + spec_path_);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("is waiting for approval of phase cleanup, which cannot be undone.\n"
                          "To go on: tandemd run " +
                          spec_path_ + " --approve cleanup"),
            std::string::npos)
      << r.output;
  auto status = run("status --json " + spec_path_);
  ASSERT_EQ(status.exit_code, 0) << status.output;
  auto j = nlohmann::json::parse(status.output);
  EXPECT_EQ(j["state"], "waiting_approval");
  EXPECT_EQ(j["phase"], "cleanup");
  // The one dialect (docs/control-protocol.md): version, name, RFC 3339
  // times in UTC, null rather than "".
  const std::regex rfc3339(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["name"], "abalance_bigint");
  EXPECT_TRUE(std::regex_match(j["updated_at"].get<std::string>(), rfc3339)) << j["updated_at"];
  EXPECT_TRUE(j["last_error"].is_null());
  EXPECT_TRUE(j["last_sqlstate"].is_null());
  EXPECT_TRUE(std::regex_match(j["steps"][0]["finished_at"].get<std::string>(), rfc3339));
  EXPECT_TRUE(j["steps"].back()["started_at"].is_null());
  EXPECT_TRUE(std::regex_match(j["events"][0]["at"].get<std::string>(), rfc3339));
  r = run("run " + spec_path_ + " --approve cleanup");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rows moved by 1.backfill: 200,000"), std::string::npos) << r.output;
  EXPECT_EQ(nlohmann::json::parse(run("status --json " + spec_path_).output)["state"], "completed");
  r = run("rollback " + spec_path_);
  EXPECT_EQ(r.exit_code, 7) << r.output;
}

TEST_F(Cli, PlanWithADsnRefusesADependentViewAndChangesNothing) {
  pg_.psql(db_, "CREATE VIEW balances AS SELECT aid, abalance FROM pgbench_accounts");
  auto r = run_command(tandemd("plan " + spec_path_ + " --dsn '" + pg_.dsn(db_) + "'"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("prechecks against the database: REFUSED\n"
                          "  step 1.precheck: view balances uses column abalance; tandem cannot "
                          "carry it over to the new column: drop it and create it again after "
                          "the migration\n"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(pg_.psql(db_, "SELECT to_regnamespace('tandem') IS NULL"), "t");
  pg_.psql(db_, "DROP VIEW balances");
  r = run_command(tandemd("plan --json " + spec_path_ + " --dsn '" + pg_.dsn(db_) + "'"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(nlohmann::json::parse(r.output)["refusals"].empty());
  // Without --dsn, TANDEM_DSN names the database, as the help says.
  pg_.psql(db_, "CREATE VIEW balances AS SELECT aid, abalance FROM pgbench_accounts");
  r = run_command("TANDEM_DSN='" + pg_.dsn(db_) + "' " + tandemd("plan " + spec_path_));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("prechecks against the database: REFUSED"), std::string::npos)
      << r.output;
  // The same for a pull request's comment.
  r = run_command("TANDEM_DSN='" + pg_.dsn(db_) + "' " +
                  tandemd("plan --format markdown " + spec_path_));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("**Prechecks against the database: REFUSED**\n\n- `1.precheck`: view "
                          "balances uses column abalance"),
            std::string::npos)
      << r.output;
  pg_.psql(db_, "DROP VIEW balances");
}

TEST(CliUsage, AMistypedCommandOrOptionIsNamedWithTheClosestOne) {
  auto r = run_command(tandemd("rnu x.yaml"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output,
            "tandemd: unknown command \"rnu\"; did you mean \"run\"? (`tandemd --help` lists "
            "the commands)\n");
  r = run_command(tandemd("--log-level debug stauts x.yaml"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("unknown command \"stauts\"; did you mean \"status\"?"),
            std::string::npos)
      << r.output;
  r = run_command(tandemd("run --untill cutover x.yaml"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output,
            "tandemd run: unknown option \"--untill\"; did you mean \"--until\"? (`tandemd run "
            "--help` lists the options)\n");
  r = run_command(std::string(TANDEMCTL_PATH) + " staus x");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("tandemctl: unknown command \"staus\"; did you mean \"status\"?"),
            std::string::npos)
      << r.output;
  // What CLI11 says of anything else stays as it was.
  r = run_command(tandemd("run"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("FILE is required"), std::string::npos) << r.output;
}

TEST(CliUsage, AConnectionErrorIsOneLineWithoutTabs) {
  const std::string spec =
      std::string(TANDEM_SOURCE_DIR) + "/migrations/examples/pgbench_abalance_bigint.yaml";
  auto r = run_command(tandemd("status " + spec + " --dsn 'host=/nonexistent'"));
  EXPECT_EQ(r.exit_code, 6);
  EXPECT_NE(r.output.find("No such file or directory (Is the server running locally"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find('\t'), std::string::npos) << r.output;
}

TEST(CliUsage, EachCommandsHelpListsItsOwnExitCodes) {
  auto r = run_command(tandemd("validate --help"));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("0  every file is valid"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("rollback refused"), std::string::npos) << r.output;
  r = run_command(tandemd("plan --help"));
  EXPECT_NE(r.output.find("6  the database cannot be reached"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("interrupted by a signal"), std::string::npos) << r.output;
  r = run_command(tandemd("run --help"));
  EXPECT_NE(r.output.find("interrupted by a signal"), std::string::npos) << r.output;
}

// The estimates `plan --dsn` prints against what the backfill then writes:
// the table's and its index's growth, and the server's WAL while it runs
// (after a checkpoint, as every backfill's first pass is; autovacuum off on
// the table so that its work does not count, and no timed checkpoint in the
// middle, after which pages would be written whole again).
TEST_F(Cli, PlanWithADsnEstimatesWhatTheBackfillWritesAndItWritesThat) {
  pg_.psql(db_, "ALTER TABLE pgbench_accounts SET (autovacuum_enabled = off)");
  ServerSetting no_timed_checkpoint(pg_, "checkpoint_timeout", "'1d'");
  auto r = run_command(tandemd("plan " + spec_path_ + " --dsn '" + pg_.dsn(db_) + "'"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("what the backfills will write (estimated from the catalog now):\n"
                          "  step 1.backfill: about 200,000 rows of public.pgbench_accounts"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("of WAL (max_wal_size "), std::string::npos) << r.output;
  r = run_command(tandemd("plan --json " + spec_path_ + " --dsn '" + pg_.dsn(db_) + "'"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto est = nlohmann::json::parse(r.output)["estimates"]["steps"].at(0);
  ASSERT_EQ(est["step"], "1.backfill");
  EXPECT_EQ(est["rows"], 200000);
  const double growth = est["growth_bytes"].get<double>(), wal = est["wal_bytes"].get<double>();

  const std::string size_sql =
      "SELECT pg_relation_size('pgbench_accounts') + pg_indexes_size('pgbench_accounts')";
  ASSERT_EQ(run("run " + spec_path_ + " --until dual_write").exit_code, 0);
  pg_.psql(db_, "CHECKPOINT");
  const double size_before = std::stod(pg_.psql(db_, size_sql));
  const std::string lsn_before = pg_.psql(db_, "SELECT pg_current_wal_lsn()");
  r = run("run " + spec_path_ + " --until backfill");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("step 1.backfill: about 200,000 rows; expect about "), std::string::npos)
      << r.output;
  const double wal_written =
      std::stod(pg_.psql(db_, "SELECT pg_current_wal_lsn() - '" + lsn_before + "'"));
  const double grown = std::stod(pg_.psql(db_, size_sql)) - size_before;
  EXPECT_GT(grown, 0.8 * growth) << "estimated growth " << growth;
  EXPECT_LT(grown, 1.25 * growth) << "estimated growth " << growth;
  EXPECT_GT(wal_written, 0.75 * wal) << "estimated WAL " << wal;
  EXPECT_LT(wal_written, 1.33 * wal) << "estimated WAL " << wal;
}

TEST_F(Cli, SigtermStopsAtASafePointAndTheNextRunResumes) {
  spec_path_ = write_temp_file(abalance_spec(1000));
  const std::string cmd =
      "env TANDEM_DSN='" + pg_.dsn(db_) + "' " + tandemd("run " + spec_path_ + " --approve all");
  pid_t pid = spawn(cmd);
  auto watcher = pg_.connect(db_);
  bool in_backfill = false;
  for (int i = 0; i < 3000 && !in_backfill; ++i) {
    try {
      in_backfill = watcher
                        ->exec(
                            "SELECT 1 FROM tandem.checkpoints WHERE step_id = '1.backfill'"
                            " AND rows_done > 0")
                        .size() == 1;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(in_backfill);
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 8);
  auto j = nlohmann::json::parse(run("status --json " + spec_path_).output);
  EXPECT_EQ(j["state"], "paused");
  auto r = run_command(cmd);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM tandem.events WHERE kind = 'resumed'"), "1");
  EXPECT_EQ(column_type(pg_, db_, "pgbench_accounts", "abalance"), "bigint");
}

TEST_F(Cli, UnreachableDatabaseExitsSix) {
  auto r = run_command("TANDEM_DSN='host=/nonexistent port=1' " + tandemd("run " + spec_path_));
  EXPECT_EQ(r.exit_code, 6) << r.output;
}

TEST_F(Cli, SurvivesKillNineAtRandomPointsInEveryPhase) {
  // Smaller batches and a bigger table stretch backfill and shadow_read, so
  // kills land inside them as well as between steps.
  pgbench_init(pg_, db_, 4);
  spec_path_ = write_temp_file(abalance_spec(1000));
  PgbenchLoad load(pg_, db_);
  load.start();
  std::mt19937 rng(std::random_device{}());
  const std::string cmd =
      "env TANDEM_DSN='" + pg_.dsn(db_) + "' " + tandemd("run " + spec_path_ + " --approve all");
  auto watcher = pg_.connect(db_);
  // "0 none" until the state schema exists (the statement names the table,
  // so it cannot even be parsed before: a run killed early leaves none).
  auto phase_now = [&]() -> std::string {
    try {
      Rows r = watcher->exec(
          "SELECT coalesce((SELECT phase || ' ' || state FROM tandem.migrations), '0 none')");
      return r.text(0, 0);
    } catch (const std::exception&) {
      return "0 none";
    }
  };
  std::vector<std::string> killed_in;
  bool finished = false;
  for (int target = 1; target <= 6 && !finished; ++target) {
    pid_t pid = spawn(cmd);
    // Wait until the run has reached the target phase, then kill it a random
    // moment later.
    int status = 0;
    for (int i = 0; i < 600; ++i) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        finished = true;
        break;
      }
      if (std::stoi(phase_now()) >= target) break;
      std::this_thread::sleep_for(1ms);
    }
    if (finished) {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
      break;
    }
    std::uniform_int_distribution<int> delay(0, target == 3 || target == 4 ? 1500 : 40);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay(rng)));
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    if (WIFEXITED(status)) {
      finished = WEXITSTATUS(status) == 0;
    } else {
      killed_in.push_back(phase_now());
    }
  }
  // Run again until it completes; every run resumes where the last stopped.
  auto r = run_command(cmd);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  load.stop();
  std::string where;
  for (const auto& k : killed_in) where += "[" + k + "] ";
  RecordProperty("killed_in", where);
  std::cout << "killed in (phase state): " << where << "\n";
  EXPECT_GE(killed_in.size(), 2u) << "too few kills landed mid-run: " << where;
  EXPECT_EQ(load.failures(), 0) << load.last_error_output();
  EXPECT_TRUE(tpcb_invariant_holds(pg_, db_));
  EXPECT_EQ(column_type(pg_, db_, "pgbench_accounts", "abalance"), "bigint");
  EXPECT_EQ(leftovers(pg_, db_, "pgbench_accounts"), "");
  EXPECT_EQ(pg_.psql(db_, "SELECT state FROM tandem.migrations"), "completed");
}

TEST_F(Cli, ParallelWorkersSurviveKillNineMidBackfillAndResumeExactly) {
  // 400,000 accounts in twelve ranges (four per worker), killed twice while
  // three workers have committed batches, then once right after a range was
  // split at the step's end. pgbench never inserts or deletes accounts, so the
  // ranges' row counts must add up to the table exactly: a batch done twice
  // or skipped after a resume would show.
  pgbench_init(pg_, db_, 4);
  spec_path_ = write_temp_file(abalance_spec(1000, "  backfill_workers: 3\n"));
  PgbenchLoad load(pg_, db_);
  load.start();
  const std::string cmd = "env TANDEM_DSN='" + pg_.dsn(db_) + "' " +
                          tandemd("run " + spec_path_ + " --approve all --until backfill");
  auto watcher = pg_.connect(db_);
  auto ranges_started = [&](long long at_least) {
    try {
      return watcher
          ->exec(
              "SELECT count(*) FROM tandem.checkpoints WHERE step_id = '1.backfill'"
              " AND rows_done >= $1::bigint",
              {std::to_string(at_least)})
          .integer(0, 0);
    } catch (const std::exception&) {
      return 0LL;  // the state schema is being created
    }
  };
  std::vector<long long> done_at_kill;
  for (long long threshold : {2000LL, 15000LL}) {
    pid_t pid = spawn(cmd);
    bool ready = false;
    for (int i = 0; i < 6000 && !ready; ++i) {
      ready = ranges_started(threshold) >= 3;
      if (!ready) std::this_thread::sleep_for(5ms);
    }
    ASSERT_TRUE(ready) << "three workers never each passed " << threshold << " rows";
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "it finished before the kill; make the table bigger";
    done_at_kill.push_back(
        std::stoll(pg_.psql(db_, "SELECT coalesce(sum(rows_done), 0) FROM tandem.checkpoints")));
  }
  EXPECT_LT(done_at_kill.back(), 400000) << "the kills came too late to test a resume";
  auto status = nlohmann::json::parse(run("status --json " + spec_path_).output);
  bool seen = false;
  for (const auto& step : status["steps"]) {
    if (step["id"] != "1.backfill") continue;
    seen = true;
    EXPECT_EQ(step["ranges"], 12);
    EXPECT_LT(step["ranges_finished"].get<int>(), 12);
    EXPECT_EQ(step["rows_done"], done_at_kill.back());
  }
  EXPECT_TRUE(seen) << status.dump();
  EXPECT_NE(run("status " + spec_path_).output.find("/12 ranges finished"), std::string::npos);
  // Once the queue is empty, a worker without a range splits another's:
  // killed again right after the first split, the next run must take up the
  // shortened range and the new one. Workers that start together stay in
  // step, and then the last ranges end together with nothing left to share,
  // so an application's row lock holds back the worker on the first range
  // (its batch times out and is retried) until every other range is done.
  const std::string ranges_now =
      "SELECT count(*) FROM tandem.checkpoints WHERE step_id = '1.backfill'";
  auto blocker = pg_.connect(db_);
  blocker->exec("BEGIN");
  const std::string locked =
      blocker
          ->exec(
              "SELECT a.aid FROM pgbench_accounts a, ("
              "  SELECT (coalesce(last_key, range_after, '{0}'))[1]::int AS after"
              "    FROM tandem.checkpoints WHERE step_id = '1.backfill' AND NOT finished"
              "   ORDER BY range_after[1]::int NULLS FIRST LIMIT 1) r"
              " WHERE a.aid > r.after ORDER BY a.aid LIMIT 1 FOR UPDATE OF a")
          .text(0, 0);
  pid_t pid = spawn(cmd);
  bool split = false;
  bool released = false;
  for (auto end = std::chrono::steady_clock::now() + 120s;
       !split && std::chrono::steady_clock::now() < end; std::this_thread::sleep_for(5ms)) {
    split = watcher->exec(ranges_now).integer(0, 0) > 12;
    if (!split && !released && watcher->exec(ranges_now + " AND finished").integer(0, 0) == 11) {
      blocker->exec("ROLLBACK");
      released = true;
    }
  }
  kill(pid, SIGKILL);
  int killed = 0;
  waitpid(pid, &killed, 0);
  if (!released) blocker->exec("ROLLBACK");
  std::cout << "first split " << (released ? "after" : "before") << " the held worker went on\n";
  ASSERT_TRUE(split) << "no range was split (account " << locked << " held "
                     << (released ? "until the other ranges were done" : "throughout") << ")";
  ASSERT_TRUE(WIFSIGNALED(killed)) << "it finished before the kill";
  EXPECT_NE(pg_.psql(db_, ranges_now + " AND NOT finished"), "0") << "nothing left to resume";
  auto r = run_command(cmd);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // All finished, the split ones too, their rows add up, and they meet
  // without a gap or an overlap, open at both ends.
  EXPECT_EQ(key_ranges_summary(pg_, db_, "1.backfill", 13), "13+|t|400000|t");
  // Then shadow_read's verification (twelve ranges too) and the rest.
  r = run_command("env TANDEM_DSN='" + pg_.dsn(db_) + "' " +
                  tandemd("run " + spec_path_ + " --approve all"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  load.stop();
  EXPECT_EQ(load.failures(), 0) << load.last_error_output();
  EXPECT_TRUE(tpcb_invariant_holds(pg_, db_));
  EXPECT_EQ(key_ranges_summary(pg_, db_, "1.verify", 12), "12+|t|400000|t");
  EXPECT_EQ(column_type(pg_, db_, "pgbench_accounts", "abalance"), "bigint");
  EXPECT_EQ(pg_.psql(db_, "SELECT state FROM tandem.migrations"), "completed");
}

// A scratch directory of hook executables (docs/hooks.md) that append what
// they are told to `calls`.
class HookDir {
 public:
  HookDir() {
    char name[] = "/tmp/tandem-e2e-hooks-XXXXXX";
    path_ = mkdtemp(name);
    for (const char* e : {"start", "phase-change", "waiting-approval", "critical-pause", "success",
                          "failure", "rolled-back"}) {
      write(std::string("tandem-on-") + e,
            "echo \"$TANDEM_HOOK $TANDEM_PHASE\" >> " + path_ + "/calls");
    }
  }
  ~HookDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  void write(const std::string& name, const std::string& body) {
    const std::string file = path_ + "/" + name;
    std::ofstream(file) << "#!/bin/sh\n" << body << "\n";
    chmod(file.c_str(), 0755);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  bool exists(const std::string& name) const { return access(file(name).c_str(), F_OK) == 0; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST_F(Cli, HooksHearEveryEventASlowOneHoldsNothingBackAndAFailingBeforeCutoverHoldsTheCutover) {
  HookDir hooks;
  // before-cutover passes once the test allows it.
  hooks.write("tandem-on-before-cutover",
              "echo \"before-cutover $TANDEM_PHASE\" >> " + hooks.file("calls") + "\nif [ -e " +
                  hooks.file("allow") +
                  " ]; then exit 0; fi\necho checking the release train\necho 'the release "
                  "train is not ready'\nexit 3");
  // The phase-change hook of backfill hangs until the test lets it go.
  hooks.write("tandem-on-phase-change-slow",
              "[ \"$TANDEM_PHASE\" = backfill ] || exit 0\ntouch " + hooks.file("slow-started") +
                  "\nwhile [ ! -e " + hooks.file("release") + " ]; do sleep 0.05; done\ntouch " +
                  hooks.file("slow-ended"));
  hooks.write("tandem-on-success-payload", "cat > " + hooks.file("success.json"));
  PgbenchLoad load(pg_, db_);
  load.start();
  const std::string flags = " --approve all --hooks-path " + hooks.path() + " --hook-timeout 300s";
  const std::string out = write_temp_file("", ".log");
  const pid_t pid =
      spawn("env TANDEM_DSN='" + pg_.dsn(db_) + "' " + tandemd("run " + spec_path_ + flags), out);
  // The backfill, the shadow read and the check all pass while the backfill's
  // hook hangs; the cutover is held by its hook.
  bool held = false;
  for (int i = 0; i < 2400 && !held; ++i) {
    std::this_thread::sleep_for(50ms);
    try {  // the state schema does not exist at first
      held = pg_.psql(db_,
                      "SELECT EXISTS (SELECT FROM tandem.events WHERE kind = "
                      "'cutover_held')") == "t";
    } catch (const std::exception&) {
    }
  }
  ASSERT_TRUE(held) << read_file(out);
  EXPECT_TRUE(hooks.exists("slow-started"));
  EXPECT_FALSE(hooks.exists("slow-ended")) << "the slow hook ended before the backfill did";
  EXPECT_EQ(pg_.psql(db_, "SELECT state || ' ' || phase FROM tandem.migrations"),
            "waiting_approval 5");
  EXPECT_EQ(
      pg_.psql(db_, "SELECT count(*) FROM tandem.steps WHERE status <> 'pending' AND phase = 5"),
      "0");
  std::ofstream(hooks.file("release")) << "";
  int status = 0;
  waitpid(pid, &status, 0);
  const std::string first = read_file(out);
  ASSERT_TRUE(WIFEXITED(status)) << first;
  EXPECT_EQ(WEXITSTATUS(status), 3) << first;
  EXPECT_NE(first.find("migration abalance_bigint: cutover is held: a before-cutover hook "
                       "failed: tandem-on-before-cutover exited with status 3: the release train "
                       "is not ready\nWhen the hook passes, run again: tandemd run " +
                       spec_path_ + "\n"),
            std::string::npos)
      << first;
  // Still held while the hook fails; once it passes, the cutover and the rest.
  auto r = run("run " + spec_path_ + flags);
  EXPECT_EQ(r.exit_code, 3) << r.output;
  std::ofstream(hooks.file("allow")) << "";
  r = run("run " + spec_path_ + flags);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  load.stop();
  EXPECT_EQ(load.failures(), 0) << load.last_error_output();
  EXPECT_GT(load.transactions(), 0);
  EXPECT_TRUE(tpcb_invariant_holds(pg_, db_));
  EXPECT_EQ(column_type(pg_, db_, "pgbench_accounts", "abalance"), "bigint");
  // Every event in the migration's order (the before-cutover ones ran while
  // the queue waited for the slow hook, so they are checked apart).
  std::string queued, gates;
  std::istringstream calls(read_file(hooks.file("calls")));
  for (std::string line; std::getline(calls, line);) {
    (line.rfind("before-cutover", 0) == 0 ? gates : queued) += line + "\n";
  }
  EXPECT_EQ(queued,
            "start prepare\nphase-change prepare\nphase-change dual_write\nphase-change "
            "backfill\nphase-change shadow_read\nphase-change cutover\nphase-change "
            "cleanup\nsuccess cleanup\n");
  EXPECT_EQ(gates, "before-cutover cutover\nbefore-cutover cutover\nbefore-cutover cutover\n");
  const auto payload = nlohmann::json::parse(read_file(hooks.file("success.json")));
  EXPECT_EQ(payload["hook"], "success");
  EXPECT_EQ(payload["migration"], "abalance_bigint");
  EXPECT_NE(payload["database"].get<std::string>().find("dbname=" + db_), std::string::npos);
  // A bad hook flag changes nothing and says why.
  r = run("run " + spec_path_ + " --hooks-path /nonexistent/hooks");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(r.output, "tandemd: hooks path /nonexistent/hooks is not a directory\n");
}

// Under journald, lines go through the journal's native protocol with the
// migration, phase and step as fields. The journal's socket is stood in
// for: in a mount namespace of its own, the daemon's /run is a tmpfs whose
// systemd/journal is a directory where the test listens.
TEST_F(Cli, UnderJournaldLinesCarryTheMigrationPhaseAndStepAsFields) {
  if (run_command("unshare -m true").exit_code != 0) {
    GTEST_SKIP() << "no mount namespace here (unshare -m needs CAP_SYS_ADMIN)";
  }
  char name[] = "/tmp/tandem-journal-XXXXXX";
  const std::string dir = mkdtemp(name);
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = dir + "/socket";
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  int big = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  const std::string err = write_temp_file("", ".log");
  struct stat st {};
  ASSERT_EQ(stat(err.c_str(), &st), 0);
  const std::string stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  // Read as journald does, while the run sends: a full queue would block it.
  std::vector<std::map<std::string, std::string>> entries;
  std::atomic<bool> done{false};
  std::thread reader([&] {
    char buf[65536];
    while (!done) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) continue;
      std::map<std::string, std::string> e;
      std::istringstream in(std::string(buf, static_cast<size_t>(n)));
      for (std::string line; std::getline(in, line);) {
        const auto eq = line.find('=');
        if (eq != std::string::npos) e[line.substr(0, eq)] = line.substr(eq + 1);
      }
      entries.push_back(e);
    }
  });
  auto r = run_command(
      "unshare -m sh -c 'mount -t tmpfs tmpfs /run && mkdir -p "
      "/run/systemd/journal && mount --bind " +
      dir + " /run/systemd/journal && exec env JOURNAL_STREAM=" + stream + " TANDEM_DSN=\"" +
      pg_.dsn(db_) + "\" " + tandemd("run " + spec_path_ + " --until backfill") + " 2>>" + err +
      "'");
  EXPECT_EQ(r.exit_code, 0) << r.output << read_file(err);
  // Every log line went to the journal; stderr has the command's last word only.
  EXPECT_EQ(read_file(err),
            "migration abalance_bigint stopped after phase backfill as asked; run again without "
            "--until to go on\n");
  std::this_thread::sleep_for(200ms);  // what is still queued
  done = true;
  reader.join();
  close(fd);
  run_command("rm -rf " + dir);
  ASSERT_FALSE(entries.empty());
  bool step_line = false;
  for (const auto& e : entries) {
    EXPECT_EQ(e.at("SYSLOG_IDENTIFIER"), "tandemd");
    EXPECT_EQ(e.at("PRIORITY").size(), 1u);
    EXPECT_EQ(e.at("MESSAGE").find('\n'), std::string::npos);
    if (e.count("MIGRATION")) {
      EXPECT_EQ(e.at("MIGRATION"), "abalance_bigint");
      // The text still names it, for journalctl's plain output.
      EXPECT_EQ(e.at("MESSAGE").rfind("migration abalance_bigint: ", 0), 0u) << e.at("MESSAGE");
    }
    if (e.count("STEP") && e.at("STEP") == "1.backfill") {
      step_line = true;
      EXPECT_EQ(e.at("PHASE"), "backfill");
    }
  }
  EXPECT_TRUE(step_line) << entries.size() << " entries, none from the backfill step";
}

}  // namespace
}  // namespace tandem::testing
