// How a step takes its locks: every one it needs first, in the writers'
// order, all within one lock timeout; never waiting for a lock while holding
// one that the application queues on. Issue 16, items 3 and 4.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "support/scenario.h"
#include "support/writers.h"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;

class LockOrder : public ::testing::Test {
 protected:
  void SetUp() override { db_ = pg_.create_database("locks"); }
  RunOptions options(std::optional<Phase> until = std::nullopt) const {
    RunOptions o;
    o.dsn = pg_.dsn(db_);
    o.actor = "test";
    o.until = until;
    o.approve_all = true;
    return o;
  }
  PgServer& pg_ = PgServer::shared();
  std::string db_;
};

// Writes the parent, then the child, in one transaction (an account's
// balance, then its entry).
void write_parent_then_child(Connection& c, int client, long n, Writers::Counts&) {
  const std::string account = std::to_string(1 + (client * 31 + n * 7) % 100);
  c.exec("UPDATE accounts SET balance = balance + 1 WHERE id = $1", {account});
  c.exec("SELECT pg_sleep(0.005)");
  c.exec("INSERT INTO entries (account_id, amount) VALUES ($1, 1)", {account});
}

// Writes the child, then the parent (an order is inserted, then its user's
// row is updated: the users_uuid_rekey workload's order). The step's plan
// order (parent first) makes it and such a writer wait for each other until
// the step learns their order from its first timeout.
void write_child_then_parent(Connection& c, int client, long n, Writers::Counts&) {
  const std::string account = std::to_string(1 + (client * 31 + n * 7) % 100);
  c.exec("INSERT INTO entries (account_id, amount) VALUES ($1, 1)", {account});
  c.exec("SELECT pg_sleep(0.005)");
  c.exec("UPDATE accounts SET balance = balance + 1 WHERE id = $1", {account});
}

// Adds a foreign key from entries to accounts and rolls it back (the DROP
// takes ACCESS EXCLUSIVE on both, in the same order) under four `writer`s;
// expects at most `most_failed` failed attempts each way and no failed
// writer transaction.
void add_and_drop_a_foreign_key_under(PgServer& pg, const std::string& db, const RunOptions& o,
                                      const Writers::Write& writer, int most_failed) {
  pg.psql(db,
          "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL DEFAULT 0);"
          "INSERT INTO accounts SELECT generate_series(1, 100);"
          "CREATE TABLE entries (id bigserial PRIMARY KEY, account_id int NOT NULL, amount int);");
  Spec spec = spec_from(
      "name: fk\nsettings: {lock_timeout: 200ms, retry_backoff: 20ms, retry_budget: 30}\n"
      "operations:\n  - add_constraint: {table: entries, name: entries_account_fk,"
      " foreign_key: [account_id], references: accounts, referenced_columns: [id]}\n");
  Plan plan = make_plan(spec);
  Writers writers(pg, db, 4, writer);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(Executor(spec, plan, o).run(), RunOutcome::kCompleted);
  // tandem.steps.attempts counts the failed attempts of a step, forward and back.
  const std::string attempts =
      "SELECT attempts FROM tandem.steps WHERE step_id = '1.add_not_valid'";
  const int failed_forward = std::stoi(pg.psql(db, attempts));
  EXPECT_EQ(Executor(spec, plan, o).rollback(), RollbackOutcome::kRolledBack);
  const int failed_back = std::stoi(pg.psql(db, attempts)) - failed_forward;
  std::this_thread::sleep_for(200ms);
  writers.stop();

  EXPECT_EQ(writers.failed(), 0) << writers.last_error();
  EXPECT_GT(writers.committed(), 100);
  EXPECT_LE(failed_forward, most_failed) << "the step and the writers waited for each other";
  EXPECT_LE(failed_back, most_failed) << "the step and the writers waited for each other";
  EXPECT_EQ(pg.psql(db, "SELECT sum(balance) = (SELECT count(*) FROM entries) FROM accounts"), "t");
  EXPECT_EQ(pg.psql(db, "SELECT count(*) FROM pg_constraint WHERE conname = 'entries_account_fk'"),
            "0");
}

TEST_F(LockOrder, AForeignKeyIsAddedAndDroppedUnderParentThenChildWriters) {
  // One attempt each way; one failed attempt is allowed for a writer that
  // happens to hold only the child when the step begins.
  add_and_drop_a_foreign_key_under(pg_, db_, options(), write_parent_then_child, 1);
}

TEST_F(LockOrder, AForeignKeyIsAddedAndDroppedUnderChildThenParentWriters) {
  // The attempt in the plan's order waits for a writer that waits for it
  // (without learning, the whole retry budget went this way); the next takes
  // the child first. One more is allowed for a writer caught between its two
  // statements when the step begins.
  add_and_drop_a_foreign_key_under(pg_, db_, options(), write_child_then_parent, 2);
}

// Item 4: the cutover of a serial column moved its sequence's ownership
// while holding ACCESS EXCLUSIVE on the table; with the sequence in use by
// another session, readers of the table waited for both lock waits (873 to
// 890 ms with lock_timeout 500 ms).
TEST_F(LockOrder, CutoverNeverWaitsForTheSequenceWhileHoldingTheTable) {
  pg_.psql(db_,
           "CREATE TABLE tickets (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
           " ticket_no serial NOT NULL, note text);"
           "INSERT INTO tickets (note) SELECT 'n' FROM generate_series(1, 2000);");
  Spec spec = spec_from(
      "name: serial\nsettings: {lock_timeout: 500ms, retry_backoff: 20ms, retry_budget: 200}\n"
      "operations:\n  - alter_column_type: {table: tickets, column: ticket_no, type: bigint}\n");
  Plan plan = make_plan(spec);
  ASSERT_EQ(Executor(spec, plan, options(Phase::kShadowRead)).run(), RunOutcome::kReachedUntil);

  auto holder = pg_.connect(db_);  // used the sequence, not the table
  holder->exec("BEGIN");
  holder->exec("SELECT nextval('tickets_ticket_no_seq')");
  auto cutover = std::async(std::launch::async,
                            [&] { return Executor(spec, plan, options(Phase::kCutover)).run(); });
  auto reader = pg_.connect(db_);
  const double worst =
      worst_query_seconds(*reader, "SELECT note FROM tickets WHERE id = 1", 2500ms, 10ms);
  holder->exec("COMMIT");
  EXPECT_EQ(cutover.get(), RunOutcome::kReachedUntil);
  EXPECT_LT(worst, 0.25) << "a reader waited " << worst << "s behind the cutover";
  // The step that moves the sequence did wait for the holder (so the test
  // exercised the case), and the sequence belongs to the new column.
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT attempts > 0, last_sqlstate FROM tandem.steps"
                     " WHERE step_id = '1.move_sequence_owner'"),
            "t|55P03");
  EXPECT_EQ(pg_.psql(db_, "SELECT pg_get_serial_sequence('tickets', 'ticket_no')"),
            "public.tickets_ticket_no_seq");
  EXPECT_EQ(column_type(pg_, db_, "tickets", "ticket_no"), "bigint");

  // Rolled back from there: the sequence goes back with its column; then
  // forward through cleanup, which drops the old column and keeps the sequence.
  EXPECT_EQ(Executor(spec, plan, options()).rollback(), RollbackOutcome::kRolledBack);
  EXPECT_EQ(column_type(pg_, db_, "tickets", "ticket_no"), "integer");
  EXPECT_EQ(pg_.psql(db_, "SELECT pg_get_serial_sequence('tickets', 'ticket_no')"),
            "public.tickets_ticket_no_seq");
  EXPECT_EQ(Executor(spec, plan, options()).run(), RunOutcome::kCompleted);
  pg_.psql(db_, "INSERT INTO tickets (note) VALUES ('after')");
  EXPECT_EQ(pg_.psql(db_, "SELECT ticket_no > 2000 FROM tickets WHERE note = 'after'"), "t");
  EXPECT_EQ(pg_.psql(db_, "SELECT pg_get_serial_sequence('tickets', 'ticket_no')"),
            "public.tickets_ticket_no_seq");
  EXPECT_EQ(leftovers(pg_, db_, "tickets"), "");
}

}  // namespace
}  // namespace tandem::testing
