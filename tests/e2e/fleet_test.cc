// End to end: `tandemd fleet` running the pgbench example on many databases
// of several PostgreSQL clusters, under pgbench load, in waves; a target
// that cannot run stopping its wave; a wave rolled back; one of two runners
// killed with SIGKILL and the other finishing its targets.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "support/scenario.h"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;

std::string example_spec() {
  return std::string(TANDEM_SOURCE_DIR) + "/migrations/examples/pgbench_abalance_bigint.yaml";
}

// Clusters, each with a template database: pgbench at scale 1 ("full", for
// targets under load) and the same cut to 5,000 accounts ("small").
class Fleet : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    for (int i = 0; i < 3; ++i) {
      clusters_.push_back(std::make_unique<PgServer>());
      PgServer& pg = *clusters_.back();
      const std::string full = pg.create_database("tpl_full");
      pgbench_init(pg, full, 1);
      pg.psql(full, "VACUUM ANALYZE");
      const std::string small = pg.create_database("tpl_small");
      pgbench_init(pg, small, 1);
      pg.psql(small,
              "DELETE FROM pgbench_accounts WHERE aid > 5000; VACUUM ANALYZE pgbench_accounts");
      templates_.push_back({full, small});
    }
  }
  static void TearDownTestSuite() { clusters_.clear(); }

  struct Target {
    int cluster;
    std::string db, name, labels;
  };
  // A new database on `cluster` from its template.
  Target make_target(int cluster, bool full, const std::string& name, const std::string& labels) {
    PgServer& pg = *clusters_[cluster];
    const std::string db = "f" + std::to_string(counter_++) + "_" + name;
    pg.psql("postgres", "CREATE DATABASE " + db + " TEMPLATE " +
                            (full ? templates_[cluster].first : templates_[cluster].second));
    return {cluster, db, name, labels};
  }
  std::string fleet_file(const std::vector<Target>& targets, const std::string& waves,
                         const std::string& extra = "") {
    std::ostringstream f;
    f << "name: fleet" << counter_++ << "\nmigration: " << example_spec() << "\ntargets:\n";
    for (const auto& t : targets) {
      f << "  - {name: " << t.name << ", dsn: '" << clusters_[t.cluster]->dsn(t.db)
        << "', labels: {" << t.labels << "}}\n";
    }
    f << "waves:\n" << waves << extra;
    return write_temp_file(f.str());
  }
  std::string control_dsn() { return clusters_[0]->dsn(control_db_); }
  CommandResult fleet(const std::string& args) {
    return run_command(tandemd("fleet " + args + " --control-dsn '" + control_dsn() + "'"));
  }
  std::string control(const std::string& sql) { return clusters_[0]->psql(control_db_, sql); }
  std::string on(const Target& t, const std::string& sql) {
    return clusters_[t.cluster]->psql(t.db, sql);
  }
  void SetUp() override { control_db_ = clusters_[0]->create_database("control"); }

  static std::vector<std::unique_ptr<PgServer>> clusters_;
  static std::vector<std::pair<std::string, std::string>> templates_;
  static int counter_;
  std::string control_db_;
};

std::vector<std::unique_ptr<PgServer>> Fleet::clusters_;
std::vector<std::pair<std::string, std::string>> Fleet::templates_;
int Fleet::counter_ = 0;

// 30 databases on 3 clusters: a canary, then three waves of 10, 10 and 9
// with parallel 4; pgbench on three of them (one per later wave, one per
// cluster) all along. Every target completes, every invariant holds, no
// pgbench transaction fails, and the synchronised cutover began only after
// the last target was ready.
TEST_F(Fleet, CanaryThenWavesUnderLoadWithSynchronisedCutover) {
  std::vector<Target> targets;
  std::vector<int> loaded;
  for (int i = 0; i < 30; ++i) {
    const int cluster = i % 3;
    const std::string ring = i == 0 ? "canary" : "r" + std::to_string((i - 1) / 10 + 1);
    const bool full = i == 4 || i == 14 || i == 26;
    if (full) loaded.push_back(i);
    targets.push_back(make_target(cluster, full, "t" + std::to_string(i), "ring: " + ring));
  }
  const std::string file = fleet_file(targets,
                                      "  - {name: canary, select: {ring: canary}}\n"
                                      "  - {name: r1, select: {ring: r1}, parallel: 4}\n"
                                      "  - {name: r2, select: {ring: r2}, parallel: 4}\n"
                                      "  - {name: r3, select: {ring: r3}, parallel: 4}\n");
  std::vector<std::unique_ptr<PgbenchLoad>> loads;
  for (int i : loaded) {
    loads.push_back(
        std::make_unique<PgbenchLoad>(*clusters_[targets[i].cluster], targets[i].db, 2));
    loads.back()->start();
  }
  std::this_thread::sleep_for(1s);

  CommandResult first = fleet("run " + file);
  EXPECT_EQ(first.exit_code, 3) << first.output;
  EXPECT_NE(first.output.find("30 cut_over"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("--approve cleanup"), std::string::npos) << first.output;
  // The barrier: every cutover began after the last target was ready, and
  // the canary was ready before any later wave's target started.
  EXPECT_EQ(control("SELECT max(ready_at) < min(cutover_started_at) FROM tandem.fleet_targets"),
            "t");
  EXPECT_EQ(control("SELECT count(*) FROM tandem.fleet_targets WHERE ready_at IS NULL OR "
                    "cut_over_at IS NULL"),
            "0");
  EXPECT_EQ(control("SELECT (SELECT ready_at FROM tandem.fleet_targets WHERE target = 't0') <"
                    " (SELECT min(started_at) FROM tandem.fleet_targets WHERE wave <> 'canary')"),
            "t");
  // Waves in order: each wave's first start after the previous wave's last ready.
  EXPECT_EQ(control("SELECT bool_and(w.first_start > p.last_ready) FROM"
                    " (SELECT wave_ordinal, min(started_at) AS first_start FROM"
                    "  tandem.fleet_targets GROUP BY 1) w JOIN"
                    " (SELECT wave_ordinal, max(ready_at) AS last_ready FROM"
                    "  tandem.fleet_targets GROUP BY 1) p ON p.wave_ordinal = w.wave_ordinal - 1"),
            "t");

  CommandResult status = fleet("status " + file + " --json");
  ASSERT_EQ(status.exit_code, 0) << status.output;
  const auto j = nlohmann::json::parse(status.output);
  EXPECT_EQ(j["state"], "waiting_approval");
  EXPECT_EQ(j["waves"].size(), 4u);
  EXPECT_EQ(j["targets"].size(), 30u);
  EXPECT_EQ(j["reference"], "t0");

  CommandResult second = fleet("run " + file + " --approve cleanup");
  EXPECT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("30 completed"), std::string::npos) << second.output;
  std::this_thread::sleep_for(1s);
  for (auto& l : loads) l->stop();
  for (size_t k = 0; k < loads.size(); ++k) {
    EXPECT_EQ(loads[k]->failures(), 0) << loads[k]->last_error_output();
    EXPECT_GT(loads[k]->transactions(), 100);
    EXPECT_TRUE(
        tpcb_invariant_holds(*clusters_[targets[loaded[k]].cluster], targets[loaded[k]].db));
  }
  for (const auto& t : targets) {
    EXPECT_EQ(column_type(*clusters_[t.cluster], t.db, "pgbench_accounts", "abalance"), "bigint")
        << t.name;
    EXPECT_EQ(leftovers(*clusters_[t.cluster], t.db, "pgbench_accounts"), "") << t.name;
  }
  CommandResult text = fleet("status " + file);
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_NE(text.output.find("completed, 30 targets"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("wave r3: 9 completed"), std::string::npos) << text.output;
}

// A target whose table lacks the column differs from the canary's schema:
// it is held before anything runs on it, its wave stops (on_error: stop),
// the later wave never starts, and rolling the wave back restores every
// target in it.
TEST_F(Fleet, ADriftingTargetStopsItsWaveAndTheWaveRollsBack) {
  std::vector<Target> targets = {
      make_target(0, false, "c", "ring: canary"), make_target(1, false, "a1", "ring: a"),
      make_target(2, false, "a2", "ring: a"), make_target(0, false, "a3", "ring: a"),
      make_target(1, false, "b1", "ring: b")};
  on(targets[2], "ALTER TABLE pgbench_accounts DROP COLUMN abalance");
  const std::string file = fleet_file(targets,
                                      "  - {name: canary, select: {ring: canary}}\n"
                                      "  - {name: a, select: {ring: a}, parallel: 3}\n"
                                      "  - {name: b, select: rest}\n");
  CommandResult r = fleet("run " + file);
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("a2 (wave a) held: its schema differs from c's (the reference)"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("-public.pgbench_accounts: column abalance integer"), std::string::npos)
      << r.output;
  EXPECT_EQ(control("SELECT string_agg(target || '=' || state, ',' ORDER BY target) FROM "
                    "tandem.fleet_targets"),
            "a1=ready,a2=held,a3=ready,b1=pending,c=ready");
  EXPECT_EQ(on(targets[4], "SELECT count(*) FROM pg_namespace WHERE nspname = 'tandem'"), "0");
  EXPECT_EQ(on(targets[2], "SELECT count(*) FROM pg_namespace WHERE nspname = 'tandem'"), "0");

  CommandResult rb = fleet("rollback " + file + " --wave a");
  EXPECT_EQ(rb.exit_code, 0) << rb.output;
  EXPECT_EQ(control("SELECT string_agg(target || '=' || state, ',' ORDER BY target) FROM "
                    "tandem.fleet_targets"),
            "a1=rolled_back,a2=rolled_back,a3=rolled_back,b1=pending,c=ready");
  for (int i : {1, 3}) {
    EXPECT_EQ(
        column_type(*clusters_[targets[i].cluster], targets[i].db, "pgbench_accounts", "abalance"),
        "integer");
    EXPECT_EQ(leftovers(*clusters_[targets[i].cluster], targets[i].db, "pgbench_accounts"), "");
  }
  CommandResult events = fleet("events " + file);
  EXPECT_NE(events.output.find("a2  held: its schema differs"), std::string::npos) << events.output;
}

// With drift: ignore and on_error: continue, a target whose migration fails
// (its prechecks refuse it) does not stop the later wave; the run ends with
// exit 4 naming it. Each target cuts over in its wave (cutover: each), and
// with cleanup: wave a wave whose targets are all cut over cleans up: the
// failed target's wave does not.
TEST_F(Fleet, AFailedTargetUnderContinueLetsTheNextWaveGo) {
  std::vector<Target> targets = {
      make_target(0, false, "c", "ring: canary"), make_target(1, false, "a1", "ring: a"),
      make_target(2, false, "a2", "ring: a"), make_target(0, false, "b1", "ring: b")};
  on(targets[2], "ALTER TABLE pgbench_accounts DROP COLUMN abalance");
  const std::string file =
      fleet_file(targets,
                 "  - {name: canary, select: {ring: canary}}\n"
                 "  - {name: a, select: {ring: a}, parallel: 2, on_error: continue}\n"
                 "  - {name: b, select: rest}\n",
                 "drift: ignore\ncutover: each\ncleanup: wave\n");
  CommandResult r = fleet("run " + file + " --approve cleanup");
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("a2 (wave a) failed:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("abalance"), std::string::npos) << r.output;
  EXPECT_EQ(control("SELECT string_agg(target || '=' || state, ',' ORDER BY target) FROM "
                    "tandem.fleet_targets"),
            "a1=cut_over,a2=failed,b1=completed,c=completed");
}

// Two runners share a fleet; one is killed with SIGKILL while it works on
// targets, and the other takes them over from their checkpoints and
// finishes the fleet.
TEST_F(Fleet, TheOtherRunnerFinishesAKilledRunnersTargets) {
  std::vector<Target> targets = {make_target(0, false, "c", "ring: canary")};
  for (int i = 0; i < 8; ++i) {
    targets.push_back(make_target(i % 3, true, "m" + std::to_string(i), "ring: main"));
  }
  const std::string file = fleet_file(targets,
                                      "  - {name: canary, select: {ring: canary}}\n"
                                      "  - {name: main, select: rest, parallel: 4}\n",
                                      "limits: {per_daemon: 2}\n");
  const std::string cmd =
      tandemd("fleet run " + file + " --approve cleanup --control-dsn '" + control_dsn() + "'");
  const std::string log_a = write_temp_file("", ".log"), log_b = write_temp_file("", ".log");
  pid_t a = spawn(cmd + " --owner runner-a", log_a);
  pid_t b = spawn(cmd + " --owner runner-b", log_b);
  // Kill A once it works on a target of the main wave.
  ASSERT_TRUE(answers_within(*clusters_[0], control_db_,
                             "SELECT count(*) > 0 FROM tandem.fleet_targets WHERE owner = "
                             "'runner-a' AND wave = 'main' AND state = 'running' AND rows_done > 0",
                             "t", 120s))
      << read_file(log_a);
  const std::string taken = control(
      "SELECT string_agg(target, ',' ORDER BY target) FROM tandem.fleet_targets WHERE owner = "
      "'runner-a'");
  kill(a, SIGKILL);
  int status = 0;
  waitpid(a, &status, 0);
  const auto deadline = std::chrono::steady_clock::now() + 300s;
  while (waitpid(b, &status, WNOHANG) != b) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << read_file(log_b);
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << read_file(log_b);
  EXPECT_NE(read_file(log_b).find("taking it over from its checkpoints"), std::string::npos)
      << read_file(log_b);
  EXPECT_EQ(control("SELECT count(*) FROM tandem.fleet_targets WHERE state = 'completed'"), "9");
  EXPECT_EQ(control("SELECT max(ready_at) < min(cutover_started_at) FROM tandem.fleet_targets"),
            "t");
  for (const auto& t : targets) {
    EXPECT_EQ(column_type(*clusters_[t.cluster], t.db, "pgbench_accounts", "abalance"), "bigint")
        << t.name << " (runner A had " << taken << ")";
    EXPECT_TRUE(tpcb_invariant_holds(*clusters_[t.cluster], t.db)) << t.name;
  }
}

// A wave paused while a runner works on it: its targets stop at a safe
// point (rows stop moving, nobody owns them) and none starts, the runner
// waits; resumed, the same runner finishes them from their checkpoints.
// `retry` sets a failed target back to pending for the next run.
TEST_F(Fleet, PauseResumeAndRetry) {
  std::vector<Target> targets = {make_target(0, false, "c", "ring: canary")};
  for (int i = 0; i < 4; ++i) {
    targets.push_back(make_target(i % 3, true, "p" + std::to_string(i), "ring: main"));
  }
  const std::string file = fleet_file(targets,
                                      "  - {name: canary, select: {ring: canary}}\n"
                                      "  - {name: main, select: rest, parallel: 2}\n");
  // Small batches, so that the backfill takes a while.
  const std::string spec = write_temp_file(abalance_spec(200));
  {
    std::string text = read_file(file);
    text.replace(text.find("migration: "),
                 text.find('\n', text.find("migration: ")) - text.find("migration: "),
                 "migration: " + spec);
    FILE* f = fopen(file.c_str(), "w");
    fputs(text.c_str(), f);
    fclose(f);
  }
  const std::string log = write_temp_file("", ".log");
  pid_t runner = spawn(
      tandemd("fleet run " + file + " --approve cleanup --control-dsn '" + control_dsn() + "'"),
      log);
  ASSERT_TRUE(answers_within(*clusters_[0], control_db_,
                             "SELECT count(*) > 0 FROM tandem.fleet_targets WHERE wave = 'main' "
                             "AND state = 'running' AND rows_done > 0",
                             "t", 120s))
      << read_file(log);
  CommandResult paused = fleet("pause " + file + " --wave main");
  EXPECT_EQ(paused.exit_code, 0) << paused.output;
  EXPECT_NE(paused.output.find("wave main of fleet"), std::string::npos) << paused.output;
  ASSERT_TRUE(answers_within(*clusters_[0], control_db_,
                             "SELECT count(*) FROM tandem.fleet_targets WHERE wave = 'main' AND "
                             "owner IS NOT NULL",
                             "0", 30s))
      << read_file(log);
  const std::string before = control("SELECT sum(rows_done) FROM tandem.fleet_targets");
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(control("SELECT sum(rows_done) FROM tandem.fleet_targets"), before);
  EXPECT_EQ(control("SELECT count(*) FROM tandem.fleet_targets WHERE state = 'completed'"), "0");
  CommandResult status = fleet("status " + file);
  EXPECT_NE(status.output.find("; paused by tandemd fleet pause by"), std::string::npos)
      << status.output;
  int st = 0;
  EXPECT_EQ(waitpid(runner, &st, WNOHANG), 0) << "the runner waits while paused";
  CommandResult resumed = fleet("resume " + file);
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("1 pause lifted"), std::string::npos) << resumed.output;
  const auto deadline = std::chrono::steady_clock::now() + 300s;
  while (waitpid(runner, &st, WNOHANG) != runner) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << read_file(log);
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(WEXITSTATUS(st), 0) << read_file(log);
  EXPECT_NE(read_file(log).find("resumes from its checkpoints"), std::string::npos)
      << read_file(log);
  EXPECT_EQ(control("SELECT count(*) FROM tandem.fleet_targets WHERE state = 'completed'"), "5");
  for (const auto& t : targets) EXPECT_TRUE(tpcb_invariant_holds(*clusters_[t.cluster], t.db));

  // retry: a failed target goes back to pending, once.
  control(
      "UPDATE tandem.fleet_targets SET state = 'failed', last_error = 'x' WHERE target = "
      "'p1'");
  CommandResult retry = fleet("retry " + file + " --target p1");
  EXPECT_EQ(retry.exit_code, 0) << retry.output;
  EXPECT_NE(retry.output.find(": 1 target failed or held set to pending"), std::string::npos)
      << retry.output;
  EXPECT_EQ(control("SELECT state FROM tandem.fleet_targets WHERE target = 'p1'"), "pending");
  CommandResult again = fleet("retry " + file);
  EXPECT_NE(again.output.find(": 0 targets"), std::string::npos) << again.output;
  CommandResult bad = fleet("pause " + file + " --wave nope");
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
}

// Two `tandemd serve` daemons run one fleet from their config (`fleets:`),
// its control database being their own; one is killed with SIGKILL while
// it works on targets, and the other finishes them. `tandemctl fleet`
// lists the fleet, shows its status (the table and JSON), approves its
// cleanup, pauses and resumes it; /metrics-style lines come from the
// daemon's snapshot.
TEST_F(Fleet, TwoDaemonsShareAFleetAndOneIsKilled) {
  std::vector<Target> targets = {make_target(0, false, "c", "ring: canary")};
  for (int i = 0; i < 6; ++i) {
    targets.push_back(make_target(i % 3, true, "d" + std::to_string(i), "ring: main"));
  }
  const std::string file = fleet_file(targets,
                                      "  - {name: canary, select: {ring: canary}}\n"
                                      "  - {name: main, select: rest, parallel: 4}\n",
                                      "limits: {per_daemon: 2}\n");
  // The fleet's name is the file's `name:` line.
  const std::string text = read_file(file);
  const std::string name = text.substr(6, text.find('\n') - 6);
  const std::string config =
      write_temp_file("control:\n  allowed_uids: [0]\nfleets:\n  - " + file + "\n");
  const std::string sock_a = "/tmp/tandem-fleet-a-" + std::to_string(getpid());
  const std::string sock_b = "/tmp/tandem-fleet-b-" + std::to_string(getpid());
  const std::string log_a = write_temp_file("", ".log"), log_b = write_temp_file("", ".log");
  const int port = 20000 + getpid() % 20000;
  auto serve = [&](const std::string& sock, const std::string& log, const std::string& extra = "") {
    return spawn(tandemd("serve --dsn '" + control_dsn() + "' --socket " + sock + " --config " +
                         config + extra),
                 log);
  };
  auto ctl = [&](const std::string& sock, const std::string& args) {
    return run_command(std::string(TANDEMCTL_PATH) + " --socket " + sock + " " + args);
  };
  pid_t a = serve(sock_a, log_a);
  pid_t b = serve(sock_b, log_b, " --metrics-listen 127.0.0.1:" + std::to_string(port));
  // Kill A once it works on a target of the main wave.
  ASSERT_TRUE(answers_within(*clusters_[0], control_db_,
                             "SELECT count(*) > 0 FROM tandem.fleet_targets f WHERE wave = 'main'"
                             " AND state = 'running' AND rows_done > 0 AND owner LIKE '%:" +
                                 std::to_string(a) + "'",
                             "t", 120s))
      << read_file(log_a) << control("SELECT target, state, owner FROM tandem.fleet_targets");
  kill(a, SIGKILL);
  waitpid(a, nullptr, 0);
  // B takes A's targets over and brings every target to the cleanup gate.
  ASSERT_TRUE(answers_within(*clusters_[0], control_db_,
                             "SELECT count(*) FROM tandem.fleet_targets WHERE state = 'cut_over'",
                             "7", 240s))
      << read_file(log_b) << control("SELECT target, state, last_error FROM tandem.fleet_targets");
  EXPECT_NE(read_file(log_b).find("taking it over from its checkpoints"), std::string::npos)
      << read_file(log_b);
  CommandResult list = ctl(sock_b, "fleet list");
  EXPECT_EQ(list.exit_code, 0) << list.output;
  EXPECT_NE(list.output.find(name + "  waiting_approval  7 targets"), std::string::npos)
      << list.output;
  CommandResult status = ctl(sock_b, "fleet status " + name);
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_NE(status.output.find("wave main: 6 cut_over"), std::string::npos) << status.output;
  CommandResult js = ctl(sock_b, "--json fleet status " + name);
  const auto j = nlohmann::json::parse(js.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << js.output;
  EXPECT_EQ(j["state"], "waiting_approval");
  EXPECT_EQ(j["targets"].size(), 7u);
  // Paused, the approval waits; resumed, cleanup runs on every target.
  EXPECT_EQ(ctl(sock_b, "fleet pause " + name).exit_code, 0);
  CommandResult approve = ctl(sock_b, "fleet approve " + name);
  EXPECT_EQ(approve.exit_code, 0) << approve.output;
  EXPECT_NE(approve.output.find("cleanup approved"), std::string::npos) << approve.output;
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(control("SELECT count(*) FROM tandem.fleet_targets WHERE state = 'completed'"), "0");
  CommandResult resume = ctl(sock_b, "fleet resume " + name);
  EXPECT_NE(resume.output.find("1 pause lifted"), std::string::npos) << resume.output;
  ASSERT_TRUE(answers_within(*clusters_[0], control_db_,
                             "SELECT count(*) FROM tandem.fleet_targets WHERE state = 'completed'",
                             "7", 120s))
      << read_file(log_b);
  EXPECT_EQ(control("SELECT max(ready_at) < min(cutover_started_at) FROM tandem.fleet_targets"),
            "t");
  for (const auto& t : targets) {
    EXPECT_EQ(column_type(*clusters_[t.cluster], t.db, "pgbench_accounts", "abalance"), "bigint")
        << t.name;
    EXPECT_TRUE(tpcb_invariant_holds(*clusters_[t.cluster], t.db)) << t.name;
  }
  CommandResult unknown = ctl(sock_b, "fleet status nope");
  EXPECT_EQ(unknown.exit_code, 1) << unknown.output;
  EXPECT_NE(unknown.output.find("runs no fleet named \"nope\"; it runs " + name), std::string::npos)
      << unknown.output;
  // The daemon's metrics, by fleet, wave and target.
  const CommandResult scrape =
      run_command("bash -c 'exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(port) +
                  "; printf \"GET /metrics HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3'");
  EXPECT_NE(scrape.output.find("tandem_fleet_targets{fleet=\"" + name +
                               "\",wave=\"main\",state=\"completed\"} 6"),
            std::string::npos)
      << scrape.output;
  EXPECT_NE(scrape.output.find("tandem_fleet_target_state{fleet=\"" + name +
                               "\",wave=\"main\",target=\"d3\",state=\"completed\"} 1"),
            std::string::npos)
      << scrape.output;
  CommandResult events = ctl(sock_b, "fleet events " + name + " --limit 200");
  EXPECT_NE(events.output.find("approved cleanup"), std::string::npos) << events.output;
  kill(b, SIGTERM);
  int st = 0;
  waitpid(b, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << read_file(log_b);
}

// Targets from a query against the control database; the canary's wave
// soaks 2 s before the next starts; the canary's cutover fails (an event
// trigger refuses its DDL once it is ready), and no other target begins
// its cutover: they all stay ready, on the old side.
TEST_F(Fleet, TargetsFromAQuerySoakAndAFailedCutoverStopsTheRest) {
  std::vector<Target> targets = {make_target(0, false, "q0", "")};
  for (int i = 1; i < 4; ++i)
    targets.push_back(make_target(i % 3, false, "q" + std::to_string(i), ""));
  control("CREATE TABLE shards (name text, dsn text, labels jsonb)");
  for (size_t i = 0; i < targets.size(); ++i) {
    control("INSERT INTO shards VALUES ('" + targets[i].name + "', '" +
            clusters_[targets[i].cluster]->dsn(targets[i].db) + "', '{\"ring\": \"" +
            (i == 0 ? "canary" : "main") + "\"}')");
  }
  const std::string file =
      write_temp_file("name: queried\nmigration: " + example_spec() +
                      "\ntargets_query: SELECT name, dsn, labels FROM shards ORDER BY name\n"
                      "waves:\n"
                      "  - {name: canary, select: {ring: canary}, soak: 2s}\n"
                      "  - {name: main, select: rest, parallel: 3}\n"
                      "limits: {per_daemon: 1}\n");
  const std::string log = write_temp_file("", ".log");
  pid_t runner =
      spawn(tandemd("fleet run " + file + " --control-dsn '" + control_dsn() + "'"), log);
  ASSERT_TRUE(answers_within(*clusters_[0], control_db_,
                             "SELECT state FROM tandem.fleet_targets WHERE target = 'q0'", "ready",
                             60s))
      << read_file(log);
  on(targets[0],
     "CREATE FUNCTION no_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN RAISE "
     "EXCEPTION 'no DDL here'; END $$; CREATE EVENT TRIGGER no_ddl ON ddl_command_start "
     "EXECUTE FUNCTION no_ddl()");
  int st = 0;
  const auto deadline = std::chrono::steady_clock::now() + 180s;
  while (waitpid(runner, &st, WNOHANG) != runner) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << read_file(log);
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(WEXITSTATUS(st), 4) << read_file(log);
  EXPECT_NE(read_file(log).find("q0 (wave canary) failed: "), std::string::npos) << read_file(log);
  EXPECT_NE(read_file(log).find("no DDL here"), std::string::npos) << read_file(log);
  EXPECT_EQ(control("SELECT string_agg(target || '=' || state || '/' || (cutover_started_at IS "
                    "NOT NULL)::text, ',' ORDER BY target) FROM tandem.fleet_targets"),
            "q0=failed/true,q1=ready/false,q2=ready/false,q3=ready/false");
  // The soak: the main wave began at least 2 s after the canary was ready.
  EXPECT_EQ(control("SELECT min(started_at) FILTER (WHERE wave = 'main') - max(ready_at) FILTER "
                    "(WHERE wave = 'canary') >= interval '2 s' FROM tandem.fleet_targets"),
            "t");
  for (size_t i = 1; i < targets.size(); ++i) {
    EXPECT_EQ(
        column_type(*clusters_[targets[i].cluster], targets[i].db, "pgbench_accounts", "abalance"),
        "integer")
        << "still on the old side: " << targets[i].name;
  }
}

TEST_F(Fleet, ValidateAndBadInput) {
  std::vector<Target> targets = {make_target(0, false, "c", "ring: canary")};
  const std::string file = fleet_file(targets, "  - {name: canary, select: {ring: canary}}\n");
  CommandResult ok = run_command(tandemd("fleet validate " + file));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("1 targets in 1 waves: valid"), std::string::npos) << ok.output;
  CommandResult example = run_command(tandemd("fleet validate " + std::string(TANDEM_SOURCE_DIR) +
                                              "/migrations/fleets/pgbench_shards.yaml"));
  EXPECT_EQ(example.exit_code, 0) << example.output;
  const std::string bad = write_temp_file("migration: " + example_spec() +
                                          "\ntargets: [{name: x, dsn: y}]\nwaves: [{name: w, "
                                          "select: {ring: z}}]\n");
  CommandResult r = fleet("run " + bad);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(":2:11: target \"x\" is in no wave"), std::string::npos) << r.output;
  EXPECT_EQ(control("SELECT count(*) FROM pg_namespace WHERE nspname = 'tandem'"), "0");
  CommandResult none = run_command(tandemd("fleet status " + file));
  EXPECT_EQ(none.exit_code, 2) << none.output;
  EXPECT_NE(none.output.find("no control database"), std::string::npos) << none.output;
}

}  // namespace
}  // namespace tandem::testing
