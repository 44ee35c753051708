// Test support: a throwaway PostgreSQL server started by the test itself, and
// a pgbench load that runs beside a migration.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "db/connection.h"

namespace tandem::testing {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command and collects its output.
CommandResult run_command(const std::string& command);

// A PostgreSQL server in a temporary directory, listening on a unix socket
// only. As root it runs as the `postgres` user (runuser). Removed on destruction.
class PgServer {
 public:
  PgServer();
  ~PgServer();
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  // One server per test process, started on first use.
  static PgServer& shared();

  // A new empty database; each test uses its own.
  std::string create_database(const std::string& prefix);
  std::string dsn(const std::string& database) const;
  // "PGHOST=... PGPORT=... PGUSER=postgres PGDATABASE=db " for shell commands.
  std::string env(const std::string& database) const;
  std::unique_ptr<Connection> connect(const std::string& database) const;
  // Runs SQL through psql; returns its output (unaligned, tuples only).
  std::string psql(const std::string& database, const std::string& sql) const;

  void restart();
  const std::string& bin_dir() const { return bin_dir_; }
  const std::string& socket_dir() const { return socket_dir_; }
  int port() const { return port_; }

 private:
  std::string as_owner(const std::string& command) const;
  std::string bin_dir_, dir_, socket_dir_, data_dir_;
  int port_ = 0;
  int db_counter_ = 0;
};

// A streaming-replication standby of `primary`, from pg_basebackup, on its
// own port and socket directory. Stopped and removed with the object.
class PgStandby {
 public:
  explicit PgStandby(const PgServer& primary);
  ~PgStandby();
  PgStandby(const PgStandby&) = delete;
  PgStandby& operator=(const PgStandby&) = delete;
  std::string psql(const std::string& database, const std::string& sql) const;
  // pg_wal_replay_pause() / pg_wal_replay_resume(): the standby keeps
  // receiving WAL but stops (starts again) applying it.
  void pause_replay() const;
  void resume_replay() const;

 private:
  std::string bin_dir_, dir_, data_dir_;
  int port_ = 0;
};

// pgbench's TPC-B-like load (or the custom script at `script`), run in
// back-to-back short rounds on a thread until stop(). Counts failed and
// aborted transactions across rounds.
class PgbenchLoad {
 public:
  PgbenchLoad(const PgServer& server, std::string database, int clients = 4,
              std::string script = "");
  ~PgbenchLoad();
  void start();
  void stop();
  long long transactions() const { return transactions_; }
  long long failures() const { return failures_; }
  const std::string& last_error_output() const { return last_error_; }

 private:
  const PgServer& server_;
  std::string database_;
  int clients_;
  std::string script_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::atomic<long long> transactions_{0};
  std::atomic<long long> failures_{0};
  std::string last_error_;
};

// Whether `sql` answers `want` (psql -At) within `timeout`; an error, such as
// a state schema not created yet, counts as not yet.
bool answers_within(const PgServer& server, const std::string& database, const std::string& sql,
                    const std::string& want, std::chrono::milliseconds timeout);

// A server setting (ALTER SYSTEM, reloaded) for the object's lifetime.
class ServerSetting {
 public:
  ServerSetting(const PgServer& pg, const std::string& name, const std::string& value);
  ~ServerSetting();
  ServerSetting(const ServerSetting&) = delete;
  ServerSetting& operator=(const ServerSetting&) = delete;

 private:
  const PgServer& pg_;
  std::string name_;
};

// Makes every row of `table` dead (`update`: the SET list) and returns once
// an autovacuum of it is running, slowed to one page per `delay_ms`; false
// if none starts within a minute. Needs a short autovacuum_naptime.
bool start_slow_autovacuum(const PgServer& pg, const std::string& database,
                           const std::string& table, int delay_ms, const std::string& update);

// A DSN for `role` (created if missing, a member of `member_of` when given,
// not a superuser), which may create schemas in `database` and owns `tables`.
std::string dsn_of_owner(const PgServer& pg, const std::string& database, const std::string& role,
                         const std::vector<std::string>& tables, const std::string& member_of = "");

// Initialises pgbench tables at `scale` (100,000 accounts per unit).
void pgbench_init(const PgServer& server, const std::string& database, int scale);
// sum(abalance) = sum(tbalance) = sum(bbalance) = sum(history.delta)
bool tpcb_invariant_holds(const PgServer& server, const std::string& database);
// The key ranges of a backfill or verify step, from tandem.checkpoints:
// "<ranges>|<all finished>|<rows done>|<tile>", where <tile> is t when they
// cover the key space exactly: in key order, the first open below, each
// starting where the one before ends, the last open above. For single-column
// integer keys.
std::string key_ranges_summary(const PgServer& server, const std::string& database,
                               const std::string& step_id);
// The same with the count written "<n>+" when there are at least n ranges:
// at the end of a step, a worker left without a range splits another's.
std::string key_ranges_summary(const PgServer& server, const std::string& database,
                               const std::string& step_id, int at_least);

}  // namespace tandem::testing
