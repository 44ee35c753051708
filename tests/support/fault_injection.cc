#include "support/fault_injection.h"

namespace tandem::testing {

std::function<std::unique_ptr<Connection>(const std::string&, const std::string&)>
FaultPlan::connector() {
  return [this](const std::string& dsn, const std::string& app) -> std::unique_ptr<Connection> {
    return std::make_unique<FaultInjectionConnection>(connect_postgres(dsn, app), *this);
  };
}

bool FaultPlan::should_fail(bool is_commit, Fault& fault) {
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
  if (plan_.should_fail(false, fault)) {
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
  if (plan_.should_fail(true, fault)) {
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
