#include "db/connection.h"

#include <cstdlib>

namespace tandem {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kRetryable:
      return "retryable";
    case ErrorKind::kInDoubt:
      return "in doubt";
    case ErrorKind::kFatal:
      return "fatal";
    case ErrorKind::kBadInput:
      return "bad input";
  }
  return "?";
}

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
