// The throttle's decisions from readings, and the settings that drive it.
#include "engine/throttle.h"

#include <gtest/gtest.h>

#include "spec/settings.h"

namespace tandem {
namespace {

using std::chrono::milliseconds;

TEST(DailyWindow, ParsesAndCrossesMidnight) {
  auto night = parse_window("22:00-06:00");
  ASSERT_TRUE(night);
  EXPECT_TRUE(night->contains(23 * 60));
  EXPECT_TRUE(night->contains(0));
  EXPECT_TRUE(night->contains(5 * 60 + 59));
  EXPECT_FALSE(night->contains(6 * 60));
  EXPECT_FALSE(night->contains(12 * 60));
  EXPECT_EQ(night->minutes_until_open(21 * 60 + 30), 30);
  EXPECT_EQ(night->minutes_until_open(6 * 60), 16 * 60);
  EXPECT_EQ(night->minutes_until_open(23 * 60), 0);

  auto day = parse_window("09:30-17:00");
  ASSERT_TRUE(day);
  EXPECT_TRUE(day->contains(9 * 60 + 30));
  EXPECT_FALSE(day->contains(17 * 60));
  EXPECT_EQ(day->minutes_until_open(18 * 60), 15 * 60 + 30);

  for (const char* bad : {"", "22:00", "22:00-22:00", "24:00-01:00", "9:00-10:00", "22:00-06:60",
                          "22:00-06:00x", "ab:cd-ef:gh"}) {
    EXPECT_FALSE(parse_window(bad)) << bad;
  }
}

TEST(ThrottleValue, TrueOrAPositiveNumberThrottles) {
  for (const char* yes : {"t", "true", "1", "0.5", "42"})
    EXPECT_TRUE(throttle_value_set(yes)) << yes;
  for (const char* no : {"f", "false", "0", "-1", "", "abc", "1x"}) {
    EXPECT_FALSE(throttle_value_set(no)) << no;
  }
}

TEST(DecideThrottle, NothingConfiguredNeverThrottles) {
  Settings st;
  ThrottleReadings r;
  r.active_sessions = 500;
  r.lock_waits = 500;
  r.replicas = 1;
  r.replica_lag_seconds = 3600;
  EXPECT_EQ(decide_throttle(st, r).reason, "");
  EXPECT_FALSE(reads_database(st));
}

TEST(DecideThrottle, EachSignalNamesItsReason) {
  Settings st;
  st.throttle_replica_lag = milliseconds(2000);
  st.throttle_active_sessions = 10;
  st.throttle_lock_waits = 3;
  st.throttle_query = "SELECT busy FROM ops.flags";
  st.backfill_window = "22:00-06:00";
  st.throttle_wal_rate_mb = 40;
  st.throttle_commit_latency = milliseconds(20);
  ThrottleReadings calm;
  calm.commit_seconds = 0.020;  // at the limit, not over it
  calm.minute_of_day = 23 * 60;
  calm.wal_bytes_per_second = 45 * 1048576.0;  // a burst within its budget
  calm.replicas = 1;
  calm.replica_lag_seconds = 0.5;
  calm.active_sessions = 10;
  calm.lock_waits = 3;
  calm.query = "f";
  EXPECT_EQ(decide_throttle(st, calm).reason, "");

  auto with = [&](auto change) {
    ThrottleReadings r = calm;
    change(r);
    return decide_throttle(st, r);
  };
  auto v = with([](ThrottleReadings& r) { r.minute_of_day = 12 * 60; });
  EXPECT_EQ(v.reason, "outside_window");
  EXPECT_EQ(v.detail, "outside backfill_window 22:00-06:00 (opens in 600 min)");
  v = with([](ThrottleReadings& r) { r.replica_lag_seconds = 2.5; });
  EXPECT_EQ(v.reason, "replica_lag");
  EXPECT_EQ(v.detail, "replica lag 2.5s over throttle_replica_lag 2.0s");
  EXPECT_FALSE(v.critical);
  // Without a replica there is no lag to speak of.
  EXPECT_EQ(with([](ThrottleReadings& r) {
              r.replicas = 0;
              r.replica_lag_seconds = 99;
            }).reason,
            "");
  v = with([](ThrottleReadings& r) { r.wal_bytes_ahead = 2.5 * 1048576; });
  EXPECT_EQ(v.reason, "wal_rate");
  EXPECT_EQ(v.detail,
            "WAL written 2.5 MB ahead of throttle_wal_rate_mb 40 (45.0 MB/s over the last 2s)");
  v = with([](ThrottleReadings& r) {
    r.wal_bytes_ahead = 1048576;
    r.wal_bytes_per_second.reset();
  });
  EXPECT_EQ(v.detail, "WAL written 1.0 MB ahead of throttle_wal_rate_mb 40");
  v = with([](ThrottleReadings& r) { r.commit_seconds = 0.0421; });
  EXPECT_EQ(v.reason, "commit_latency");
  EXPECT_EQ(v.detail, "a one-row commit took 42.1 ms, over throttle_commit_latency 20ms");
  v = with([](ThrottleReadings& r) {
    r.commit_seconds = 60.0;
    r.commit_error = "canceling statement due to statement timeout";
  });
  EXPECT_EQ(v.detail,
            "a one-row commit failed after 60000.0 ms (canceling statement due to statement "
            "timeout), over throttle_commit_latency 20ms");
  // Not probed (the setting was just turned on): nothing to hold for.
  EXPECT_EQ(with([](ThrottleReadings& r) { r.commit_seconds.reset(); }).reason, "");
  EXPECT_EQ(with([](ThrottleReadings& r) { r.active_sessions = 11; }).reason, "active_sessions");
  EXPECT_EQ(with([](ThrottleReadings& r) { r.lock_waits = 4; }).reason, "lock_waits");
  v = with([](ThrottleReadings& r) { r.query = "3"; });
  EXPECT_EQ(v.reason, "throttle_query");
  EXPECT_EQ(v.detail, "throttle_query returned 3");
  EXPECT_EQ(with([](ThrottleReadings& r) { r.query.reset(); }).reason, "");
  v = with([](ThrottleReadings& r) { r.query_error = "relation \"ops.flags\" does not exist"; });
  EXPECT_EQ(v.reason, "throttle_query");
  EXPECT_EQ(v.detail, "throttle_query failed: relation \"ops.flags\" does not exist");
}

TEST(CommitLatencyHold, OneSlowProbeHoldsAndThreeQuickOnesInARowLetGo) {
  CommitLatencyHold h;
  const milliseconds limit(50);
  EXPECT_EQ(h.observe(0.010, limit), 0);  // quick, and never held
  EXPECT_EQ(h.observe(0.100, limit), 3);
  EXPECT_EQ(h.observe(0.010, limit), 2);
  // A slow probe between quick ones starts the count again.
  EXPECT_EQ(h.observe(0.120, limit), 3);
  EXPECT_EQ(h.observe(0.041, limit), 2);
  EXPECT_EQ(h.observe(0.050, limit), 1);  // at the limit is not over it
  EXPECT_EQ(h.observe(0.001, limit), 0);
  EXPECT_EQ(h.observe(0.001, limit), 0);
  // Turned off, or not probed: nothing holds.
  EXPECT_EQ(h.observe(0.100, limit), 3);
  EXPECT_EQ(h.observe(0.001, milliseconds(0)), 0);
  EXPECT_EQ(h.observe(0.100, limit), 3);
  EXPECT_EQ(h.observe(std::nullopt, limit), 0);

  // decide_throttle holds while the count is owed, and says why.
  Settings st;
  st.throttle_commit_latency = limit;
  ThrottleReadings r;
  r.commit_seconds = 0.0123;
  r.commit_quick_owed = 2;
  const ThrottleVerdict v = decide_throttle(st, r);
  EXPECT_EQ(v.reason, "commit_latency");
  EXPECT_EQ(v.detail,
            "a one-row commit took 12.3 ms, under throttle_commit_latency 50ms: the hold waits "
            "for 2 more such in a row");
  r.commit_quick_owed = 0;
  EXPECT_EQ(decide_throttle(st, r).reason, "");
}

TEST(WalRate, HoldsTheAverageToTheCapAndShowsTheRateOfTheLastTwoSeconds) {
  using namespace std::chrono_literals;
  WalRate w;
  const double cap = 10000;  // bytes per second
  const auto t = WalRate::Clock::time_point{} + 100s;
  auto r = w.observe(1000, cap, t);  // one second's worth to spend
  EXPECT_FALSE(r.bytes_per_second);
  EXPECT_EQ(r.bytes_ahead, 0);
  r = w.observe(2000, cap, t + 100ms);
  EXPECT_FALSE(r.bytes_per_second);  // under a fifth of a second of readings
  EXPECT_EQ(r.bytes_ahead, 0);
  // 29,000 bytes in 0.9 s: 19,000 beyond the budget (9,000 left, plus 9,000
  // earned, capped at 10,000).
  r = w.observe(31000, cap, t + 1s);
  EXPECT_DOUBLE_EQ(*r.bytes_per_second, 30000.0);
  EXPECT_DOUBLE_EQ(r.bytes_ahead, 19000.0);
  // Nothing written while held: a second repays 10,000 of it.
  r = w.observe(31000, cap, t + 2s);
  EXPECT_DOUBLE_EQ(*r.bytes_per_second, 15000.0);
  EXPECT_DOUBLE_EQ(r.bytes_ahead, 9000.0);
  r = w.observe(31000, cap, t + 3s);
  EXPECT_DOUBLE_EQ(*r.bytes_per_second, 0.0);  // from the reading at t + 1s
  EXPECT_EQ(r.bytes_ahead, 0);
  // A long quiet spell earns no more than one second's worth.
  r = w.observe(41000, cap, t + 63s);
  EXPECT_EQ(r.bytes_ahead, 0);
  EXPECT_NEAR(*r.bytes_per_second, 10000.0 / 60, 1e-9);
  r = w.observe(61000, cap, t + 63s + 500ms);
  EXPECT_DOUBLE_EQ(r.bytes_ahead, 15000.0);
}

TEST(WalRate, WhileHeldWhatOthersWriteOwesTwoSecondsOfTheCapAtMost) {
  using namespace std::chrono_literals;
  WalRate w;
  const double cap = 10000;
  const auto t = WalRate::Clock::time_point{} + 100s;
  w.observe(0, cap, t);
  // The backfill's own burst: 60,000 bytes beyond the budget, all owed.
  auto r = w.observe(70000, cap, t + 1s);
  EXPECT_DOUBLE_EQ(r.bytes_ahead, 60000.0);
  // Held from here on; the application writes 100,000 bytes a second for
  // ten seconds. The debt the backfill ran up stays (it earns nothing back
  // while the application writes more than the cap), and grows no deeper.
  long long lsn = 70000;
  for (int i = 1; i <= 10; ++i) {
    lsn += 100000;
    r = w.observe(lsn, cap, t + 1s + i * 1s);
    EXPECT_DOUBLE_EQ(r.bytes_ahead, 60000.0) << i;
  }
  // Quiet again: repaid at the cap.
  r = w.observe(lsn, cap, t + 17s);
  EXPECT_DOUBLE_EQ(r.bytes_ahead, 0.0);
  // A small debt (15,000 bytes against the 1,000 earned since), then the
  // application's flood: two seconds' worth at most.
  r = w.observe(lsn += 15000, cap, t + 17s + 100ms);
  EXPECT_DOUBLE_EQ(r.bytes_ahead, 14000.0);
  for (int i = 1; i <= 10; ++i) {
    r = w.observe(lsn += 100000, cap, t + 17s + 100ms + i * 1s);
    EXPECT_DOUBLE_EQ(r.bytes_ahead, 20000.0) << i;
  }
  // Two seconds after the flood stops, the backfill may go on.
  r = w.observe(lsn, cap, t + 17s + 100ms + 11s);
  EXPECT_DOUBLE_EQ(r.bytes_ahead, 10000.0);
  r = w.observe(lsn, cap, t + 17s + 100ms + 12s);
  EXPECT_DOUBLE_EQ(r.bytes_ahead, 0.0);
}

TEST(DecideThrottle, CriticalThresholdsComeFirstAndPause) {
  Settings st;
  st.throttle_replica_lag = milliseconds(2000);
  st.critical_replica_lag = milliseconds(30000);
  st.critical_active_sessions = 50;
  st.backfill_window = "22:00-06:00";
  ThrottleReadings r;
  r.minute_of_day = 12 * 60;  // outside the window too
  r.replicas = 2;
  r.replica_lag_seconds = 31;
  auto v = decide_throttle(st, r);
  EXPECT_TRUE(v.critical);
  EXPECT_EQ(v.reason, "replica_lag");
  EXPECT_EQ(v.detail, "replica lag 31.0s over critical_replica_lag 30.0s");
  r.replica_lag_seconds = 1;
  r.active_sessions = 51;
  v = decide_throttle(st, r);
  EXPECT_TRUE(v.critical);
  EXPECT_EQ(v.detail, "51 active sessions over critical_active_sessions 50");
  r.active_sessions = 50;
  v = decide_throttle(st, r);
  EXPECT_FALSE(v.critical);
  EXPECT_EQ(v.reason, "outside_window");
}

TEST(ThrottleSettings, ParseCheckAndPrint) {
  Settings s;
  EXPECT_EQ(set_setting(s, "backfill_window", "01:00-05:00"), "");
  EXPECT_EQ(setting_text(s, "backfill_window"), "01:00-05:00");
  EXPECT_EQ(set_setting(s, "backfill_window", "1-5"),
            "backfill_window: expected a daily window such as 22:00-06:00 (local time), got "
            "\"1-5\"");
  EXPECT_EQ(set_setting(s, "backfill_window", ""), "");  // off again
  EXPECT_EQ(set_setting(s, "throttle_query", "SELECT count(*) > 5 FROM jobs"), "");
  EXPECT_EQ(set_setting(s, "throttle_query", "SELECT 1; DROP TABLE jobs"),
            "throttle_query: expected one SQL query");
  EXPECT_EQ(set_setting(s, "throttle_wal_rate_mb", "30"), "");
  EXPECT_EQ(s.throttle_wal_rate_mb, 30);
  EXPECT_EQ(setting_text(s, "throttle_wal_rate_mb"), "30");
  EXPECT_EQ(set_setting(s, "throttle_wal_rate_mb", "0"), "");  // off
  EXPECT_EQ(set_setting(s, "throttle_commit_latency", "15ms"), "");
  EXPECT_EQ(s.throttle_commit_latency, milliseconds(15));
  EXPECT_EQ(setting_text(s, "throttle_commit_latency"), "15ms");
  EXPECT_EQ(set_setting(s, "throttle_commit_latency", "0"), "");  // off
  EXPECT_EQ(set_setting(s, "throttle_replica_lag", "5s"), "");
  EXPECT_EQ(setting_text(s, "throttle_replica_lag"), "5s");
  EXPECT_EQ(set_setting(s, "critical_replica_lag", "2s"), "");
  EXPECT_EQ(check_settings(s), "critical_replica_lag must be more than throttle_replica_lag");
  EXPECT_EQ(set_setting(s, "critical_replica_lag", "0"), "");
  EXPECT_EQ(check_settings(s), "");
  EXPECT_EQ(set_setting(s, "critical_active_sessions", "20"), "");
  EXPECT_EQ(set_setting(s, "throttle_active_sessions", "20"), "");
  EXPECT_EQ(check_settings(s),
            "critical_active_sessions must be more than throttle_active_sessions");
}

TEST(VacuumPace, SaysThePhaseTheBlocksScannedAndTheTimeLeftOfTheHeapScan) {
  using std::chrono::seconds;
  VacuumPace pace;
  const auto t0 = VacuumPace::Clock::now();
  // First seen: no pace yet.
  EXPECT_EQ(pace.describe(42, "scanning heap", 1000, 11000, t0),
            "its phase: scanning heap, 1000 of 11000 heap blocks scanned (9%)");
  // 2000 blocks in 10 s since: 8000 left take 40 s more.
  EXPECT_EQ(pace.describe(42, "scanning heap", 3000, 11000, t0 + seconds(10)),
            "its phase: scanning heap, 3000 of 11000 heap blocks scanned (27%), about 40.0s left "
            "of the heap scan at its pace so far");
  // Past the heap scan, no time is guessed for the index phases.
  EXPECT_EQ(pace.describe(42, "vacuuming indexes", 11000, 11000, t0 + seconds(60)),
            "its phase: vacuuming indexes, 11000 of 11000 heap blocks scanned (100%)");
  // Another vacuum starts its pace afresh.
  EXPECT_EQ(pace.describe(43, "scanning heap", 50, 100, t0 + seconds(61)),
            "its phase: scanning heap, 50 of 100 heap blocks scanned (50%)");
  EXPECT_EQ(pace.describe(43, "initializing", 0, 0, t0 + seconds(62)), "its phase: initializing");
}

}  // namespace
}  // namespace tandem
