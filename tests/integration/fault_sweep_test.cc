// Sweeps a fault over every database call of a whole migration: for each N,
// the Nth call fails (lock timeout, lost connection, or lost connection right
// after a successful COMMIT), and the migration must still complete with every
// row intact and nothing left behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "support/fault_injection.h"
#include "support/scenario.h"

namespace tandem::testing {
namespace {

// A migration to sweep, with probes of the state it must end in.
struct Scenario {
  const char* title;
  const char* spec;
  const char* reset;      // SQL that puts the table back as it was before
  const char* probe;      // one row describing the tables the migration changes
  const char* untouched;  // the probe before the migration (and after a rollback)
  const char* done;       // the probe after the migration
};

const Scenario kScenarios[] = {
    {"alter_column_type",
     "name: sweep\n"
     "settings: {batch_size: 400, retry_budget: 5, retry_backoff: 1ms, retry_backoff_max: 2ms}\n"
     "operations:\n"
     "  - alter_column_type: {table: items, column: qty, type: bigint}\n",
     "DROP SCHEMA IF EXISTS tandem CASCADE; DROP TABLE IF EXISTS items;"
     "CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL DEFAULT 7);"
     "INSERT INTO items SELECT g, g * 3 FROM generate_series(1, 1000) g;"
     // Known to hold 1000 rows, the backfill is cut into two ranges of two
     // batches or three: its worker's session moves from one range's lock to
     // the other's, and faults hit that too.
     "ANALYZE items;",
     "SELECT (SELECT format_type(atttypid, atttypmod) || '/' || attnotnull FROM pg_attribute"
     " WHERE attrelid = 'items'::regclass AND attname = 'qty') || '|' ||"
     " (SELECT count(*) || '/' || sum(qty) FROM items) || '|' ||"
     " (SELECT count(*) FROM pg_attribute WHERE attrelid = 'items'::regclass"
     "   AND attname LIKE '_tandem%' AND NOT attisdropped) || '|' ||"
     " (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass) || '|' ||"
     " (SELECT count(*) FROM pg_constraint WHERE conrelid = 'items'::regclass AND contype = 'c')"
     " || '|' || pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a"
     " ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
     " WHERE d.adrelid = 'items'::regclass AND a.attname = 'qty'",
     "integer/true|1000/1501500|0|0|0|7", "bigint/true|1000/1501500|0|0|0|7"},
    // A primary key referenced by a foreign key, under another index: the
    // twin indexes built CONCURRENTLY from statements the catalog yields,
    // the keys carried over at cutover, the validations after it.
    {"alter_column_type_key",
     "name: sweep\n"
     "settings: {batch_size: 400, retry_budget: 5, retry_backoff: 1ms, retry_backoff_max: 2ms}\n"
     "operations:\n"
     "  - alter_column_type: {table: keyed, column: id, type: bigint}\n",
     "DROP SCHEMA IF EXISTS tandem CASCADE; DROP TABLE IF EXISTS item_refs, keyed;"
     "CREATE TABLE keyed (id int PRIMARY KEY, qty int NOT NULL);"
     "CREATE INDEX keyed_qty_id ON keyed (qty, id);"
     "CREATE TABLE item_refs (id int PRIMARY KEY, keyed_id int NOT NULL REFERENCES keyed (id));"
     "INSERT INTO keyed SELECT g, g * 3 FROM generate_series(1, 1000) g;"
     "INSERT INTO item_refs SELECT g, 1 + g % 1000 FROM generate_series(1, 500) g;"
     "ANALYZE keyed;",
     // The key's type; its indexes by name and columns (a twin left over
     // shows); the constraints and their validity; the rows; leftovers.
     "SELECT (SELECT format_type(atttypid, NULL) FROM pg_attribute"
     "  WHERE attrelid = 'keyed'::regclass AND attname = 'id') || '|' ||"
     " (SELECT string_agg(c.relname || ' ' || pg_get_indexdef(i.indexrelid, 1, true) || ','"
     "   || pg_get_indexdef(i.indexrelid, 2, true), ';' ORDER BY c.relname) FROM pg_index i"
     "   JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'keyed'::regclass) || '|' ||"
     " (SELECT string_agg(conname || ':' || convalidated, ';' ORDER BY conname)"
     "   FROM pg_constraint WHERE conrelid IN ('keyed'::regclass, 'item_refs'::regclass)) || '|'"
     " || (SELECT count(*) || '/' || sum(qty) FROM keyed) || '|' ||"
     " (SELECT count(*) FROM pg_attribute WHERE attrelid = 'keyed'::regclass"
     "   AND attname LIKE '_tandem%' AND NOT attisdropped) || '|' ||"
     " (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'keyed'::regclass AND NOT tgisinternal)",
     "integer|keyed_pkey id,;keyed_qty_id qty,id|item_refs_keyed_id_fkey:true;item_refs_pkey:true;"
     "keyed_pkey:true|1000/1501500|0|0",
     "bigint|keyed_pkey id,;keyed_qty_id qty,id|item_refs_keyed_id_fkey:true;item_refs_pkey:true;"
     "keyed_pkey:true|1000/1501500|0|0"},
    {"move_column",
     "name: sweep\n"
     "settings: {batch_size: 400, retry_budget: 5, retry_backoff: 1ms, retry_backoff_max: 2ms}\n"
     "operations:\n"
     "  - move_column: {table: items, column: note, key: [id], to: item_notes,"
     " compat_view: items_v1}\n",
     "DROP SCHEMA IF EXISTS tandem CASCADE; DROP VIEW IF EXISTS items_v1;"
     "DROP TABLE IF EXISTS item_notes; DROP TABLE IF EXISTS items;"
     "CREATE TABLE items (id int PRIMARY KEY, note text);"
     "INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 1000) g;"
     // item_notes may not exist: read it through dynamic SQL.
     "CREATE OR REPLACE FUNCTION notes_state() RETURNS text LANGUAGE plpgsql AS $$"
     " DECLARE r text; BEGIN"
     "  IF to_regclass('item_notes') IS NULL THEN RETURN 'absent'; END IF;"
     "  EXECUTE 'SELECT count(*) || ''/'' || count(*) FILTER (WHERE note = ''n'' || id)"
     "    FROM item_notes' INTO r; RETURN r; END $$;",
     "SELECT (SELECT count(*) FROM pg_attribute WHERE attrelid = 'items'::regclass"
     "   AND attname = 'note' AND NOT attisdropped) || '|' ||"
     " notes_state() || '|' ||"
     " (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'zz_tandem%') || '|' ||"
     " (to_regclass('items_v1') IS NOT NULL)",
     "1|absent|0|false", "0|1000/1000|0|false"},
};

// Which calls a sweep tries: every one by default. TANDEM_SWEEP_EVERY=k tries
// every k-th call from TANDEM_SWEEP_FROM (default: the day of the year
// modulo k, so successive days cover every call), as scripts/test.sh does
// to keep CI inside its time; the offset is printed, so a failure can be
// run again with the same calls.
struct Sample {
  int every = 1, from = 0;
  static Sample from_environment() {
    Sample s;
    if (const char* e = std::getenv("TANDEM_SWEEP_EVERY")) s.every = std::max(1, std::atoi(e));
    if (const char* f = std::getenv("TANDEM_SWEEP_FROM")) {
      s.from = std::atoi(f) % s.every;
    } else {
      std::time_t now = std::time(nullptr);
      std::tm day{};
      gmtime_r(&now, &day);
      s.from = day.tm_yday % s.every;
    }
    if (s.every > 1) {
      std::printf("sweeping every %d-th call from offset %d (TANDEM_SWEEP_FROM=%d repeats it)\n",
                  s.every, s.from, s.from);
    }
    return s;
  }
  bool tries(int n) const { return (n - 1) % every == from; }
  int count(int total) const {
    int c = 0;
    for (int n = 1; n <= total; ++n) c += tries(n);
    return c;
  }
};

struct SweepCase {
  const Scenario* scenario;
  Fault fault;
};

class FaultSweep : public ::testing::TestWithParam<SweepCase> {
 protected:
  void SetUp() override {
    db_ = pg_.create_database("sweep");
    check_ = pg_.connect(db_);
    spec_ = spec_from(GetParam().scenario->spec);
    plan_ = make_plan(spec_);
  }
  void reset_database() { check_->exec(GetParam().scenario->reset); }
  // One row, its columns joined with '|', like psql -At.
  std::string query(const std::string& sql) {
    Rows r = check_->exec(sql);
    std::string out;
    for (size_t c = 0; c < r.columns.size(); ++c) out += (c ? "|" : "") + r.text(0, c);
    return out;
  }
  std::string probe() { return query(GetParam().scenario->probe); }
  RunOptions options(FaultPlan* plan) {
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    o.actor = "sweep";
    o.approve_all = true;
    if (plan) o.connect = plan->connector();
    return o;
  }
  RunOutcome run(FaultPlan& plan) { return Executor(spec_, plan_, options(&plan)).run(); }

  PgServer& pg_ = PgServer::shared();
  std::string db_;
  std::unique_ptr<Connection> check_;
  Spec spec_;
  Plan plan_;
};

TEST_P(FaultSweep, EveryCallCanFailAndTheMigrationStillCompletesIntact) {
  reset_database();
  ASSERT_EQ(probe(), GetParam().scenario->untouched);
  FaultPlan clean(GetParam().fault, 0);
  ASSERT_EQ(run(clean), RunOutcome::kCompleted);
  ASSERT_EQ(probe(), GetParam().scenario->done);
  const int total = clean.calls();
  std::printf("%s: %d calls\n", GetParam().scenario->title, total);
  ASSERT_GT(total, 30);
  const Sample sample = Sample::from_environment();
  int fired = 0;
  for (int n = 1; n <= total; ++n) {
    if (!sample.tries(n)) continue;
    SCOPED_TRACE("fault at call " + std::to_string(n) + " of " + std::to_string(total));
    reset_database();
    FaultPlan plan(GetParam().fault, n);
    RunOutcome outcome;
    try {
      outcome = run(plan);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "the run failed: " << e.what();
      continue;
    }
    fired += plan.fired();
    ASSERT_EQ(outcome, RunOutcome::kCompleted);
    ASSERT_EQ(probe(), GetParam().scenario->done);
    ASSERT_EQ(query("SELECT count(*) FROM tandem.steps WHERE status <> 'done'"), "0");
  }
  EXPECT_GT(fired, sample.count(total) / 2) << "most sweeps must actually inject their fault";
}

// kill -9 at every call of the migration: a fresh run must finish it, or a
// fresh rollback must undo it, whichever the operator chooses.
class CrashSweep : public FaultSweep {
 protected:
  // A crash right after the final commit leaves nothing to do.
  static bool finishes(RunOutcome o) {
    return o == RunOutcome::kCompleted || o == RunOutcome::kAlreadyCompleted;
  }
};

TEST_P(CrashSweep, ACrashAtAnyCallResumesToCompletionOrRollsBackCleanly) {
  reset_database();
  FaultPlan clean(GetParam().fault, 0);
  ASSERT_EQ(run(clean), RunOutcome::kCompleted);
  const int total = clean.calls();
  const Sample sample = Sample::from_environment();
  int crashed = 0;
  for (int n = 1; n <= total; ++n) {
    if (!sample.tries(n)) continue;
    for (bool roll_back : {false, true}) {
      SCOPED_TRACE("crash at call " + std::to_string(n) + " of " + std::to_string(total) +
                   (roll_back ? ", then roll back" : ", then run again"));
      reset_database();
      FaultPlan plan(GetParam().fault, n);
      try {
        run(plan);
      } catch (const SimulatedCrash&) {
        ++crashed;
      }
      try {
        if (roll_back) {
          Executor(spec_, plan_, options(nullptr)).rollback();
        } else {
          ASSERT_TRUE(finishes(Executor(spec_, plan_, options(nullptr)).run()));
        }
      } catch (const RollbackRefusedError&) {
        // The crash came after cleanup had begun: only forward is possible.
        ASSERT_TRUE(roll_back);
        ASSERT_TRUE(finishes(Executor(spec_, plan_, options(nullptr)).run()));
        roll_back = false;
      } catch (const std::exception& e) {
        FAIL() << e.what();
      }
      ASSERT_EQ(probe(), roll_back ? GetParam().scenario->untouched : GetParam().scenario->done);
    }
  }
  EXPECT_GT(crashed, sample.count(total)) << "most runs must actually crash";
}

std::vector<SweepCase> cases(std::initializer_list<Fault> faults) {
  std::vector<SweepCase> out;
  for (const auto& s : kScenarios) {
    for (Fault f : faults) out.push_back({&s, f});
  }
  return out;
}

std::string case_name(const ::testing::TestParamInfo<SweepCase>& info) {
  return std::string(info.param.scenario->title) + "_" + fault_name(info.param.fault);
}

// Each instantiation is a ctest entry of its own (PARTS in
// tests/CMakeLists.txt): a new one must be listed there to run.
INSTANTIATE_TEST_SUITE_P(BeforeAndAfterCommit, CrashSweep,
                         ::testing::ValuesIn(cases({Fault::kCrash, Fault::kCrashAfterCommit})),
                         case_name);

INSTANTIATE_TEST_SUITE_P(AllFaults, FaultSweep,
                         ::testing::ValuesIn(cases({Fault::kLockTimeout, Fault::kDropConnection,
                                                    Fault::kDropAfterCommit})),
                         case_name);

}  // namespace
}  // namespace tandem::testing
