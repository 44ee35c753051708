// Shadow reads: a spec's query pairs answered with the old and the new
// query on sampled parameters, each set on one snapshot, under writers that
// hit the same keys. No false positive; a wrong new query is caught with
// the pair, the parameters and the rows; a stopped run goes on without
// comparing a finished sample again.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "support/scenario.h"
#include "support/writers.h"

namespace tandem::testing {
namespace {

constexpr int kUsers = 10000;

class ShadowReads : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = pg_.create_database("reads");
    q("CREATE TABLE users (id serial PRIMARY KEY, username text NOT NULL UNIQUE,"
      " user_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid());"
      "INSERT INTO users (username) SELECT 'u' || g FROM generate_series(1, " +
      std::to_string(kUsers) +
      ") g;"
      "CREATE TABLE orders (id bigserial PRIMARY KEY, username text NOT NULL, total int NOT NULL);"
      "INSERT INTO orders (username, total) SELECT 'u' || (1 + g % " +
      std::to_string(kUsers) +
      "), g % 100 FROM generate_series(1, 30000) g;"
      "CREATE INDEX orders_username ON orders (username);"
      "ANALYZE;");
  }
  std::string q(const std::string& sql) { return pg_.psql(db_, sql); }
  // orders gains user_id, looked up by username; the pair reads a user's
  // orders by username the old way and by user_id the new way.
  Spec spec(const std::string& new_query, int sample, const std::string& extra = "",
            const std::string& settings = "") {
    return spec_from(spec_text(new_query, sample, extra, settings));
  }
  std::string spec_text(const std::string& new_query, int sample, const std::string& extra = "",
                        const std::string& settings = "") {
    return std::string(
        "name: reads\nsettings: {lock_timeout: 300ms, retry_backoff: 20ms" + settings +
        "}\n"
        "operations:\n"
        "  - add_reference: {table: orders, column: user_id, type: uuid, via: username,"
        " references: users, referenced_column: user_id, lookup: username}\n"
        "shadow_reads:\n"
        "  - name: orders_of_user\n"
        "    params: {table: users, columns: [username], sample: " +
        std::to_string(sample) +
        ", seed: 3}\n"
        "    old: SELECT id, total FROM orders WHERE username = $1\n"
        "    new: \"" +
        new_query +
        "\"\n"
        "    compare: keyed\n"
        "    key: [id]\n" +
        extra);
  }
  RunOptions options(std::optional<Phase> until = Phase::kShadowRead) const {
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    o.until = until;
    o.actor = "test";
    return o;
  }
  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

const char* kByUserId =
    "SELECT o.id, o.total FROM orders o JOIN users u ON u.user_id = o.user_id"
    " WHERE u.username = $1";

// Inserts orders for users and moves totals of their orders: the same keys
// the pair reads.
void write_orders(Connection& c, int client, long n, Writers::Counts& add) {
  const std::string user = "u" + std::to_string(1 + (n * 7 + client * 13) % kUsers);
  if (n % 2 == 0) {
    c.exec("INSERT INTO orders (username, total) VALUES ($1, 1)", {user});
    add["inserted"] = 1;
  } else {
    c.exec("UPDATE orders SET total = total + 1 WHERE username = $1", {user});
  }
}

// Two sessions compare the sets (backfill_workers: 2), each set once.
TEST_F(ShadowReads, TenThousandComparisonsUnderWritersOnTheSameKeysFindNoDifference) {
  Spec s = spec(kByUserId, kUsers, "    min_samples: 9000\n", ", backfill_workers: 2");
  Plan plan = make_plan(s);
  ASSERT_NE(plan.find("reads.orders_of_user"), nullptr);
  Writers writer(pg_, db_, 2, write_orders);
  EXPECT_EQ(Executor(s, plan, options()).run(), RunOutcome::kReachedUntil);
  writer.stop();
  EXPECT_EQ(writer.failed(), 0) << writer.last_error();
  EXPECT_GT(writer.count("inserted"), 100);
  // Every user drawn once (BERNOULLI at 100% of a table this small), each
  // compared, none different.
  EXPECT_EQ(q("SELECT count(*) || '/' || count(done_at) || '/' || count(diff) ||"
              " '/' || count(DISTINCT params) FROM tandem.shadow_samples"),
            std::to_string(kUsers) + "/" + std::to_string(kUsers) + "/0/" + std::to_string(kUsers));
  EXPECT_EQ(q("SELECT status FROM tandem.steps WHERE step_id = 'reads.orders_of_user'"), "done");
}

TEST_F(ShadowReads, AWrongNewQueryIsCaughtNamingThePairTheParametersAndTheRows) {
  // Leaves out the orders of users whose number ends in 7, and reads the
  // total of every 50th order wrong (order g is user 1 + g % 10000's).
  Spec s = spec(
      "SELECT o.id, CASE WHEN o.id % 50 = 0 THEN o.total + 1 ELSE o.total END FROM orders o"
      " JOIN users u ON u.user_id = o.user_id WHERE u.username = $1 AND u.username NOT LIKE"
      " '%7'",
      300, "    max_mismatches: 2\n");
  Plan plan = make_plan(s);
  try {
    Executor(s, plan, options()).run();
    FAIL() << "the gate must fail the step";
  } catch (const StepFailedError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("step reads.orders_of_user failed: orders_of_user: "), std::string::npos) << m;
    EXPECT_NE(m.find(" of 300 parameter sets answered differently (at most 2 allowed); the first,"
                     " {u"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("rows only in old:"), std::string::npos) << m;
  }
  // Each user ending in 7 differs by the orders only the old query read,
  // each user of a 50th order by its total, and no other user differs.
  const std::string ends_in_7 = "params[1] LIKE '%7'";
  const std::string wrong_total =
      "(substr(params[1], 2)::int - 1) % 50 = 0 AND params[1] NOT LIKE '%7'";
  const auto count = [&](const std::string& where) {
    return std::stoi(q("SELECT count(*) FROM tandem.shadow_samples WHERE " + where));
  };
  EXPECT_GT(count(ends_in_7), 0);
  EXPECT_EQ(count(ends_in_7 + " AND diff LIKE '%rows only in old:%'"), count(ends_in_7));
  EXPECT_GT(count(wrong_total), 0);
  EXPECT_EQ(count(wrong_total + " AND diff ~ 'key \\(''[0-9]+''\\): total: old ''[0-9]+'', new'"),
            count(wrong_total));
  EXPECT_EQ(count("diff IS NOT NULL AND NOT (" + wrong_total + ") AND NOT " + ends_in_7), 0);
  // tandemd status counts them, with both sides' times.
  const std::string file = write_temp_file(spec_text(
      "SELECT o.id, CASE WHEN o.id % 50 = 0 THEN o.total + 1 ELSE o.total END FROM orders o"
      " JOIN users u ON u.user_id = o.user_id WHERE u.username = $1 AND u.username NOT LIKE"
      " '%7'",
      300, "    max_mismatches: 2\n"));
  auto status =
      run_command(tandemd("status " + file + " --json --dsn '" + pg_.dsn(db_) + "'") + " 2>&1");
  ASSERT_EQ(status.exit_code, 0) << status.output;
  const auto j = nlohmann::json::parse(status.output);
  nlohmann::json reads;
  for (const auto& st : j["steps"]) {
    if (st["id"] == "reads.orders_of_user") reads = st;
  }
  ASSERT_TRUE(reads.is_object()) << status.output;
  EXPECT_EQ(reads["status"], "failed");
  EXPECT_EQ(reads["samples"]["drawn"], 300);
  EXPECT_EQ(reads["samples"]["compared"], 300);
  EXPECT_EQ(reads["samples"]["mismatches"], count("diff IS NOT NULL"));
  EXPECT_GT(reads["samples"]["new_ms"]["p99"].get<double>(), 0);
  // tandemd diffs lists them, first drawn first: the pair, the parameters,
  // the rows and both sides' times.
  auto diffs = run_command(tandemd("diffs " + file +
                                   " --json --limit 3 --pair orders_of_user"
                                   " --dsn '" +
                                   pg_.dsn(db_) + "'") +
                           " 2>&1");
  ASSERT_EQ(diffs.exit_code, 0) << diffs.output;
  const auto d = nlohmann::json::parse(diffs.output)["diffs"];
  ASSERT_EQ(d.size(), 3u) << diffs.output;
  EXPECT_EQ(d[0]["pair"], "orders_of_user");
  EXPECT_EQ(d[0]["diff"].get<std::string>(),
            q("SELECT diff FROM tandem.shadow_samples WHERE diff IS NOT NULL ORDER BY ordinal"
              " LIMIT 1"));
  EXPECT_EQ(d[0]["params"][0].get<std::string>(),
            q("SELECT params[1] FROM tandem.shadow_samples WHERE diff IS NOT NULL ORDER BY"
              " ordinal LIMIT 1"));
  EXPECT_LT(d[0]["ordinal"].get<long long>(), d[1]["ordinal"].get<long long>());
  EXPECT_GT(d[0]["new_ms"].get<double>(), 0);
  diffs =
      run_command(tandemd("diffs " + file + " --limit 1 --dsn '" + pg_.dsn(db_) + "'") + " 2>&1");
  EXPECT_EQ(diffs.exit_code, 0) << diffs.output;
  EXPECT_EQ(diffs.output.rfind("orders_of_user #" + d[0]["ordinal"].dump() + " {" +
                                   d[0]["params"][0].get<std::string>() + "} (old ",
                               0),
            0u)
      << diffs.output;
  EXPECT_NE(diffs.output.find("\n  old "), std::string::npos) << diffs.output;
  diffs =
      run_command(tandemd("diffs " + file + " --pair nope --dsn '" + pg_.dsn(db_) + "'") + " 2>&1");
  EXPECT_EQ(diffs.exit_code, 1) << diffs.output;
  EXPECT_NE(diffs.output.find("--pair nope: the spec has no shadow read of that name"),
            std::string::npos)
      << diffs.output;
  // The gate holds until the operator accepts these differences, by name:
  // the same samples stand (not drawn again), recorded with who accepted.
  const std::string outcomes =
      q("SELECT string_agg(ordinal || ':' || coalesce(md5(diff), '-'), ',' ORDER BY ordinal)"
        " FROM tandem.shadow_samples");
  RunOptions accept = options();
  accept.accept_differences = {"orders_of_user"};
  EXPECT_EQ(Executor(s, plan, accept).run(), RunOutcome::kReachedUntil);
  EXPECT_EQ(q("SELECT string_agg(ordinal || ':' || coalesce(md5(diff), '-'), ',' ORDER BY ordinal)"
              " FROM tandem.shadow_samples"),
            outcomes);
  EXPECT_EQ(q("SELECT status FROM tandem.steps WHERE step_id = 'reads.orders_of_user'"), "done");
  EXPECT_EQ(q("SELECT actor || ' ' || (detail->>'pair') FROM tandem.events"
              " WHERE kind = 'differences_accepted'"),
            "test orders_of_user");
  // Rollback forgets the samples; nothing of tandem's is left.
  EXPECT_EQ(Executor(s, plan, options(std::nullopt)).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(q("SELECT count(*) FROM tandem.shadow_samples"), "0");
  EXPECT_EQ(leftovers(pg_, db_, "orders"), "");
}

// The same answers, four milliseconds slower each: the latency gate fails
// the step with both sides' times; without it the pair passes.
TEST_F(ShadowReads, ASlowerNewQueryIsCaughtByTheLatencyGate) {
  const std::string slow =
      "WITH pause AS MATERIALIZED (SELECT pg_sleep(0.004)) SELECT o.id, o.total FROM pause,"
      " orders o JOIN users u ON u.user_id = o.user_id WHERE u.username = $1";
  Spec s = spec(slow, 40, "    max_latency_ratio: {p50: 3}\n");
  Plan plan = make_plan(s);
  try {
    Executor(s, plan, options()).run();
    FAIL() << "the latency gate must fail the step";
  } catch (const StepFailedError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("orders_of_user: the new query's p50 is "), std::string::npos) << m;
    EXPECT_NE(m.find(" over 40 parameter sets (max_latency_ratio p50: 3.0x)"), std::string::npos)
        << m;
  }
  EXPECT_EQ(q("SELECT count(diff) || '/' || bool_and(new_ms > 4) FROM tandem.shadow_samples"),
            "0/true");
  EXPECT_EQ(Executor(s, plan, options(std::nullopt)).rollback(), RollbackOutcome::kRolledBack);
  Spec lenient = spec(slow, 40);
  Plan again = make_plan(lenient);
  EXPECT_EQ(Executor(lenient, again, options()).run(), RunOutcome::kReachedUntil);
}

// A write probe inserts an order through the old path (by username) before
// both reads, in their transaction, rolled back after: the sync carries it
// to the new path, so the pair agrees, and nothing is left. With the sync
// trigger dropped (a bug injected after the backfill), the new path misses
// the probe's order and the pair says so.
TEST_F(ShadowReads, AWriteProbeChecksTheSyncEndToEndAndIsRolledBack) {
  const std::string probe = "    write: INSERT INTO orders (username, total) VALUES ($1, 999)\n";
  Spec s = spec(kByUserId, 100, probe);
  Plan plan = make_plan(s);
  EXPECT_EQ(plan.find("reads.orders_of_user")->lock.mode, LockMode::kRowExclusive);
  const std::string orders = q("SELECT count(*) || '/' || max(id) FROM orders");
  EXPECT_EQ(Executor(s, plan, options()).run(), RunOutcome::kReachedUntil);
  EXPECT_EQ(q("SELECT count(*) || '/' || count(diff) FROM tandem.shadow_samples"), "100/0");
  EXPECT_EQ(q("SELECT count(*) || '/' || max(id) FROM orders"), orders);
  EXPECT_EQ(q("SELECT count(*) FROM orders WHERE total = 999"), "0");
  EXPECT_EQ(Executor(s, plan, options(std::nullopt)).rollback(), RollbackOutcome::kRolledBack);

  EXPECT_EQ(Executor(s, plan, options(Phase::kBackfill)).run(), RunOutcome::kReachedUntil);
  q("DO $$BEGIN EXECUTE (SELECT format('DROP TRIGGER %I ON orders', tgname) FROM pg_trigger"
    " WHERE tgrelid = 'orders'::regclass AND tgname LIKE 'zz_tandem%'); END$$");
  try {
    Executor(s, plan, options()).run();
    FAIL() << "the write probe must find the missing sync";
  } catch (const StepFailedError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("orders_of_user: 100 of 100 parameter sets answered differently"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("1 row only in old:"), std::string::npos) << m;
    EXPECT_NE(m.find(", '999')"), std::string::npos) << m;
  }
  EXPECT_EQ(q("SELECT count(*) FROM orders WHERE total = 999"), "0");
}

TEST_F(ShadowReads, AStoppedRunGoesOnWithoutComparingAFinishedSampleAgain) {
  Spec s = spec(kByUserId, 2000);
  Plan plan = make_plan(s);
  std::atomic<bool> stop{false};
  std::thread watcher([&] {
    auto c = connect_postgres(pg_.dsn(db_), "watcher");
    for (int i = 0; i < 3000 && !stop; ++i) {
      if (c->exec("SELECT count(*) FROM pg_tables WHERE tablename = 'shadow_samples'")
                  .integer(0, 0) == 1 &&
          c->exec("SELECT count(done_at) FROM tandem.shadow_samples").integer(0, 0) >= 300) {
        stop = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  RunOptions o = options();
  o.stop = &stop;
  const RunOutcome first = Executor(s, plan, o).run();
  stop = true;
  watcher.join();
  ASSERT_EQ(first, RunOutcome::kStopped);
  const std::string done_before =
      q("SELECT count(*) || '/' || coalesce(max(ordinal), 0) FROM tandem.shadow_samples"
        " WHERE done_at IS NOT NULL");
  const std::string stamps =
      q("SELECT string_agg(ordinal || '@' || done_at, ',' ORDER BY ordinal)"
        " FROM tandem.shadow_samples WHERE done_at IS NOT NULL");
  EXPECT_LT(std::stoi(done_before.substr(0, done_before.find('/'))), 2000) << done_before;
  EXPECT_EQ(Executor(s, plan, options()).run(), RunOutcome::kReachedUntil);
  // The samples finished before the stop kept their times: not compared again.
  EXPECT_EQ(q("SELECT string_agg(ordinal || '@' || done_at, ',' ORDER BY ordinal)"
              " FROM tandem.shadow_samples WHERE ordinal <= " +
              done_before.substr(done_before.find('/') + 1)),
            stamps);
  EXPECT_EQ(q("SELECT count(*) || '/' || count(done_at) || '/' || count(diff)"
              " FROM tandem.shadow_samples"),
            "2000/2000/0");
}

// After cutover a write through the new path (v2) must reach the old one
// (v1) through copy_table's `down`: the pair's second comparison, with the
// write before both reads and rolled back, checks that end to end.
TEST_F(ShadowReads, AProbeThroughTheNewPathAfterCutoverChecksTheWayBack) {
  const auto spec_text = [](const std::string& down) {
    return "name: back\nsettings: {lock_timeout: 300ms, retry_backoff: 20ms}\noperations:\n"
           "  - copy_table:\n      table: v1\n      to: v2\n      key: [id]\n"
           "      create: id int PRIMARY KEY, amount numeric(12,2) NOT NULL\n"
           "      up: {amount: cents / 100.0}\n" +
           down +
           "shadow_reads:\n"
           "  - name: cents\n"
           "    params: {table: v1, columns: [id], sample: 200, seed: 4}\n"
           "    old: SELECT cents FROM v1 WHERE id = $1::int\n"
           "    new: SELECT (amount * 100)::int FROM v2 WHERE id = $1::int\n"
           "    write_after_cutover: UPDATE v2 SET amount = amount + 1 WHERE id = $1::int\n";
  };
  const auto setup = [&](const std::string& db) {
    pg_.psql(db,
             "CREATE TABLE v1 (id int PRIMARY KEY, cents int NOT NULL);"
             "INSERT INTO v1 SELECT g, g FROM generate_series(1, 2000) g;");
  };
  setup(db_);
  Spec s = spec_from(spec_text("      down: {cents: (amount * 100)::int}\n"));
  Plan plan = make_plan(s);
  Writers writer(pg_, db_, 1, [](Connection& c, int, long n, Writers::Counts& add) {
    c.exec("UPDATE v1 SET cents = cents + 1 WHERE id = $1", {std::to_string(1 + n % 2000)});
    add["cents"] = 1;
  });
  EXPECT_EQ(Executor(s, plan, options(Phase::kCutover)).run(), RunOutcome::kReachedUntil);
  writer.stop();
  EXPECT_EQ(writer.failed(), 0) << writer.last_error();
  EXPECT_EQ(q("SELECT count(*) || '/' || count(done_at) || '/' || count(diff) FROM"
              " tandem.shadow_samples WHERE step_id = 'reads.cents.after_cutover'"),
            "200/200/0");
  // The probes were rolled back: v1 holds what the writer committed, v2
  // follows it.
  EXPECT_EQ(q("SELECT sum(cents) FROM v1"),
            std::to_string(2000 * 2001 / 2 + writer.count("cents")));
  EXPECT_EQ(q("SELECT count(*) FROM v1 JOIN v2 USING (id) WHERE v2.amount * 100 <> v1.cents"), "0");
  // Without `down` nothing carries v2's writes back: every probe differs.
  const std::string other = pg_.create_database("reads");
  setup(other);
  Spec one_way = spec_from(spec_text(""));
  RunOptions o = options(Phase::kCutover);
  o.dsn = pg_.dsn(other);
  try {
    Executor(one_way, make_plan(one_way), o).run();
    FAIL() << "the probe after cutover must fail its gate";
  } catch (const StepFailedError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("step reads.cents.after_cutover failed: cents: 200 of 200 parameter sets"
                     " answered differently"),
              std::string::npos)
        << m;
  }
  EXPECT_EQ(pg_.psql(other,
                     "SELECT count(*) FROM tandem.shadow_samples WHERE step_id ="
                     " 'reads.cents' AND diff IS NOT NULL"),
            "0");
}

TEST_F(ShadowReads, AKilledTandemdGoesOnWithoutComparingAFinishedSampleAgain) {
  const std::string file = write_temp_file(spec_text(kByUserId, 3000));
  const std::string run =
      tandemd("run " + file + " --until shadow_read --dsn '" + pg_.dsn(db_) + "'");
  pid_t pid = spawn(run + " 2>/dev/null");
  auto c = connect_postgres(pg_.dsn(db_), "watcher");
  bool comparing = false;
  for (int i = 0; i < 6000 && !comparing; ++i) {
    comparing =
        c->exec("SELECT to_regclass('tandem.shadow_samples') IS NOT NULL").text(0, 0) == "t" &&
        c->exec("SELECT count(done_at) FROM tandem.shadow_samples").integer(0, 0) >= 300;
    if (!comparing) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(comparing) << "the comparisons never started";
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "tandemd finished before the kill";
  const std::string stamps =
      q("SELECT string_agg(ordinal || '@' || done_at, ',' ORDER BY ordinal)"
        " FROM tandem.shadow_samples WHERE done_at IS NOT NULL");
  const std::string done = q("SELECT count(done_at) FROM tandem.shadow_samples");
  EXPECT_LT(std::stoi(done), 3000) << done;
  auto r = run_command(run + " 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // What was compared before the kill stands as it was; the rest followed.
  EXPECT_EQ(q("SELECT string_agg(ordinal || '@' || done_at, ',' ORDER BY ordinal)"
              " FROM tandem.shadow_samples WHERE ordinal IN (SELECT ordinal FROM"
              " tandem.shadow_samples ORDER BY done_at LIMIT " +
              done + ")"),
            stamps);
  EXPECT_EQ(q("SELECT count(*) || '/' || count(done_at) || '/' || count(diff)"
              " FROM tandem.shadow_samples"),
            "3000/3000/0");
}

// At the cutover gate each round draws a new sample (the seed moved on by
// the round) and is judged by the same gate on its own, under writers on
// the same keys; a round that fails withholds an approval of cutover until
// the operator accepts its differences by name.
TEST_F(ShadowReads, RoundsAtTheCutoverGateDrawNewSamplesAndAFailedRoundWithholdsCutover) {
  const std::string extra =
      "    write: INSERT INTO orders (username, total) VALUES ($1, 999)\n"
      "gates: {cutover: approval}\n";
  Spec s = spec(kByUserId, 200, extra);
  Plan plan = make_plan(s);
  Writers writer(pg_, db_, 2, write_orders);
  EXPECT_EQ(Executor(s, plan, options(std::nullopt)).run(), RunOutcome::kWaitingApproval);
  Executor at_gate(s, plan, options(std::nullopt));
  for (int round = 1; round <= 2; ++round) {
    const RoundReport r = at_gate.shadow_round();
    EXPECT_EQ(r.round, round);
    EXPECT_TRUE(r.passed()) << (r.pairs.empty() ? "" : r.pairs[0].verdict);
    ASSERT_EQ(r.pairs.size(), 1u);
    EXPECT_EQ(r.pairs[0].pair, "orders_of_user");
    EXPECT_EQ(r.pairs[0].samples, 200);
    EXPECT_EQ(r.pairs[0].mismatches, 0);
    EXPECT_GT(r.pairs[0].new_p50, 0);
  }
  writer.stop();
  EXPECT_EQ(writer.failed(), 0) << writer.last_error();
  EXPECT_GT(writer.count("inserted"), 10);
  // Three samples of 200, each mostly new users.
  EXPECT_EQ(q("SELECT string_agg(n::text, '/' ORDER BY round) FROM (SELECT round, count(*) n"
              " FROM tandem.shadow_samples GROUP BY round) r"),
            "200/200/200");
  EXPECT_LT(std::stoi(q("SELECT count(*) FROM (SELECT params FROM tandem.shadow_samples"
                        " WHERE round = 1 INTERSECT SELECT params FROM tandem.shadow_samples"
                        " WHERE round IN (0, 2)) x")),
            50);
  EXPECT_EQ(q("SELECT string_agg(round || ':' || (finished_at IS NOT NULL), ',' ORDER BY round)"
              " FROM tandem.shadow_rounds"),
            "1:true,2:true");
  EXPECT_EQ(q("SELECT count(*) FROM tandem.events WHERE kind = 'round_done'"
              " AND (detail->>'passed')::bool"),
            "2");

  // A bug in the sync, injected at the gate: the probe's order no longer
  // reaches the new path, and round 3 says so.
  q("DO $$BEGIN EXECUTE (SELECT format('DROP TRIGGER %I ON orders', tgname) FROM pg_trigger"
    " WHERE tgrelid = 'orders'::regclass AND tgname LIKE 'zz_tandem%'); END$$");
  const RoundReport failed = at_gate.shadow_round();
  EXPECT_EQ(failed.round, 3);
  EXPECT_FALSE(failed.passed());
  ASSERT_EQ(failed.pairs.size(), 1u);
  EXPECT_EQ(failed.pairs[0].mismatches, 200);
  EXPECT_EQ(failed.pairs[0].verdict.rfind("200 of 200 parameter sets answered differently", 0), 0u)
      << failed.pairs[0].verdict;

  // The approval is withheld: the migration waits at the gate as before.
  RunOptions approve = options(std::nullopt);
  approve.approve = {Phase::kCutover};
  Executor withheld(s, plan, approve);
  EXPECT_EQ(withheld.run(), RunOutcome::kWaitingApproval);
  EXPECT_EQ(withheld.waiting_phase(), Phase::kCutover);
  EXPECT_EQ(withheld.approval_withheld().rfind(
                "round 3 of the shadow reads failed the gate of orders_of_user: 200 of 200", 0),
            0u)
      << withheld.approval_withheld();
  EXPECT_EQ(q("SELECT state || ' ' || approved_phases::text FROM tandem.migrations"),
            "waiting_approval {}");
  // The command line says the same, and how to go on.
  const std::string file = write_temp_file(spec_text(kByUserId, 200, extra));
  const std::string dsn = " --dsn '" + pg_.dsn(db_) + "'";
  auto r = run_command(tandemd("run " + file + " --approve cutover" + dsn) + " 2>&1");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("the approval of cutover is withheld: round 3 of the shadow reads"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("tandemd rounds " + file), std::string::npos) << r.output;
  r = run_command(tandemd("status " + file + " --json" + dsn) + " 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto round = nlohmann::json::parse(r.output)["round"];
  EXPECT_EQ(round["round"], 3) << r.output;
  EXPECT_EQ(round["passed"], false) << r.output;
  EXPECT_EQ(round["pairs"]["orders_of_user"]["mismatches"], 200) << r.output;
  // `tandemd rounds` runs round 4, which fails the same way: exit 10.
  // (Its log lines go to stderr, left out here: run_command joins them.)
  r = run_command("(" + tandemd("rounds " + file + " --json" + dsn) + " 2>/dev/null)");
  EXPECT_EQ(r.exit_code, 10) << r.output;
  const auto fourth = nlohmann::json::parse(r.output);
  EXPECT_EQ(fourth["round"], 4) << r.output;
  EXPECT_EQ(fourth["pairs"]["orders_of_user"]["mismatches"], 200) << r.output;
  r = run_command(tandemd("diffs " + file + " --limit 1" + dsn) + " 2>&1");
  EXPECT_EQ(r.output.rfind("orders_of_user round 3 #1 {", 0), 0u) << r.output;

  // Accepted by name, the approval is taken, with who accepted what.
  approve.accept_differences = {"orders_of_user"};
  EXPECT_EQ(Executor(s, plan, approve).run(), RunOutcome::kWaitingApproval);
  EXPECT_EQ(q("SELECT phase FROM tandem.migrations"),
            std::to_string(static_cast<int>(Phase::kCleanup)));
  EXPECT_EQ(q("SELECT actor || ' ' || (detail->>'pair') || ' ' || (detail->>'round') FROM"
              " tandem.events WHERE kind = 'differences_accepted'"),
            "test orders_of_user 4");
  // Rounds run only at the cutover gate.
  try {
    Executor(s, plan, options(std::nullopt)).shadow_round();
    FAIL() << "a round past the gate must be refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("is not waiting at the cutover gate"), std::string::npos)
        << e.what();
  }
}

// Parameters from a query: the phase takes its first rows, each later round
// as many of its rows in an order the round fixes.
TEST_F(ShadowReads, RoundsOfAQuerySourceTakeOtherRowsOfTheQuery) {
  Spec s = spec_from(
      "name: reads\nsettings: {lock_timeout: 300ms, retry_backoff: 20ms}\noperations:\n"
      "  - add_reference: {table: orders, column: user_id, type: uuid, via: username,"
      " references: users, referenced_column: user_id, lookup: username}\n"
      "gates: {cutover: approval}\n"
      "shadow_reads:\n"
      "  - name: orders_of_user\n"
      "    params: {query: SELECT username FROM users WHERE id % 3 = 0 ORDER BY id, sample: 50}\n"
      "    old: SELECT id, total FROM orders WHERE username = $1\n"
      "    new: \"" +
      std::string(kByUserId) + "\"\n");
  Plan plan = make_plan(s);
  EXPECT_EQ(Executor(s, plan, options(std::nullopt)).run(), RunOutcome::kWaitingApproval);
  Executor at_gate(s, plan, options(std::nullopt));
  EXPECT_TRUE(at_gate.shadow_round().passed());
  EXPECT_TRUE(at_gate.shadow_round().passed());
  const auto drawn = [&](int round) {
    return q(
        "SELECT string_agg(params[1], ',' ORDER BY ordinal) FROM tandem.shadow_samples"
        " WHERE round = " +
        std::to_string(round));
  };
  EXPECT_EQ(drawn(0), q("SELECT string_agg(username, ',' ORDER BY id) FROM (SELECT id, username"
                        " FROM users WHERE id % 3 = 0 ORDER BY id LIMIT 50) u"));
  EXPECT_NE(drawn(1), drawn(0));
  EXPECT_NE(drawn(2), drawn(1));
  EXPECT_EQ(q("SELECT count(*) || '/' || count(DISTINCT (round, params)) || '/' ||"
              " bool_and(substr(params[1], 2)::int % 3 = 0) FROM tandem.shadow_samples"),
            "150/150/true");
}

// A round stopped part way goes on, in the next call, with the same sets,
// and compares none of the finished ones again.
TEST_F(ShadowReads, AStoppedRoundGoesOnWithItsSample) {
  Spec s = spec(kByUserId, 2000, "gates: {cutover: approval}\n", ", backfill_workers: 2");
  Plan plan = make_plan(s);
  EXPECT_EQ(Executor(s, plan, options(std::nullopt)).run(), RunOutcome::kWaitingApproval);
  std::atomic<bool> stop{false};
  std::thread watcher([&] {
    auto c = connect_postgres(pg_.dsn(db_), "watcher");
    for (int i = 0; i < 3000 && !stop; ++i) {
      if (c->exec("SELECT count(done_at) FROM tandem.shadow_samples WHERE round = 1")
              .integer(0, 0) >= 300)
        stop = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  RunOptions o = options(std::nullopt);
  o.stop = &stop;
  const RoundReport first = Executor(s, plan, o).shadow_round();
  stop = true;
  watcher.join();
  ASSERT_TRUE(first.stopped);
  EXPECT_FALSE(first.passed());
  EXPECT_EQ(first.round, 1);
  const std::string stamps =
      q("SELECT string_agg(ordinal || '@' || done_at, ',' ORDER BY ordinal)"
        " FROM tandem.shadow_samples WHERE round = 1 AND done_at IS NOT NULL");
  const std::string params =
      q("SELECT md5(string_agg(params::text, ',' ORDER BY ordinal)) FROM tandem.shadow_samples"
        " WHERE round = 1");
  EXPECT_EQ(q("SELECT count(*) FROM tandem.shadow_rounds WHERE finished_at IS NULL"), "1");
  const RoundReport rest = Executor(s, plan, options(std::nullopt)).shadow_round();
  EXPECT_EQ(rest.round, 1);
  EXPECT_TRUE(rest.passed());
  EXPECT_EQ(q("SELECT md5(string_agg(params::text, ',' ORDER BY ordinal)) FROM"
              " tandem.shadow_samples WHERE round = 1"),
            params);
  EXPECT_EQ(q("SELECT string_agg(ordinal || '@' || done_at, ',' ORDER BY ordinal)"
              " FROM tandem.shadow_samples WHERE round = 1 AND ordinal IN (SELECT ordinal FROM"
              " tandem.shadow_samples WHERE round = 1 ORDER BY done_at LIMIT " +
              std::to_string(std::count(stamps.begin(), stamps.end(), ',') + 1) + ")"),
            stamps);
  EXPECT_EQ(q("SELECT count(*) || '/' || count(done_at) || '/' || count(diff)"
              " FROM tandem.shadow_samples WHERE round = 1"),
            "2000/2000/0");
  // A rollback forgets the rounds with the samples.
  EXPECT_EQ(Executor(s, plan, options(std::nullopt)).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(q("SELECT (SELECT count(*) FROM tandem.shadow_samples) ||"
              " '/' || (SELECT count(*) FROM tandem.shadow_rounds)"),
            "0/0");
}

}  // namespace
}  // namespace tandem::testing
