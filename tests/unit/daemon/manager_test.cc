// Each control command's effect on `tandemd serve`, with its migrations run
// against fakes (tests/support/fake_store.h, fake_submissions.h): what it
// answers, what it records in the submissions, and what the migration does
// next. No PostgreSQL; the same commands through the real binaries and a
// real server are in tests/e2e/daemon_test.cc.
#include "daemon/manager.h"

#include <gtest/gtest.h>

#include <thread>

#include "support/fake_store.h"
#include "support/fake_submissions.h"
#include "util/duration.h"

namespace tandem::testing {
namespace {

using namespace std::chrono_literals;

const std::string kSpec = four_step_spec();

class DaemonCommandEffects : public ::testing::Test {
 protected:
  void SetUp() override {
    auto parsed = parse_spec(kSpec, "rules.yaml");
    ASSERT_TRUE(parsed.spec);
    plan_ = make_plan(*parsed.spec);
    MigrationManager::Options o;
    o.poll = 20ms;
    o.shutdown_grace = 1000ms;
    o.connect = [this](const std::string&, const std::string&) { return db_.connect(); };
    o.submissions = &subs_;
    // The migration's store is the fake database's (not owned by the daemon).
    o.migration_store = [this](const std::string&) {
      return std::shared_ptr<MigrationStore>(&db_.store, [](MigrationStore*) {});
    };
    manager_ = std::make_unique<MigrationManager>(o);
    manager_->recover();  // as `serve` does first: the store made ready, the poller started
    ASSERT_EQ(subs_.prepared(), 1);
  }
  void TearDown() override { manager_.reset(); }

  nlohmann::json ask(control::Command c, const std::function<void(control::Request&)>& fill = {}) {
    control::Request r;
    r.command = c;
    r.name = "rules";
    if (fill) fill(r);
    return manager_->handle(r, "uid:1000");
  }
  nlohmann::json submit(const std::string& text = kSpec) {
    return ask(control::Command::kSubmit, [&](control::Request& r) {
      r.spec = text;
      r.file = "rules.yaml";
    });
  }
  // The CommandError code a command ends in; "" when it succeeds.
  std::string refusal(control::Command c, const std::function<void(control::Request&)>& fill) {
    try {
      ask(c, fill);
      return "";
    } catch (const CommandError& e) {
      return e.code();
    }
  }
  nlohmann::json status() { return ask(control::Command::kStatus); }
  // Waits (up to 10 s: the worker is a thread) for the migration's state.
  bool reaches(const std::string& state) {
    for (auto end = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < end;
         std::this_thread::sleep_for(5ms)) {
      if (status()["state"] == state) return true;
    }
    ADD_FAILURE() << "state " << status()["state"] << ", not " << state;
    return false;
  }
  std::vector<std::string> kinds() const {
    std::vector<std::string> out;
    for (const auto& e : subs_.events_of("rules")) out.push_back(e.kind + " by " + e.actor);
    return out;
  }
  bool logged(const std::string& kind) const {
    const auto k = kinds();
    return std::find(k.begin(), k.end(), kind + " by uid:1000") != k.end();
  }
  int sent(int step) const { return db_.count(plan_.steps.at(step).sql); }

  FakeDatabase db_{"rules"};
  FakeSubmissionStore subs_;
  Plan plan_;
  std::unique_ptr<MigrationManager> manager_;
};

TEST_F(DaemonCommandEffects, SubmitRecordsTheSpecAndRunsItUpToItsGate) {
  const auto out = submit();
  EXPECT_EQ(out["name"], "rules");
  EXPECT_EQ(out["submitted"], true);
  const auto row = subs_.row("rules");
  ASSERT_TRUE(row);
  EXPECT_EQ(row->submission.spec_text, kSpec);
  EXPECT_EQ(row->submission.file, "rules.yaml");
  EXPECT_EQ(row->submitted_by, "uid:1000");
  EXPECT_TRUE(logged("submitted"));
  ASSERT_TRUE(reaches("waiting_approval"));
  EXPECT_EQ(status()["waiting_for"], "cleanup");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(sent(i), 1) << plan_.steps[i].id;
  EXPECT_EQ(sent(3), 0);
}

TEST_F(DaemonCommandEffects, TheSameSpecAgainChangesNothingAndAnotherUnderItsNameIsRefused) {
  submit();
  EXPECT_EQ(submit()["submitted"], false);
  std::string other = kSpec;
  other.replace(other.find("CREATE TABLE b"), 14, "CREATE TABLE z");
  EXPECT_EQ(refusal(control::Command::kSubmit,
                    [&](control::Request& r) {
                      r.spec = other;
                      r.file = "other.yaml";
                    }),
            "conflict");
  EXPECT_EQ(subs_.row("rules")->submission.spec_text, kSpec);
  const auto k = kinds();
  EXPECT_EQ(std::count(k.begin(), k.end(), "submitted by uid:1000"), 1);
}

TEST_F(DaemonCommandEffects, ApproveIsRecordedAndTheMigrationFinishes) {
  submit();
  ASSERT_TRUE(reaches("waiting_approval"));
  const auto out = ask(control::Command::kApprove, [](auto& r) { r.phase = Phase::kCleanup; });
  EXPECT_EQ(out["approved"], "cleanup");
  EXPECT_TRUE(subs_.row("rules")->submission.approved.count(Phase::kCleanup));
  EXPECT_TRUE(logged("approve_requested"));
  ASSERT_TRUE(reaches("completed"));
  EXPECT_EQ(sent(3), 1);
  EXPECT_EQ(db_.store.state().migration->state, MigrationState::kCompleted);
}

TEST_F(DaemonCommandEffects, PauseHoldsTheMigrationEvenWhenApprovedAndResumeLetsItGo) {
  submit();
  ASSERT_TRUE(reaches("waiting_approval"));
  const auto out = ask(control::Command::kPause);
  EXPECT_EQ(out["desired"], "pause");
  EXPECT_EQ(out["recorded"], true);
  EXPECT_EQ(subs_.row("rules")->submission.desired, Desired::kPause);
  EXPECT_TRUE(logged("pause_requested"));
  ASSERT_TRUE(reaches("paused"));
  ask(control::Command::kApprove, [](auto& r) { r.phase = Phase::kCleanup; });
  EXPECT_EQ(status()["state"], "paused");
  EXPECT_EQ(sent(3), 0);
  EXPECT_EQ(ask(control::Command::kResume)["recorded"], true);
  EXPECT_EQ(subs_.row("rules")->submission.desired, Desired::kRun);
  EXPECT_TRUE(logged("resume_requested"));
  ASSERT_TRUE(reaches("completed"));
  EXPECT_EQ(sent(3), 1);
}

TEST_F(DaemonCommandEffects, RollbackUndoesWhatRanInReverseOrder) {
  submit();
  ASSERT_TRUE(reaches("waiting_approval"));
  EXPECT_EQ(ask(control::Command::kRollback)["desired"], "rollback");
  EXPECT_EQ(subs_.row("rules")->submission.desired, Desired::kRollback);
  EXPECT_TRUE(logged("rollback_requested"));
  ASSERT_TRUE(reaches("rolled_back"));
  const std::vector<std::string> downs = {plan_.steps[2].rollback_sql.value(),
                                          plan_.steps[1].rollback_sql.value(),
                                          plan_.steps[0].rollback_sql.value()};
  EXPECT_EQ(db_.sent_of(downs), downs);
  EXPECT_EQ(db_.store.state().migration->state, MigrationState::kRolledBack);
}

TEST_F(DaemonCommandEffects, AbortAsksForAPauseAndSaysWhetherItCancelledAnything) {
  submit();
  ASSERT_TRUE(reaches("waiting_approval"));
  const auto out = ask(control::Command::kAbort);
  EXPECT_EQ(out["desired"], "pause");
  EXPECT_EQ(out["cancelled"], false);  // waiting at a gate: no statement in flight
  EXPECT_TRUE(logged("abort_requested"));
  ASSERT_TRUE(reaches("paused"));
}

TEST_F(DaemonCommandEffects, SetChangesTheLiveSettingsAndARefusedValueChangesNothing) {
  submit();
  const auto out = ask(control::Command::kSet, [](auto& r) {
    r.settings = {{"batch_size", "500"}};
  });
  EXPECT_EQ(out["settings"]["batch_size"], "500");
  EXPECT_EQ(status()["settings"]["batch_size"], "500");
  EXPECT_EQ(subs_.row("rules")->live["settings"]["batch_size"], "500");
  EXPECT_TRUE(logged("settings_changed"));
  EXPECT_EQ(refusal(control::Command::kSet,
                    [](auto& r) {
                      r.settings = {{"batch_size", "-1"}};
                    }),
            "bad_field");
  EXPECT_EQ(refusal(control::Command::kSet,
                    [](auto& r) {
                      r.settings = {{"batch_sise", "9"}};
                    }),
            "bad_field");
  // Each value fine alone; together they are not.
  EXPECT_EQ(refusal(control::Command::kSet,
                    [](auto& r) {
                      r.settings = {{"batch_size", "100"}, {"max_batch_size", "50"}};
                    }),
            "bad_field");
  EXPECT_EQ(status()["settings"]["batch_size"], "500");
  EXPECT_EQ(subs_.row("rules")->live["settings"].size(), 1u);
}

TEST_F(DaemonCommandEffects, ThrottleIsRecordedShownAndLifted) {
  submit();
  const auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const auto out = ask(control::Command::kThrottle, [](auto& r) { r.throttle_for = 60s; });
  EXPECT_EQ(out["throttled"], true);
  // RFC 3339 out; epoch milliseconds in the stored row.
  ASSERT_TRUE(out["until"].is_string());
  EXPECT_EQ(out["until"].get<std::string>().size(), 24u) << out["until"];
  EXPECT_EQ(out["until"].get<std::string>().back(), 'Z');
  EXPECT_EQ(status()["throttled"], "manual");
  EXPECT_EQ(status()["throttled_until"], out["until"]);
  EXPECT_GE(status()["throttled_for_seconds"].get<long long>(), 58);
  const auto stored = subs_.row("rules")->live["throttle"]["until"];
  ASSERT_TRUE(stored.is_number_integer());
  EXPECT_GE(stored.get<long long>(), before + 60000);
  EXPECT_EQ(rfc3339(std::chrono::system_clock::time_point(
                std::chrono::milliseconds(stored.get<long long>()))),
            out["until"]);
  EXPECT_TRUE(logged("throttle_requested"));
  EXPECT_EQ(ask(control::Command::kThrottle, [](auto& r) { r.off = true; })["throttled"], false);
  EXPECT_TRUE(status()["throttled"].is_null());
  EXPECT_FALSE(subs_.row("rules")->live.contains("throttle"));
  EXPECT_TRUE(logged("throttle_lifted"));
}

TEST_F(DaemonCommandEffects, EventsAreTheMigrationsLogAndAnUnknownNameIsRefusedWithASuggestion) {
  submit();
  const auto events = ask(control::Command::kEvents)["events"];
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0]["kind"], "submitted");
  try {
    ask(control::Command::kStatus, [](auto& r) { r.name = "rulse"; });
    FAIL() << "status of a migration never submitted";
  } catch (const CommandError& e) {
    EXPECT_EQ(e.code(), "unknown_migration");
    EXPECT_NE(std::string(e.what()).find("rules"), std::string::npos) << e.what();
  }
}

TEST_F(DaemonCommandEffects, RecoverTakesUpEverySubmissionAsItWasLeft) {
  // Left paused by another daemon (or this one before a restart).
  subs_.add({"rules", kSpec, "rules.yaml", Desired::kPause, {}});
  manager_->recover();
  ASSERT_TRUE(reaches("paused"));
  EXPECT_EQ(sent(0), 0);
  ask(control::Command::kResume);
  ASSERT_TRUE(reaches("waiting_approval"));
  EXPECT_EQ(sent(0), 1);
}

}  // namespace
}  // namespace tandem::testing
