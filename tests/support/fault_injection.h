// A Connection wrapper that makes the Nth call (counted across every
// connection one plan creates) fail in a chosen way, for sweeping N over a
// whole migration and checking the invariant after each run. Or, given a
// piece of SQL, the Nth call of the first session that sends it, counting
// from that statement: a fault placed inside one worker's transaction while
// other workers run.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "db/connection.h"

namespace tandem::testing {

enum class Fault {
  kLockTimeout,       // the statement fails as if its lock timed out; the session lives on
  kDropConnection,    // the session is closed before the statement (or COMMIT) reaches the server
  kDropAfterCommit,   // COMMIT succeeds on the server, then the session is lost: in doubt
  kCrash,             // the process dies before the call reaches the server (kill -9)
  kCrashAfterCommit,  // the process dies right after a COMMIT succeeded on the server
};

// The fault's name, for test names.
std::string fault_name(Fault f);

// Thrown by a crash fault. Not a tandem::Error, so nothing in tandem catches
// it: the run ends as if the process had died, and its session is closed.
struct SimulatedCrash : std::runtime_error {
  SimulatedCrash() : std::runtime_error("simulated crash") {}
};

class FaultPlan {
 public:
  FaultPlan(Fault fault, int fail_at) : fault_(fault), fail_at_(fail_at) {}
  // Counts only the calls of the session that first sends SQL containing
  // `from_sql`, that statement being call 1.
  FaultPlan(Fault fault, int fail_at, std::string from_sql)
      : fault_(fault), fail_at_(fail_at), from_sql_(std::move(from_sql)) {}
  // A connect function for RunOptions::connect.
  std::function<std::unique_ptr<Connection>(const std::string&, const std::string&)> connector();
  int calls() const { return calls_; }
  bool fired() const { return fired_; }

  // Called by the wrapper for every exec (its SQL) and commit (no SQL) of
  // session `conn`; true when this one fails.
  bool should_fail(const void* conn, const std::string* sql, Fault& fault);

 private:
  Fault fault_;
  int fail_at_;  // 1-based; 0 never fails
  std::string from_sql_;
  std::atomic<const void*> counted_{nullptr};  // with from_sql_: the session counted
  std::atomic<int> calls_{0};
  std::atomic<bool> fired_{false};
};

class FaultInjectionConnection final : public Connection {
 public:
  FaultInjectionConnection(std::unique_ptr<Connection> inner, FaultPlan& plan)
      : inner_(std::move(inner)), plan_(plan) {}
  Rows exec(const std::string& sql, const std::vector<std::string>& params) override;
  void commit() override;
  bool is_open() const override { return inner_ && inner_->is_open(); }
  int backend_pid() const override { return inner_ ? inner_->backend_pid() : 0; }

 private:
  std::unique_ptr<Connection> inner_;
  FaultPlan& plan_;
};

}  // namespace tandem::testing
