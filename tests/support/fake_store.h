// Fakes for unit tests of the executor's rules without PostgreSQL: a
// migration store kept in memory, and sessions that record the statements
// they are sent and answer nothing (or what a test tells them to).
//
// FakeStore is transactional the way the real store is: a FakeSession's
// BEGIN takes a snapshot of the store, ROLLBACK (or losing the session in a
// transaction) puts it back, COMMIT keeps what was written. So "a step's
// work and its done record commit together" holds here too, and a test can
// arrange a commit whose outcome is unknown to the executor. One session at
// a time: no keyset steps, no parallel workers.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/executor.h"
#include "engine/migration_store.h"
#include "support/fake_time.h"

namespace tandem::testing {

struct FakeEvent {
  std::string kind;
  std::optional<Phase> phase;
  std::string step_id, actor;
  nlohmann::json detail;
};

class FakeStore : public MigrationStore {
 public:
  struct State {
    std::optional<MigrationRecord> migration;
    std::string spec_text;
    std::vector<StepRecord> steps;
    std::map<std::string, std::vector<Partition>> partitions;
    std::vector<FakeEvent> events;
  };

  explicit FakeStore(std::string migration) : name_(std::move(migration)) {}

  // What the store holds now (committed, and written by an open transaction).
  State& state() { return state_; }
  StepStatus status_of(const std::string& step_id) const;
  StepRecord& step(const std::string& step_id);
  std::vector<std::string> event_kinds() const;
  // Non-empty: another session holds the migration's lock.
  std::string lock_holder;
  int prepared = 0;  // sessions made ready

  // A FakeSession's transaction.
  void begin();
  void commit();
  void rollback();
  bool in_transaction() const { return in_tx_; }

  void prepare(Connection&) override { ++prepared; }
  bool try_lock(Connection& conn, std::string& holder) override;
  bool try_range_lock(Connection&, int, std::string&) override { return true; }
  void release_range_lock(Connection&, int) override {}
  std::optional<MigrationRecord> load(Connection&) override { return state_.migration; }
  std::vector<StepRecord> steps(Connection&) override { return state_.steps; }
  std::optional<Checkpoint> checkpoint(Connection& conn, const std::string& step_id) override;
  std::vector<Partition> partitions(Connection&, const std::string& step_id) override;
  std::string spec_hash(Connection&, const std::string& text) override;
  std::string spec_text(Connection&) override;
  void replace_spec(Connection& conn, const std::string& spec_text,
                    const std::string& actor) override;
  void start(Connection& conn, const std::string& spec_text, const Plan& plan,
             const std::string& actor) override;
  void set_state(Connection& conn, MigrationState state, Phase phase) override;
  void approve(Connection& conn, Phase phase, const std::string& actor) override;
  void mark_step(Connection& conn, const std::string& step_id, StepStatus status) override;
  void reset_unfinished_steps(Connection& conn) override;
  void record_failure(Connection& conn, const std::string& step_id, const Error& e,
                      bool migration_failed, int attempts) override;
  void init_partitions(Connection& conn, const std::string& step_id,
                       std::optional<long long> rows_total,
                       const std::vector<std::vector<std::string>>& bounds) override;
  void split_partition(Connection& conn, const std::string& step_id, int worker,
                       const std::vector<std::string>& at, int next) override;
  void save_checkpoint(Connection& conn, const std::string& step_id, int worker,
                       const std::vector<std::string>& from,
                       const std::vector<std::string>& last_key, long long rows,
                       long long mismatches, const std::string& sample, bool finished) override;
  void clear_checkpoint(Connection&, const std::string& step_id) override;
  void event(Connection& conn, const std::string& kind, std::optional<Phase> phase,
             const std::string& step_id, const std::string& actor,
             const nlohmann::json& detail = nlohmann::json::object()) override;

 private:
  MigrationRecord& record(const std::string& what);
  Partition& range(const std::string& step_id, int worker, const std::string& what);

  std::string name_;
  State state_;
  State snapshot_;
  bool in_tx_ = false;
};

class FakeDatabase;

// A session of the fake database. Every statement (and "COMMIT" for
// commit()) goes to the database's log, then to its fault hook, which may
// throw an Error or lose() the session first.
class FakeSession : public Connection {
 public:
  FakeSession(FakeDatabase& db, int pid) : db_(db), pid_(pid) {}
  Rows exec(const std::string& sql, const std::vector<std::string>& params = {}) override;
  void commit() override;
  bool is_open() const override { return open_; }
  int backend_pid() const override { return pid_; }
  // The connection breaks: an open transaction is rolled back.
  void lose();

 private:
  FakeDatabase& db_;
  int pid_;
  bool open_ = true;
};

class FakeDatabase {
 public:
  // Answers the server's deadlock_timeout (1s), as every server does.
  explicit FakeDatabase(const std::string& migration);

  FakeStore store;
  FakeTime time;
  // Every statement any session was sent, in order; "COMMIT" for a commit.
  std::vector<std::string> log;
  // Called with each statement before it runs; a test's fault throws from
  // here (after session.lose() for a lost connection).
  std::function<void(FakeSession& session, const std::string& sql)> fault;
  // Answers to statements containing a text (the first that matches);
  // others get no rows.
  std::vector<std::pair<std::string, Rows>> answers;
  int sessions_opened = 0;
  // Guards the log and sessions_opened: a daemon's threads share sessions'
  // database (the store itself is used by one worker thread at a time).
  mutable std::recursive_mutex mu;
  // More statements than this in one test is a loop: the session throws.
  static constexpr size_t kMaxStatements = 20000;
  // Set: opening a session fails with this error.
  std::optional<Error> refuse_connections;

  std::unique_ptr<Connection> connect();
  // Run options that reach this database, its store and its clock.
  RunOptions options();
  // How many times `sql` (exactly) was sent.
  int count(const std::string& sql) const;
  // The statements sent that are one of `of`, in order.
  std::vector<std::string> sent_of(const std::vector<std::string>& of) const;
};

// One row of one column.
Rows one_value(const std::string& value);

// Spec "rules": one hand-written step in each of four phases (prepare,
// dual_write and cutover, each with its `down`; cleanup without, so
// irreversible and always gated), with `settings` (lines "  key: value\n")
// as its settings block when given.
std::string four_step_spec(const std::string& settings = "");

}  // namespace tandem::testing
