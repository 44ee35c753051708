// A deadline on every database call. Issue 16: with the primary's processes
// stopped (kill -STOP) the kernel keeps its TCP connections alive, so
// keepalives never fire and the server's statement_timeout cannot either;
// tandemd had no session on the promoted standby for 60 s and logged
// nothing. The call is cut instead, as a lost connection, and retried.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <thread>

#include "support/scenario.h"

namespace tandem::testing {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The error a call ends with, and how long it took to end.
struct Ended {
  std::optional<Error> error;
  double seconds = 0;
};

Ended time_call(Connection& conn, const std::string& sql) {
  Ended out;
  const auto start = Clock::now();
  try {
    conn.exec(sql);
  } catch (const Error& e) {
    out.error = e;
  }
  out.seconds = seconds_since(start);
  return out;
}

// Stops processes with SIGSTOP; lets them go again on destruction, or after
// 60 s, so that a call nothing cuts ends (and fails the test) instead of
// hanging it.
class Frozen {
 public:
  explicit Frozen(std::string pids) : pids_(std::move(pids)) {
    EXPECT_EQ(run_command("kill -STOP " + pids_).exit_code, 0);
    thaw_ = std::thread([this] {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait_for(l, std::chrono::seconds(60), [this] { return done_; });
      run_command("kill -CONT " + pids_);
    });
  }
  ~Frozen() {
    {
      std::lock_guard<std::mutex> l(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thaw_.join();
  }

 private:
  std::string pids_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thaw_;
};

// Runs a call on `conn` while `pids` are stopped; expects it cut as a lost
// connection, saying `because`.
Ended call_while_stopped(Connection& conn, const std::string& pids, const std::string& because) {
  Ended ended;
  {
    Frozen frozen(pids);
    ended = time_call(conn, "SELECT 1");
  }
  EXPECT_TRUE(ended.error.has_value()) << "the call on stopped processes returned";
  if (ended.error) {
    EXPECT_EQ(ended.error->kind(), ErrorKind::kRetryable);
    EXPECT_NE(std::string(ended.error->what()).find(because), std::string::npos)
        << ended.error->what();
  }
  return ended;
}

TEST(Deadline, CutsACallOnAFrozenBackendOnceItsStatementTimeoutHasPassed) {
  PgServer& pg = PgServer::shared();
  const std::string db = pg.create_database("deadline");
  auto conn = pg.connect(db);
  conn->exec("SET statement_timeout = '1s'");
  const Ended ended = call_while_stopped(*conn, std::to_string(conn->backend_pid()),
                                         "statement_timeout of 1000 ms");
  // 1 s of statement_timeout and kCallMargin (10 s); the watcher looks
  // every 250 ms. Without the cut, the call ends only when the test lets the
  // backend go on, after 60 s.
  EXPECT_GE(ended.seconds, 10.5);
  EXPECT_LT(ended.seconds, 40.0);
  EXPECT_FALSE(conn->is_open());
  // The server is fine, and so is the next session.
  EXPECT_EQ(pg.connect(db)->exec("SELECT 1").text(0, 0), "1");
}

TEST(Deadline, CutsACallOnAFrozenServerLongBeforeItsStatementTimeout) {
  PgServer own;  // stopped whole: not the server other tests use
  const std::string db = own.create_database("frozen");
  auto conn = own.connect(db);
  conn->exec("BEGIN; SET LOCAL statement_timeout = '5min'");
  std::ifstream lock(own.socket_dir() + "/.s.PGSQL." + std::to_string(own.port()) + ".lock");
  std::string postmaster;
  std::getline(lock, postmaster);
  ASSERT_FALSE(postmaster.empty());
  auto children = run_command("pgrep -P " + postmaster + " | tr '\\n' ' '").output;
  const Ended ended = call_while_stopped(*conn, postmaster + " " + children,
                                         "did not answer 2 connection attempts");
  // Pinged after kPingAfter (10 s), every kPingEvery (5 s), each ping
  // waiting kPingTimeoutSeconds (3 s): cut after about 20 s, not 5 minutes
  // (nor after the 60 s at which the test lets the server go on).
  EXPECT_GE(ended.seconds, 15.0);
  EXPECT_LT(ended.seconds, 50.0);
  EXPECT_EQ(own.connect(db)->exec("SELECT 1").text(0, 0), "1");
}

}  // namespace
}  // namespace tandem::testing
