// The database adapter: the only code that talks to libpqxx is behind this
// interface (see pqxx_connection.cc). Everything it throws is tandem::Error.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tandem/error.h"

namespace tandem {

// A query result, copied out of libpqxx.
struct Rows {
  std::vector<std::string> columns;
  std::vector<unsigned> types;  // each column's type OID, when the server said
  std::vector<std::vector<std::optional<std::string>>> rows;
  long long affected = 0;  // rows changed by INSERT/UPDATE/DELETE

  size_t size() const { return rows.size(); }
  bool empty() const { return rows.empty(); }
  bool is_null(size_t row, size_t col) const { return !rows.at(row).at(col).has_value(); }
  // The value as text; "" for NULL.
  std::string text(size_t row, size_t col) const { return rows.at(row).at(col).value_or(""); }
  // The value as an integer; `fallback` for NULL.
  long long integer(size_t row, size_t col, long long fallback = 0) const;
};

// Classifies a server SQLSTATE into an ErrorKind.
ErrorKind classify_sqlstate(const std::string& sqlstate);

// One database session. Not thread-safe: one thread uses a connection at a time.
class Connection {
 public:
  virtual ~Connection() = default;
  // Runs `sql`. Without parameters it may hold several statements; with
  // parameters ($1, $2, ... sent as text, types inferred by the server) it
  // must be one statement.
  virtual Rows exec(const std::string& sql, const std::vector<std::string>& params = {}) = 0;
  // Runs COMMIT. If the connection breaks here, the outcome is unknown and the
  // error is ErrorKind::kInDoubt.
  virtual void commit() = 0;
  virtual bool is_open() const = 0;
  virtual int backend_pid() const = 0;
};

// Every session tandem opens starts with these limits, so that nothing it
// runs can hang on a lock, a statement or an open transaction for ever;
// steps and batches override lock_timeout and statement_timeout with the
// spec's settings for their own statements. Nor does it take parallel
// workers: a verification chunk or a precheck's scan would otherwise take
// two more cores from the application. The SQL sets them again, e.g. after
// RESET.
inline constexpr const char* kSessionLimitsSql =
    "SET statement_timeout = '60s'; SET lock_timeout = '5s';"
    " SET idle_in_transaction_session_timeout = '60s'; SET max_parallel_workers_per_gather = 0";

// Opens a session. The libpq connection string may be empty (libpq then reads
// PGHOST, PGPORT, ... from the environment). Refuses a transaction-pooling
// proxy (see refuse_transaction_pooling) before setting anything. A lost connection is never
// silently re-established: session state (the migration lock) would be lost.
// Throws Error(kRetryable) when the server cannot be reached.
std::unique_ptr<Connection> connect_postgres(const std::string& dsn,
                                             const std::string& application_name);

// Refuses a session that reaches PostgreSQL through a proxy that hands it a
// different server session from one transaction to the next (PgBouncer with
// pool_mode = transaction or statement): tandem's migration lock is a
// session advisory lock, and its session limits are session settings;
// through such a proxy the lock would not keep a second runner out and the
// settings would reach the application's sessions. A direct session, or one
// through a session-pooling proxy, passes. `another` opens a second session
// the same way, needed only when a proxy is in between. Throws
// Error(kBadInput) saying what to do.
void refuse_transaction_pooling(Connection& conn,
                                const std::function<std::unique_ptr<Connection>()>& another);

// BEGIN on construction; ROLLBACK on destruction unless commit() was called.
class Transaction {
 public:
  explicit Transaction(Connection& conn);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Rows exec(const std::string& sql, const std::vector<std::string>& params = {}) {
    return conn_.exec(sql, params);
  }
  // SET LOCAL lock_timeout and statement_timeout for this transaction only,
  // which is also safe behind a transaction-pooling proxy.
  void set_timeouts(std::chrono::milliseconds lock_timeout,
                    std::chrono::milliseconds statement_timeout);
  void commit();

 private:
  Connection& conn_;
  bool done_ = false;
};

}  // namespace tandem
