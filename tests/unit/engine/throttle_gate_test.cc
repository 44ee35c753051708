// The throttle gate's holds and reports, on a fake clock: an operator's
// manual throttle holds the backfill without a reading from the server.
#include "engine/throttle_gate.h"

#include <gtest/gtest.h>

#include "support/fake_store.h"
#include "support/fake_time.h"

namespace tandem {
namespace {

// A session the gate must not use: a manual throttle is decided in memory.
class NoSession : public Connection {
 public:
  Rows exec(const std::string& sql, const std::vector<std::string>&) override {
    ADD_FAILURE() << "the gate ran SQL: " << sql;
    return {};
  }
  void commit() override {}
  bool is_open() const override { return true; }
  int backend_pid() const override { return 1; }
};

struct Reports : ProgressSink {
  void phase_started(Phase) override {}
  void step_started(const Step&) override {}
  void progress(const ProgressUpdate&) override {}
  void step_finished(const Step&, double) override {}
  void throttling(const std::string& reason, double seconds) override {
    holds.emplace_back(reason, seconds);
  }
  std::vector<std::pair<std::string, double>> holds;
};

struct Gate {
  testing::FakeTime time;
  RunControl control{Settings{}};
  testing::FakeStore store{"m"};
  Reports reports;
  NoSession session;
  int stop_after_sleeps = -1;  // -1: never
  RunContext ctx{"m",
                 "test",
                 &store,
                 &time,
                 &control,
                 [this] {
                   return stop_after_sleeps >= 0 &&
                          static_cast<int>(time.sleeps().size()) >= stop_after_sleeps;
                 },
                 [] { return Settings{}; },
                 [this](const std::function<void(ProgressSink&)>& f) { f(reports); }};
  ThrottleGate gate{ctx, [this]() -> Connection& { return session; }, "tandemd m ", {}};
};

TEST(ThrottleGate, AManualThrottleHoldsUntilAStopAndReportsHowLong) {
  Gate g;
  g.control.throttle(std::nullopt);
  g.stop_after_sleeps = 12;
  EXPECT_FALSE(g.gate.wait());
  // Polled every half second (five sleeps of 100 ms), stopped at the 12th sleep.
  const auto sleeps = g.time.sleeps();
  ASSERT_EQ(sleeps.size(), 12u);
  for (auto d : sleeps) EXPECT_EQ(d, std::chrono::milliseconds(100));
  ASSERT_GE(g.reports.holds.size(), 2u);
  EXPECT_EQ(g.reports.holds.front().first, "manual");
  // The last report lifts the hold and says how long the last stretch was held.
  EXPECT_EQ(g.reports.holds.back().first, "");
  EXPECT_NEAR(g.reports.holds.back().second, 0.2, 1e-9);
}

TEST(ThrottleGate, ALiftedThrottleLetsTheBatchGoAndSaysSo) {
  Gate g;
  g.control.throttle(std::nullopt);
  std::string last;
  auto since = g.time.now();
  EXPECT_EQ(g.gate.poll(last, since).reason, "manual");
  EXPECT_EQ(last, "manual");
  g.time.sleep_for(std::chrono::seconds(3));
  g.control.lift_throttle();
  // Lifted: the next reading asks the server; with no thresholds set the
  // signals are not read at all (Settings{} has every throttle off).
  g.gate.poll(last, since);
  EXPECT_EQ(last, "");
  ASSERT_FALSE(g.reports.holds.empty());
  EXPECT_EQ(g.reports.holds.back().first, "");
  EXPECT_NEAR(g.reports.holds.back().second, 3.0, 1e-9);
}

}  // namespace
}  // namespace tandem
