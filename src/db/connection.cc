#include "db/connection.h"

#include <cstdlib>

namespace tandem {

ErrorKind classify_sqlstate(const std::string& s) {
  if (s == "40001" || s == "40P01" ||                  // serialization failure, deadlock
      s == "55P03" ||                                  // lock_not_available: lock_timeout
      s == "57014" ||                                  // query_canceled: statement_timeout
      s == "25P03" ||                                  // idle_in_transaction_session_timeout
      s == "57P01" || s == "57P02" || s == "57P03" ||  // shutdown, crash, not yet accepting
      s == "53300" ||                                  // too_many_connections
      s.rfind("08", 0) == 0) {                         // connection exceptions
    return ErrorKind::kRetryable;
  }
  if (s == "40003") return ErrorKind::kInDoubt;  // statement_completion_unknown
  return ErrorKind::kFatal;
}

long long Rows::integer(size_t row, size_t col, long long fallback) const {
  const auto& v = rows.at(row).at(col);
  if (!v) return fallback;
  return std::strtoll(v->c_str(), nullptr, 10);
}

void refuse_transaction_pooling(Connection& conn,
                                const std::function<std::unique_ptr<Connection>()>& another) {
  const char* kPid = "SELECT pg_backend_pid()";
  const long long server = conn.exec(kPid).integer(0, 0);
  // libpq's pid comes from the server's first message; a proxy sends its own.
  if (server == conn.backend_pid()) return;
  // A proxy. A session pool keeps this client on one server session, which
  // no other client gets; a transaction pool gives the server session back
  // after each statement, and the next client to ask gets it.
  auto other = another();
  for (int i = 0; i < 4; ++i) {
    const long long mine = conn.exec(kPid).integer(0, 0);
    const long long theirs = other->exec(kPid).integer(0, 0);
    if (mine != server || theirs == server) {
      throw Error(
          ErrorKind::kBadInput,
          "the database is reached through a proxy that moves sessions between server "
          "connections (PgBouncer with pool_mode = transaction or statement?): server pid " +
              std::to_string(server) + ", then " + std::to_string(mine) +
              ", and another session got " + std::to_string(theirs) +
              ". tandem's migration lock and session settings need one server session "
              "for the whole run: point the DSN at PostgreSQL itself, or at a pool with "
              "pool_mode = session");
    }
  }
}

Transaction::Transaction(Connection& conn) : conn_(conn) { conn_.exec("BEGIN"); }

Transaction::~Transaction() {
  if (done_ || !conn_.is_open()) return;
  try {
    conn_.exec("ROLLBACK");
  } catch (...) {
    // The session is unusable; the caller sees the original error.
  }
}

void Transaction::set_timeouts(std::chrono::milliseconds lock_timeout,
                               std::chrono::milliseconds statement_timeout) {
  conn_.exec("SET LOCAL lock_timeout = '" + std::to_string(lock_timeout.count()) +
             "ms'; SET LOCAL statement_timeout = '" + std::to_string(statement_timeout.count()) +
             "ms'");
}

void Transaction::commit() {
  done_ = true;
  try {
    conn_.commit();
  } catch (...) {
    // A COMMIT that failed on a live session leaves no transaction open on the
    // server; make sure of it, so the next BEGIN starts a fresh one.
    if (conn_.is_open()) {
      try {
        conn_.exec("ROLLBACK");
      } catch (...) {
      }
    }
    throw;
  }
}

}  // namespace tandem
