// The daemon's command table: every control command reaches its own handler,
// whose first checks need no database (a manager that was never connected).
#include <gtest/gtest.h>

#include "control/protocol.h"
#include "daemon/manager.h"

namespace tandem {
namespace {

MigrationManager::Options unreachable() {
  MigrationManager::Options o;
  o.dsn = "host=/nonexistent/tandem-unit-test connect_timeout=1";
  return o;
}

// The code of the CommandError a request ends in; "" when it succeeds.
std::string outcome(MigrationManager& m, const control::Request& r) {
  try {
    m.handle(r, "uid:0");
    return "";
  } catch (const CommandError& e) {
    return e.code();
  }
}

TEST(DaemonCommands, EveryCommandHasAHandler) {
  MigrationManager m(unreachable());
  using control::Command;
  for (Command c : {Command::kList, Command::kStatus, Command::kSubmit, Command::kPause,
                    Command::kResume, Command::kApprove, Command::kRollback, Command::kThrottle,
                    Command::kSet, Command::kAbort, Command::kEvents}) {
    control::Request r;
    r.command = c;
    r.name = "nothing_here";
    r.spec = "name: [";  // submit: refused as a spec before the database is asked
    r.file = "x.yaml";
    const std::string code = outcome(m, r);
    EXPECT_NE(code, "unknown_command") << control::to_string(c);
    if (c == Command::kList) {
      EXPECT_EQ(code, "") << "list reads memory only";
    } else if (c == Command::kSubmit) {
      EXPECT_EQ(code, "bad_spec");
    } else {
      EXPECT_EQ(code, "unknown_migration") << control::to_string(c);
    }
  }
}

TEST(DaemonCommands, ListIsEmptyBeforeAnySubmission) {
  MigrationManager m(unreachable());
  control::Request r;
  r.command = control::Command::kList;
  const nlohmann::json out = m.handle(r, "uid:0");
  ASSERT_TRUE(out.contains("migrations"));
  EXPECT_TRUE(out["migrations"].empty());
}

}  // namespace
}  // namespace tandem
