// How a step takes its locks: every one it needs first, in the writers'
// order, all within one lock timeout; never waiting for a lock while holding
// one that the application queues on. Issue 16, items 3 and 4.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "support/scenario.h"

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

// Writers that write the parent, then the child, in one transaction (an
// account's balance, then its entry), counting what committed and failed.
class ParentThenChildWriters {
 public:
  ParentThenChildWriters(const PgServer& pg, const std::string& db, int clients) {
    for (int i = 0; i < clients; ++i) {
      threads_.emplace_back([this, &pg, db, i] {
        auto c = pg.connect(db);
        for (long n = 0; !stop_; ++n) {
          const std::string account = std::to_string(1 + (i * 31 + n * 7) % 100);
          try {
            c->exec("BEGIN");
            c->exec("UPDATE accounts SET balance = balance + 1 WHERE id = $1", {account});
            c->exec("SELECT pg_sleep(0.005)");
            c->exec("INSERT INTO entries (account_id, amount) VALUES ($1, 1)", {account});
            c->commit();
            ++committed_;
          } catch (const std::exception& e) {
            ++failed_;
            last_error_ = e.what();
            if (c->is_open()) {
              c->exec("ROLLBACK");
            } else {
              c = pg.connect(db);
            }
          }
        }
      });
    }
  }
  ~ParentThenChildWriters() { stop(); }
  void stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  long committed() const { return committed_; }
  long failed() const { return failed_; }
  std::string last_error() const { return last_error_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<long> committed_{0}, failed_{0};
  std::string last_error_;
  std::vector<std::thread> threads_;
};

// Item 3: ALTER TABLE child ADD ... REFERENCES parent takes the child, then
// the parent; writers take the parent, then the child. Each waited for the
// other until lock_timeout, attempt after attempt (19 lock timeouts and 107 s
// in one run). Taking both first, in the writers' order, succeeds at once.
TEST_F(LockOrder, AForeignKeyIsAddedAndDroppedUnderParentThenChildWriters) {
  pg_.psql(db_,
           "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL DEFAULT 0);"
           "INSERT INTO accounts SELECT generate_series(1, 100);"
           "CREATE TABLE entries (id bigserial PRIMARY KEY, account_id int NOT NULL, amount int);");
  Spec spec = spec_from(
      "name: fk\nsettings: {lock_timeout: 200ms, retry_backoff: 20ms, retry_budget: 30}\n"
      "operations:\n  - add_constraint: {table: entries, name: entries_account_fk,"
      " foreign_key: [account_id], references: accounts, referenced_columns: [id]}\n");
  Plan plan = make_plan(spec);
  ParentThenChildWriters writers(pg_, db_, 4);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(Executor(spec, plan, options()).run(), RunOutcome::kCompleted);
  // tandem.steps.attempts counts the failed attempts of a step, forward and back.
  const int failed_forward = std::stoi(
      pg_.psql(db_, "SELECT attempts FROM tandem.steps WHERE step_id = '1.add_not_valid'"));
  // Rolled back: the DROP takes ACCESS EXCLUSIVE on both, in the same order.
  EXPECT_EQ(Executor(spec, plan, options()).rollback(), RollbackOutcome::kRolledBack);
  const int failed_back =
      std::stoi(
          pg_.psql(db_, "SELECT attempts FROM tandem.steps WHERE step_id = '1.add_not_valid'")) -
      failed_forward;
  std::this_thread::sleep_for(200ms);
  writers.stop();

  EXPECT_EQ(writers.failed(), 0) << writers.last_error();
  EXPECT_GT(writers.committed(), 100);
  // One attempt each way; one failed attempt is allowed for a writer that
  // happens to hold only the child when the step begins.
  EXPECT_LE(failed_forward, 1) << "the step and the writers waited for each other";
  EXPECT_LE(failed_back, 1) << "the step and the writers waited for each other";
  EXPECT_EQ(pg_.psql(db_, "SELECT sum(balance) = (SELECT count(*) FROM entries) FROM accounts"),
            "t");
  EXPECT_EQ(pg_.psql(db_,
                     "SELECT count(*) FROM pg_constraint WHERE conname = "
                     "'entries_account_fk'"),
            "0");
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
