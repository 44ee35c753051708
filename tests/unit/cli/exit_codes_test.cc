// One table from how a command ended to its exit code (scripts depend on them).
#include "cli/exit_codes.h"

#include <gtest/gtest.h>

#include "engine/run_errors.h"

namespace tandem {
namespace {

TEST(ExitCodes, HowARunEndedDecidesFirst) {
  EXPECT_EQ(exit_code_for(LockHeldError("held")), kExitLocked);
  EXPECT_EQ(exit_code_for(StepFailedError("failed", "23505")), kExitStepFailed);
  EXPECT_EQ(exit_code_for(RollbackRefusedError("no")), kExitRollbackRefused);
  EXPECT_EQ(exit_code_for(StoppedError("stop")), kExitInterrupted);
  EXPECT_EQ(exit_code_for(CriticalPauseError("lag")), kExitPaused);
}

TEST(ExitCodes, OtherwiseTheKindOfError) {
  EXPECT_EQ(exit_code_for(Error(ErrorKind::kBadInput, "spec")), kExitBadInput);
  EXPECT_EQ(exit_code_for(Error(ErrorKind::kRetryable, "refused", "08001")), kExitUnreachable);
  EXPECT_EQ(exit_code_for(Error(ErrorKind::kInDoubt, "lost at COMMIT")), kExitUnreachable);
  EXPECT_EQ(exit_code_for(Error(ErrorKind::kFatal, "x", "42P01")), kExitStepFailed);
}

TEST(ExitCodes, TheNumbersScriptsDependOnAreUnchanged) {
  EXPECT_EQ(kExitOk, 0);
  EXPECT_EQ(kExitBadInput, 1);
  EXPECT_EQ(kExitUsage, 2);
  EXPECT_EQ(kExitNeedsApproval, 3);
  EXPECT_EQ(kExitStepFailed, 4);
  EXPECT_EQ(kExitLocked, 5);
  EXPECT_EQ(kExitUnreachable, 6);
  EXPECT_EQ(kExitRollbackRefused, 7);
  EXPECT_EQ(kExitInterrupted, 8);
  EXPECT_EQ(kExitPaused, 9);
}

}  // namespace
}  // namespace tandem
