#include "support/fault_injection.h"

namespace tandem::testing {

std::string fault_name(Fault f) {
  switch (f) {
    case Fault::kLockTimeout:
      return "LockTimeout";
    case Fault::kDropConnection:
      return "DropConnection";
    case Fault::kDropAfterCommit:
      return "DropAfterCommit";
    case Fault::kCrash:
      return "CrashBeforeTheCall";
    case Fault::kCrashAfterCommit:
      return "CrashAfterCommit";
  }
  return "?";
}

std::function<std::unique_ptr<Connection>(const std::string&, const std::string&)>
FaultPlan::connector() {
  return [this](const std::string& dsn, const std::string& app) -> std::unique_ptr<Connection> {
    return std::make_unique<FaultInjectionConnection>(connect_postgres(dsn, app), *this);
  };
}

bool FaultPlan::should_fail(const void* conn, const std::string* sql, Fault& fault) {
  const bool is_commit = sql == nullptr;
  if (!from_sql_.empty()) {
    const void* none = nullptr;
    if (counted_.load() == nullptr && sql && sql->find(from_sql_) != std::string::npos)
      counted_.compare_exchange_strong(none, conn);
    if (counted_.load() != conn) return false;
  }
  int n = ++calls_;
  if (n != fail_at_) return false;
  // A commit-only fault falls on the next COMMIT at or after the Nth call.
  if ((fault_ == Fault::kDropAfterCommit || fault_ == Fault::kCrashAfterCommit) && !is_commit) {
    ++fail_at_;
    return false;
  }
  fault = fault_;
  fired_ = true;
  return true;
}

Rows FaultInjectionConnection::exec(const std::string& sql,
                                    const std::vector<std::string>& params) {
  if (!inner_) throw Error(ErrorKind::kRetryable, "connection lost (injected)", "08006");
  Fault fault;
  if (plan_.should_fail(this, &sql, fault)) {
    if (fault == Fault::kLockTimeout) {
      throw Error(ErrorKind::kRetryable, "canceling statement due to lock timeout (injected)",
                  "55P03");
    }
    inner_.reset();
    if (fault == Fault::kCrash) throw SimulatedCrash();
    throw Error(ErrorKind::kRetryable, "connection lost (injected)", "08006");
  }
  return inner_->exec(sql, params);
}

void FaultInjectionConnection::commit() {
  if (!inner_)
    throw Error(ErrorKind::kInDoubt, "connection lost during COMMIT (injected)", "08006");
  Fault fault;
  if (plan_.should_fail(this, nullptr, fault)) {
    if (fault == Fault::kDropAfterCommit || fault == Fault::kCrashAfterCommit) inner_->commit();
    if (fault == Fault::kLockTimeout) {
      // As a real COMMIT that fails (a serialization failure, say): the
      // server rolls the transaction back.
      inner_->exec("ROLLBACK", {});
      throw Error(ErrorKind::kRetryable, "could not serialize access (injected at COMMIT)",
                  "40001");
    }
    inner_.reset();
    if (fault == Fault::kCrash || fault == Fault::kCrashAfterCommit) throw SimulatedCrash();
    throw Error(ErrorKind::kInDoubt, "connection lost during COMMIT (injected)", "08006");
  }
  inner_->commit();
}

}  // namespace tandem::testing
