// The retry loop's rules, by error class and attempt, without a server.
#include "engine/retry_policy.h"

#include <gtest/gtest.h>

#include "engine/run_errors.h"

namespace tandem {
namespace {

using Verdict = RetryPolicy::Verdict;

Settings budget_of(int n) {
  Settings st;
  st.retry_budget = n;
  return st;
}

Verdict judge(const Error& e, RetryPolicy::Attempt a = {1, 0, false, true}, int budget = 30) {
  return RetryPolicy::judge(e, a, budget_of(budget));
}

TEST(RetryPolicy, HowARunEndsAndBadInputArePassedOn) {
  EXPECT_EQ(judge(LockHeldError("held")), Verdict::kPassOn);
  EXPECT_EQ(judge(StepFailedError("failed", "23505")), Verdict::kPassOn);
  EXPECT_EQ(judge(RollbackRefusedError("no")), Verdict::kPassOn);
  EXPECT_EQ(judge(StoppedError("stop")), Verdict::kPassOn);
  EXPECT_EQ(judge(CriticalPauseError("lag")), Verdict::kPassOn);
  EXPECT_EQ(judge(Error(ErrorKind::kBadInput, "spec")), Verdict::kPassOn);
  // Even while a stop is requested: the run's own end wins.
  EXPECT_EQ(judge(LockHeldError("held"), {1, 0, true, true}), Verdict::kPassOn);
}

TEST(RetryPolicy, AStopRequestedEndsAnyOtherError) {
  const Error lock_timeout(ErrorKind::kRetryable, "lock timeout", "55P03");
  EXPECT_EQ(judge(lock_timeout, {1, 0, true, true}), Verdict::kStop);
  EXPECT_EQ(judge(Error(ErrorKind::kFatal, "x", "42P01"), {1, 0, true, true}), Verdict::kStop);
}

TEST(RetryPolicy, AServerNeverReachedIsPassedOnButALostOneIsRetried) {
  const Error refused(ErrorKind::kRetryable, "connection refused", "08001");
  EXPECT_EQ(judge(refused, {1, 0, false, false}), Verdict::kPassOn);
  EXPECT_EQ(judge(refused, {1, 0, false, true}), Verdict::kRetry);
}

TEST(RetryPolicy, AnInDoubtCommitIsReadBackNeverReplayed) {
  const Error in_doubt(ErrorKind::kInDoubt, "connection lost during COMMIT");
  EXPECT_EQ(judge(in_doubt), Verdict::kReread);
  // Whatever the attempt: the state store decides, not the budget.
  EXPECT_EQ(judge(in_doubt, {30, 30, false, true}), Verdict::kReread);
}

TEST(RetryPolicy, RetryableErrorsAreRetriedUntilTheBudgetOrTheOutagesAreSpent) {
  const Error deadlock(ErrorKind::kRetryable, "deadlock", "40P01");
  EXPECT_EQ(judge(deadlock, {1, 0, false, true}, 3), Verdict::kRetry);
  EXPECT_EQ(judge(deadlock, {2, 0, false, true}, 3), Verdict::kRetry);
  EXPECT_EQ(judge(deadlock, {3, 0, false, true}, 3), Verdict::kFail);
  EXPECT_EQ(judge(deadlock, {1, 2, false, true}, 3), Verdict::kRetry);
  EXPECT_EQ(judge(deadlock, {1, 3, false, true}, 3), Verdict::kFail);
  EXPECT_EQ(judge(Error(ErrorKind::kFatal, "no table", "42P01")), Verdict::kFail);
}

TEST(RetryPolicy, BackoffDoublesUpToTheCapWithEqualJitter) {
  Settings st;
  st.retry_backoff = std::chrono::milliseconds(100);
  st.retry_backoff_max = std::chrono::milliseconds(1000);
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    for (int n = 1; n <= 40; ++n) {
      const long long full = std::min(1000LL, 100LL << std::min(n - 1, 20));
      const long long ms = RetryPolicy::backoff(n, st, rng).count();
      EXPECT_GE(ms, full / 2) << "attempt " << n;
      EXPECT_LE(ms, full) << "attempt " << n;
    }
  }
}

}  // namespace
}  // namespace tandem
