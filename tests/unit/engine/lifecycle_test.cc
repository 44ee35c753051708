// Step status and migration state: the stored text, both ways.
#include "engine/lifecycle.h"

#include <gtest/gtest.h>

#include "tandem/error.h"

namespace tandem {
namespace {

TEST(Lifecycle, StoredTextReadsBackAsTheSameValue) {
  for (StepStatus s : {StepStatus::kPending, StepStatus::kRunning, StepStatus::kDone,
                       StepStatus::kFailed, StepStatus::kRolledBack}) {
    EXPECT_EQ(parse_step_status(to_string(s)), s) << to_string(s);
  }
  for (MigrationState s : {MigrationState::kRunning, MigrationState::kPaused,
                           MigrationState::kWaitingApproval, MigrationState::kFailed,
                           MigrationState::kCompleted, MigrationState::kRollingBack,
                           MigrationState::kRolledBack}) {
    EXPECT_EQ(parse_migration_state(to_string(s)), s) << to_string(s);
  }
}

TEST(Lifecycle, TheTextStateSchemasHoldIsUnchanged) {
  // Written by every tandemd so far; a rename would strand stored migrations.
  EXPECT_STREQ(to_string(StepStatus::kRolledBack), "rolled_back");
  EXPECT_STREQ(to_string(MigrationState::kWaitingApproval), "waiting_approval");
  EXPECT_STREQ(to_string(MigrationState::kRollingBack), "rolling_back");
}

TEST(Lifecycle, UnknownStoredTextIsAnErrorThatSaysWhat) {
  try {
    parse_migration_state("exploded");
    FAIL() << "accepted an unknown state";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kFatal);
    EXPECT_NE(std::string(e.what()).find("\"exploded\""), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_step_status(""), Error);
}

}  // namespace
}  // namespace tandem
