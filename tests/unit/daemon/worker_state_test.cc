// What an operator asks of a migration and what its worker does: the text
// the control protocol and tandem.submissions hold.
#include "daemon/worker_state.h"

#include <gtest/gtest.h>

namespace tandem {
namespace {

TEST(WorkerState, DesiredReadsBackFromItsStoredText) {
  for (Desired d : {Desired::kRun, Desired::kPause, Desired::kRollback}) {
    EXPECT_EQ(parse_desired(to_string(d)), d) << to_string(d);
  }
  EXPECT_EQ(parse_desired("explode"), std::nullopt);
  EXPECT_STREQ(to_string(Desired::kRollback), "rollback");
}

TEST(WorkerState, ActivitiesAreTheProtocolsWords) {
  EXPECT_STREQ(to_string(Activity::kStarting), "starting");
  EXPECT_STREQ(to_string(Activity::kWaitingForTable), "waiting_for_table");
  EXPECT_STREQ(to_string(Activity::kRunningElsewhere), "running_elsewhere");
  EXPECT_STREQ(to_string(Activity::kWaitingApproval), "waiting_approval");
  EXPECT_STREQ(to_string(Activity::kRolledBack), "rolled_back");
}

}  // namespace
}  // namespace tandem
