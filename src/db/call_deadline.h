// A deadline on every database call. libpq waits for the server's answer
// for as long as the socket stays up; a server whose processes are stopped
// (a frozen primary, a backend under SIGSTOP) keeps its TCP connections
// alive, so neither keepalives nor the server's statement_timeout ever end
// the wait. A watcher thread ends it instead, by shutting the socket down,
// which libpq reports as a lost connection (retried like any other):
//   - a call that has run `statement_timeout` (the largest this session was
//     given) plus kCallMargin: the server would have cancelled it by now;
//   - a call older than kPingAfter while the server, asked every kPingEvery
//     for a new connection (PQping, connect_timeout kPingTimeout), has not
//     answered kPingMisses times in a row: the server itself is not running.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace tandem {

inline constexpr std::chrono::seconds kCallMargin{10};
inline constexpr std::chrono::seconds kPingAfter{10};
inline constexpr std::chrono::seconds kPingEvery{5};
inline constexpr int kPingTimeoutSeconds = 3;
inline constexpr int kPingMisses = 2;

// The statement_timeout a session runs its calls under, followed through
// what they set: `SET statement_timeout = '250ms'` for the session, `SET
// LOCAL statement_timeout TO 5` until its transaction ends; units as
// PostgreSQL reads them (ms, s, min, h, d; a bare number is milliseconds);
// 0 is none.
class StatementTimeout {
 public:
  explicit StatementTimeout(std::chrono::milliseconds session) : session_(session) {}
  // The bound for a call running `sql`: the one in effect, or a larger one
  // that `sql` sets on its way (0, none, is the largest).
  std::chrono::milliseconds bound_for(const std::string& sql) const;
  // After a call ran `sql` (COMMIT, ROLLBACK, END or ABORT end what LOCAL set).
  void ran(const std::string& sql);
  std::chrono::milliseconds in_effect() const { return local_ ? *local_ : session_; }

 private:
  std::chrono::milliseconds session_;
  std::optional<std::chrono::milliseconds> local_;
};

// One call in progress on socket `fd`, watched until destruction. `bound`
// is the statement_timeout the call runs under (0: none, so only the server
// check applies); `ping_conninfo` reaches the same server ("host=... port=...").
class WatchedCall {
 public:
  WatchedCall(int fd, std::chrono::milliseconds bound, const std::string& ping_conninfo);
  ~WatchedCall();
  WatchedCall(const WatchedCall&) = delete;
  WatchedCall& operator=(const WatchedCall&) = delete;
  // Why the watcher ended the call; empty if it did not.
  std::string cut_reason() const;

 private:
  long long token_;
};

}  // namespace tandem
