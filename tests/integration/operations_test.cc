// The pgroll-style lifecycle for each operation, under a concurrent writer:
// start (through cutover) → check → rollback → check → start → complete →
// check. The writer counts every insert and update it commits; afterwards the
// table must hold exactly those, and no write may have failed.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "support/scenario.h"

namespace tandem::testing {
namespace {

struct OperationCase {
  const char* title;
  const char* operation;  // YAML of one list item under operations:
  const char* probe;      // a query describing the state the operation changes
  const char* before;     // the probe before the migration (and after rollback)
  const char* started;    // after start (through cutover)
  const char* completed;  // after cleanup
};

void PrintTo(const OperationCase& c, std::ostream* os) { *os << c.title; }

const OperationCase kCases[] = {
    {"create_index",
     "  - create_index: {table: accounts, name: accounts_email_idx, columns: [email]}\n",
     "SELECT coalesce((SELECT indisvalid::text FROM pg_index"
     " WHERE indexrelid = to_regclass('accounts_email_idx')), 'absent')",
     "absent", "true", "true"},
    {"create_unique_partial_index",
     "  - create_index:\n      table: accounts\n      name: accounts_email_live\n"
     "      columns: [lower(email)]\n      unique: true\n      where: balance >= 0\n",
     "SELECT coalesce((SELECT indisunique::text || '/' || (indpred IS NOT NULL)::text"
     " FROM pg_index WHERE indexrelid = to_regclass('accounts_email_live')), 'absent')",
     "absent", "true/true", "true/true"},
    {"add_check_constraint",
     "  - add_constraint: {table: accounts, name: balance_not_negative, check: balance >= 0}\n",
     "SELECT coalesce((SELECT contype::text || '/' || convalidated::text FROM pg_constraint"
     " WHERE conname = 'balance_not_negative'), 'absent')",
     "absent", "c/true", "c/true"},
    {"add_foreign_key",
     "  - add_constraint:\n      table: accounts\n      name: accounts_owner_fk\n"
     "      foreign_key: [owner_id]\n      references: owners\n      referenced_columns: [id]\n"
     "      on_delete: restrict\n",
     "SELECT coalesce((SELECT contype::text || '/' || convalidated::text FROM pg_constraint"
     " WHERE conname = 'accounts_owner_fk'), 'absent')",
     "absent", "f/true", "f/true"},
    {"add_unique_constraint",
     "  - add_constraint: {table: accounts, name: accounts_email_key, unique: [email]}\n",
     "SELECT coalesce((SELECT contype::text FROM pg_constraint WHERE conname = "
     "'accounts_email_key'),"
     " 'absent') || '/' || coalesce((SELECT 'index' FROM pg_class"
     " WHERE relname = 'accounts_email_key'), 'no index')",
     "absent/no index", "u/index", "u/index"},
    {"set_not_null", "  - set_not_null: {table: accounts, column: email}\n",
     "SELECT attnotnull::text || '/' || (SELECT count(*) FROM pg_constraint"
     " WHERE conrelid = 'accounts'::regclass AND contype = 'c')::text"
     " FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'email'",
     "false/0", "true/0", "true/0"},
    {"add_column_uuid",
     "  - add_column:\n      table: accounts\n      column: uid\n      type: uuid\n"
     "      backfill: gen_random_uuid()\n      default: gen_random_uuid()\n"
     "      unique: true\n      not_null: true\n",
     "SELECT coalesce((SELECT format_type(atttypid, atttypmod) || '/' || attnotnull::text"
     " FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'uid'"
     " AND NOT attisdropped), 'absent') || '/' || coalesce((SELECT contype::text"
     " FROM pg_constraint WHERE conname = 'accounts_uid_key'), '-')",
     "absent/-", "uuid/true/u", "uuid/true/u"},
    {"add_column_derived",
     "  - add_column: {table: accounts, column: email_domain, type: text,"
     " backfill: \"split_part(email, '@', 2)\"}\n",
     "SELECT coalesce((SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
     " WHERE attrelid = 'accounts'::regclass AND attname = 'email_domain'"
     " AND NOT attisdropped), 'absent')",
     "absent", "text", "text"},
    {"drop_column",
     "  - drop_column: {table: accounts, column: note, type: text, down: \"'restored'\"}\n",
     "SELECT coalesce((SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
     " WHERE attrelid = 'accounts'::regclass AND attname = 'note' AND NOT attisdropped),"
     " 'absent')",
     "text", "text", "absent"},
    {"move_column",
     "  - move_column: {table: accounts, column: note, key: [id], to: account_notes,"
     " compat_view: accounts_with_note}\n",
     "SELECT (to_regclass('account_notes') IS NOT NULL)::text || '/' || (SELECT count(*)"
     " FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'note'"
     " AND NOT attisdropped) || '/' || (to_regclass('accounts_with_note') IS NOT NULL)::text",
     "false/1/false", "true/1/true", "true/0/false"},
    {"copy_table",
     "  - copy_table:\n      table: accounts\n      to: accounts_v2\n      key: [id]\n"
     "      create: id bigint PRIMARY KEY, email text, balance_cents bigint NOT NULL\n"
     "      up: {email: email, balance_cents: balance * 100}\n"
     "      down: {email: email, balance: balance_cents / 100}\n"
     "      compat_view: accounts_v1\n",
     "SELECT (to_regclass('accounts_v2') IS NOT NULL)::text || '/' ||"
     " (to_regclass('accounts_v1') IS NOT NULL)::text",
     "false/false", "true/true", "true/false"},
    {"add_reference",
     "  - add_reference:\n      table: accounts\n      column: owner_code\n      type: uuid\n"
     "      via: owner_id\n      references: owners\n      referenced_column: code\n"
     "      lookup: id\n      compat_view: accounts_by_owner_id\n",
     "SELECT coalesce((SELECT attnotnull::text FROM pg_attribute WHERE attrelid ="
     " 'accounts'::regclass AND attname = 'owner_code' AND NOT attisdropped), 'absent') || '/' ||"
     " coalesce((SELECT convalidated::text FROM pg_constraint"
     " WHERE conname = 'accounts_owner_code_fkey'), '-') || '/' ||"
     " (to_regclass('accounts_by_owner_id') IS NOT NULL)::text",
     "absent/-/false", "false/true/true", "false/true/false"},
    {"rename_column",
     "  - rename_column: {table: accounts, column: note, to: remark, compat_view: "
     "accounts_compat}\n",
     "SELECT (SELECT string_agg(attname::text, ',') FROM pg_attribute WHERE attrelid ="
     " 'accounts'::regclass AND attname IN ('note', 'remark') AND NOT attisdropped) || '/' ||"
     " (to_regclass('accounts_compat') IS NOT NULL)::text",
     "note/false", "remark/true", "remark/false"},
};

class OperationLifecycle : public ::testing::TestWithParam<OperationCase> {
 protected:
  void SetUp() override {
    db_ = pg_.create_database("ops");
    pg_.psql(db_,
             "CREATE TABLE owners (id int PRIMARY KEY,"
             " code uuid NOT NULL UNIQUE DEFAULT gen_random_uuid());"
             "INSERT INTO owners SELECT g FROM generate_series(1, 100) g;"
             "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text, owner_id int,"
             " balance int NOT NULL DEFAULT 0, note text);"
             "INSERT INTO accounts (email, owner_id, balance, note)"
             " SELECT 'u' || g || '@x', 1 + g % 100, g % 1000, 'n'"
             " FROM generate_series(1, 20000) g;"
             "ANALYZE accounts;");
  }
  std::string spec() const {
    return std::string("name: op_") + GetParam().title +
           "\nsettings:\n  lock_timeout: 300ms\n  retry_backoff: 20ms\n"
           "operations:\n" +
           GetParam().operation;
  }
  std::string probe() { return pg_.psql(db_, GetParam().probe); }

  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

// Inserts rows and updates balances until stopped, counting what committed.
class Writer {
 public:
  Writer(const PgServer& pg, const std::string& db) {
    thread_ = std::thread([this, &pg, db] {
      auto c = pg.connect(db);
      long i = 0;
      while (!stop_) {
        try {
          if (i++ % 2 == 0) {
            c->exec(
                "INSERT INTO accounts (email, owner_id, balance)"
                " VALUES ('w' || $1 || '@x', 1 + $1::int % 100, 5)",
                {std::to_string(i)});
            ++inserted_;
          } else {
            updated_ += c->exec("UPDATE accounts SET balance = balance + 1 WHERE id = $1",
                                {std::to_string(1 + (i * 7919) % 20000)})
                            .affected;
          }
        } catch (const std::exception& e) {
          ++failed_;
          last_error_ = e.what();
          if (!c->is_open()) c = pg.connect(db);
        }
      }
    });
  }
  ~Writer() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  long inserted() const { return inserted_; }
  long updated() const { return updated_; }
  long failed() const { return failed_; }
  const std::string& last_error() const { return last_error_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<long> inserted_{0}, updated_{0}, failed_{0};
  std::string last_error_;
  std::thread thread_;
};

TEST_P(OperationLifecycle, StartRollbackStartCompleteUnderAConcurrentWriter) {
  const OperationCase& c = GetParam();
  const long base_sum = std::stol(pg_.psql(db_, "SELECT sum(balance) FROM accounts"));
  Spec s = spec_from(spec());
  Plan plan = make_plan(s);
  ASSERT_EQ(probe(), c.before);

  // An operation without cleanup steps is complete once cutover is done.
  auto started = [](RunOutcome o) {
    return o == RunOutcome::kReachedUntil || o == RunOutcome::kCompleted;
  };
  auto completed = [](RunOutcome o) {
    return o == RunOutcome::kCompleted || o == RunOutcome::kAlreadyCompleted;
  };
  Writer writer(pg_, db_);
  EXPECT_TRUE(started(run_until(s, pg_.dsn(db_), Phase::kCutover)));
  EXPECT_EQ(probe(), c.started);
  RunOptions o;
  o.dsn = pg_.dsn(db_);
  EXPECT_EQ(Executor(s, plan, o).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(probe(), c.before);
  EXPECT_TRUE(started(run_until(s, pg_.dsn(db_), Phase::kCutover)));
  EXPECT_EQ(probe(), c.started);
  EXPECT_TRUE(completed(run_until(s, pg_.dsn(db_))));
  EXPECT_EQ(probe(), c.completed);
  writer.stop();

  EXPECT_EQ(writer.failed(), 0) << writer.last_error();
  EXPECT_GT(writer.inserted(), 10);
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*), sum(balance) FROM accounts"),
            std::to_string(20000 + writer.inserted()) + "|" +
                std::to_string(base_sum + 5 * writer.inserted() + writer.updated()));
}

INSTANTIATE_TEST_SUITE_P(Every, OperationLifecycle, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.title); });

class DropColumnRollback : public OperationLifecycle {
 protected:
  // Runs the drop through cleanup, then rolls it back.
  void complete_then_roll_back() {
    Spec s = spec_from(spec());
    Plan plan = make_plan(s);
    EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
    EXPECT_EQ(probe(), "absent");
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    EXPECT_EQ(Executor(s, plan, o).rollback(), RollbackOutcome::kRolledBack);
  }
};

TEST_P(DropColumnRollback, ReversibleEvenAfterCleanupWhenDownIsGiven) {
  complete_then_roll_back();
  EXPECT_EQ(probe(), "text");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FILTER (WHERE note = 'restored') FROM accounts"),
            "20000");
  pg_.psql(db_, "INSERT INTO accounts (email) VALUES ('after@x')");
  EXPECT_EQ(pg_.psql(db_, "SELECT note IS NULL FROM accounts WHERE email = 'after@x'"), "t");
}

// Issue 16: the column came back without its NOT NULL, default and CHECKs.
TEST_P(DropColumnRollback, BringsBackNotNullDefaultAndChecks) {
  pg_.psql(db_,
           "UPDATE accounts SET note = coalesce(note, 'n');"
           "ALTER TABLE accounts ALTER COLUMN note SET DEFAULT 'fresh',"
           " ALTER COLUMN note SET NOT NULL,"
           " ADD CONSTRAINT note_short CHECK (length(note) < 40),"
           " ADD CONSTRAINT note_not_email CHECK (note IS DISTINCT FROM email);"
           "ALTER TABLE accounts ADD CONSTRAINT note_unchecked CHECK (note <> 'x') NOT VALID");
  const std::string definition =
      "SELECT a.attnotnull::text || '|' || pg_get_expr(d.adbin, d.adrelid) || '|' ||"
      " (SELECT string_agg(conname || ':' || convalidated::text, ',' ORDER BY conname)"
      "    FROM pg_constraint WHERE conrelid = 'accounts'::regclass AND contype = 'c')"
      "  FROM pg_attribute a JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
      " WHERE a.attrelid = 'accounts'::regclass AND a.attname = 'note'";
  const std::string before = pg_.psql(db_, definition);
  EXPECT_EQ(before, "true|'fresh'::text|note_not_email:true,note_short:true,note_unchecked:false");
  complete_then_roll_back();
  EXPECT_EQ(pg_.psql(db_, definition), before);
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FILTER (WHERE note = 'restored') FROM accounts"),
            "20000");
  pg_.psql(db_, "INSERT INTO accounts (email) VALUES ('after@x')");
  EXPECT_EQ(pg_.psql(db_, "SELECT note FROM accounts WHERE email = 'after@x'"), "fresh");
  // And forward again, through cleanup.
  EXPECT_EQ(run_until(spec_from(spec()), pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(probe(), "absent");
}

// What a rollback could not bring back as it was is refused before anything
// changes.
TEST_P(DropColumnRollback, RefusesAColumnARollbackCouldNotRestore) {
  for (const auto& [setup, why] : std::vector<std::pair<std::string, std::string>>{
           {"UPDATE accounts SET note = coalesce(note, 'n');"
            "ALTER TABLE accounts ALTER COLUMN note SET NOT NULL",
            ""},
           {"ALTER TABLE accounts DROP COLUMN note;"
            "ALTER TABLE accounts ADD COLUMN note text GENERATED ALWAYS AS (email) STORED",
            "a generated column"}}) {
    SCOPED_TRACE(setup);
    pg_.psql(db_, setup);
    std::string yaml = spec();
    if (why.empty()) {
      // NOT NULL, and `down` gives NULL.
      yaml =
          "name: drop_null\noperations:\n  - drop_column: {table: accounts, column: note, "
          "type: text, down: \"NULL\"}\n";
    }
    Spec s = spec_from(yaml);
    Plan plan = make_plan(s);
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    try {
      Executor(s, plan, o).run();
      ADD_FAILURE() << "not refused";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(why.empty() ? "gives NULL" : why), std::string::npos)
          << e.what();
    }
    EXPECT_EQ(pg_.psql(db_,
                       "SELECT count(*) FROM pg_attribute WHERE attrelid ="
                       " 'accounts'::regclass AND attname = 'note' AND NOT attisdropped"),
              "1");
    EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM tandem.migrations"), "0")
        << "a refused precheck records nothing";
  }
}

INSTANTIATE_TEST_SUITE_P(Down, DropColumnRollback, ::testing::Values(kCases[8]),
                         [](const auto&) { return std::string("drop_column"); });

class ViolatingData : public OperationLifecycle {};

TEST_P(ViolatingData, FailsAtTheStepThatFindsItAndRollsBackCleanly) {
  // A NULL email and a duplicate email break set_not_null and unique.
  pg_.psql(db_,
           "UPDATE accounts SET email = NULL WHERE id = 17;"
           "UPDATE accounts SET email = 'u2@x' WHERE id = 3;");
  Spec s = spec_from(spec());
  Plan plan = make_plan(s);
  try {
    run_until(s, pg_.dsn(db_));
    FAIL() << "the migration must fail";
  } catch (const StepFailedError& e) {
    std::string m = e.what();
    EXPECT_EQ(m.substr(0, m.find('\n')), GetParam().completed);  // the expected message here
  }
  RunOptions o;
  o.dsn = pg_.dsn(db_);
  EXPECT_EQ(Executor(s, plan, o).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(probe(), GetParam().before);
}

const OperationCase kViolations[] = {
    {"set_not_null", kCases[5].operation, kCases[5].probe, kCases[5].before, "",
     "step 1.validate failed: check constraint \"_tandem_nn_email_c4030c\" of relation "
     "\"accounts\" is violated by some row [SQLSTATE 23514]."},
    {"add_unique_constraint", kCases[4].operation, kCases[4].probe, kCases[4].before, "",
     "step 1.build_unique_index failed: could not create unique index \"accounts_email_key\" "
     "(DETAIL:  Key (email)=(u2@x) is duplicated.) [SQLSTATE 23505]."},
};

INSTANTIATE_TEST_SUITE_P(Every, ViolatingData, ::testing::ValuesIn(kViolations),
                         [](const auto& info) { return std::string(info.param.title); });

class AddColumnValues : public OperationLifecycle {};

TEST_P(AddColumnValues, NewRowsGetTheirValueInTheWritersTransactionAndEveryRowEndsUpFilled) {
  Spec s = spec_from(spec());
  // Once the trigger is in place, a row is never visible without its value.
  EXPECT_EQ(run_until(s, pg_.dsn(db_), Phase::kDualWrite), RunOutcome::kReachedUntil);
  pg_.psql(db_, "INSERT INTO accounts (email) VALUES ('new@x')");
  EXPECT_EQ(pg_.psql(db_, "SELECT uid IS NOT NULL FROM accounts WHERE email = 'new@x'"), "t");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM accounts WHERE uid IS NULL"), "20000");
  {
    Writer writer(pg_, db_);
    EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
    writer.stop();
    EXPECT_EQ(writer.failed(), 0) << writer.last_error();
  }
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(*) = count(DISTINCT uid) AND count(uid) = count(*)"
                     " FROM accounts"),
            "t");
  // After cleanup the fill trigger is gone and the default serves new rows.
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'accounts'::regclass"),
            "0");
  pg_.psql(db_, "INSERT INTO accounts (email) VALUES ('later@x')");
  EXPECT_EQ(pg_.psql(db_, "SELECT uid IS NOT NULL FROM accounts WHERE email = 'later@x'"), "t");
}

INSTANTIATE_TEST_SUITE_P(Uuid, AddColumnValues, ::testing::Values(kCases[6]),
                         [](const auto&) { return std::string("add_column_uuid"); });

TEST(DropColumnWithoutDown, IsIrreversibleAndNeedsApproval) {
  Spec s = spec_from("name: d\noperations:\n  - drop_column: {table: t, column: c}\n");
  Plan plan = make_plan(s);
  const Step* step = plan.find("1.drop_column");
  ASSERT_NE(step, nullptr);
  EXPECT_FALSE(step->reversible);
  EXPECT_EQ(step->phase, Phase::kCleanup);
}

class Sync : public ::testing::Test {
 protected:
  void SetUp() override { db_ = pg_.create_database("sync"); }
  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

TEST_F(Sync, MoveColumnWritesFlowBothWaysAfterCutoverAndTheViewShowsTheOldShape) {
  pg_.psql(db_,
           "CREATE TABLE users (user_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
           " email text NOT NULL, full_name text);"
           "INSERT INTO users (email, full_name) SELECT 'u' || g, 'Name ' || g"
           " FROM generate_series(1, 3000) g;");
  Spec s = spec_from(
      "name: pii\noperations:\n  - move_column: {table: users, column: full_name,"
      " key: [user_id], to: users_pii, compat_view: users_v1}\n");
  ASSERT_EQ(run_until(s, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  // The new application writes users_pii; the old column follows.
  pg_.psql(db_, "UPDATE users_pii SET full_name = 'New' WHERE user_id = 7");
  EXPECT_EQ(pg_.psql(db_, "SELECT full_name FROM users WHERE user_id = 7"), "New");
  // The old application still writes users; users_pii follows, with no echo.
  pg_.psql(db_, "UPDATE users SET full_name = 'Old' WHERE user_id = 8");
  EXPECT_EQ(pg_.psql(db_, "SELECT full_name FROM users_pii WHERE user_id = 8"), "Old");
  pg_.psql(db_, "INSERT INTO users (email, full_name) VALUES ('late', 'Late')");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT p.full_name FROM users_pii p JOIN users u USING (user_id)"
                     " WHERE u.email = 'late'"),
            "Late");
  pg_.psql(db_, "DELETE FROM users WHERE user_id = 9");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM users_pii WHERE user_id = 9"), "0");
  // The view has the old columns in the old order, full_name from users_pii.
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute"
                     " WHERE attrelid = 'users_v1'::regclass"),
            "user_id,email,full_name");
  pg_.psql(db_, "UPDATE users_pii SET full_name = 'Via pii' WHERE user_id = 10");
  EXPECT_EQ(pg_.psql(db_, "SELECT full_name FROM users_v1 WHERE user_id = 10"), "Via pii");
  ASSERT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*), count(full_name) FROM users_pii"), "3000|3000");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass"
                     " AND attname = 'full_name' AND NOT attisdropped"),
            "0");
}

TEST_F(Sync, CopyTableAppliesV2WritesToV1ThroughDownIntoAnIdentityKey) {
  pg_.psql(db_,
           "CREATE TABLE v1 (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, cents int NOT NULL);"
           "INSERT INTO v1 (cents) SELECT g FROM generate_series(1, 2000) g;");
  Spec s = spec_from(
      "name: copy\noperations:\n  - copy_table:\n      table: v1\n      to: v2\n"
      "      key: [id]\n      create: id int PRIMARY KEY, amount numeric(12,2) NOT NULL\n"
      "      up: {amount: cents / 100.0}\n      down: {cents: (amount * 100)::int}\n"
      "      compat_view: v1_compat\n");
  ASSERT_EQ(run_until(s, pg_.dsn(db_), Phase::kCutover), RunOutcome::kReachedUntil);
  EXPECT_EQ(pg_.psql(db_, "SELECT amount FROM v2 WHERE id = 150"), "1.50");
  pg_.psql(db_,
           "INSERT INTO v2 VALUES (5000, 12.34); UPDATE v2 SET amount = 0.5 WHERE id = 1;"
           "DELETE FROM v2 WHERE id = 2;");
  EXPECT_EQ(pg_.psql(db_, "SELECT cents FROM v1 WHERE id = 5000"), "1234");
  EXPECT_EQ(pg_.psql(db_, "SELECT cents FROM v1 WHERE id = 1"), "50");
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM v1 WHERE id = 2"), "0");
  EXPECT_EQ(pg_.psql(db_, "SELECT cents FROM v1_compat WHERE id = 5000"), "1234");
  // Rolling back after cutover drops v2 and leaves v1 with every write.
  RunOptions o;
  o.dsn = pg_.dsn(db_);
  Plan plan = make_plan(s);
  EXPECT_EQ(Executor(s, plan, o).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*), sum(cents) FROM v1"),
            "2000|" + std::to_string(2000 * 2001 / 2 - 1 - 2 + 50 + 1234));
  EXPECT_EQ(pg_.psql(db_, "SELECT to_regclass('v2') IS NULL AND to_regclass('v1_compat') IS NULL"),
            "t");
}

TEST_F(Sync, ATableWithoutPrimaryKeyIsWalkedByAUniqueNotNullKey) {
  pg_.psql(db_,
           "CREATE TABLE events (code text NOT NULL, seq int NOT NULL, payload text,"
           " UNIQUE (code, seq));"
           "INSERT INTO events SELECT 'c' || (g % 7), g, 'p' FROM generate_series(1, 5000) g;");
  Spec s = spec_from(
      "name: nopk\nsettings: {batch_size: 300}\noperations:\n"
      "  - add_column: {table: events, column: n, type: int, backfill: length(payload)}\n");
  EXPECT_EQ(run_until(s, pg_.dsn(db_)), RunOutcome::kCompleted);
  EXPECT_EQ(pg_.psql(db_, "SELECT count(*) FROM events WHERE n = 1"), "5000");
}

TEST_F(Sync, ATableWithNoUsableKeyIsRefusedByPlanWithTheReason) {
  pg_.psql(db_, "CREATE TABLE loose (a int, b text UNIQUE); INSERT INTO loose VALUES (1, 'x');");
  std::string spec = write_temp_file(
      "name: loose\noperations:\n"
      "  - add_column: {table: loose, column: n, type: int, backfill: a + 1}\n");
  auto r = run_command(tandemd("plan " + spec + " --dsn '" + pg_.dsn(db_) + "'"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("step 1.precheck: table loose has no primary key and no unique index "
                          "over NOT NULL columns; tandem walks the table by such a key (add one "
                          "first)"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace tandem::testing