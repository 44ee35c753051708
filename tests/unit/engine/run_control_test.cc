#include "engine/run_control.h"

#include <gtest/gtest.h>

#include "spec/settings.h"

namespace tandem {
namespace {

Settings adaptive(int start, int target_ms, int max = 100'000) {
  Settings s;
  s.batch_size = start;
  s.target_batch_time = std::chrono::milliseconds(target_ms);
  s.max_batch_size = max;
  return s;
}

TEST(BatchSizer, WithoutATargetTheSizeIsTheConfiguredOne) {
  Settings s;
  s.batch_size = 700;
  BatchSizer b(s);
  b.observe(700, 5.0, s);
  EXPECT_EQ(b.size(s), 700);
  s.batch_size = 300;  // changed live
  EXPECT_EQ(b.size(s), 300);
}

TEST(BatchSizer, GrowsAtMostOneAndAHalfTimesPerBatchTowardTheTarget) {
  Settings s = adaptive(1000, 200);
  BatchSizer b(s);
  b.observe(1000, 0.02, s);  // ten times too fast
  EXPECT_EQ(b.size(s), 1500);
  b.observe(1500, 0.15, s);  // 4/3 of the way to the target
  EXPECT_EQ(b.size(s), 2000);
  b.observe(2000, 0.2, s);  // on target: stays
  EXPECT_EQ(b.size(s), 2000);
}

TEST(BatchSizer, ShrinksAtMostToHalfAndCutsHardWhenFarOver) {
  Settings s = adaptive(4000, 200);
  BatchSizer b(s);
  b.observe(4000, 0.7, s);  // 3.5x over: halves, not more
  EXPECT_EQ(b.size(s), 2000);
  b.observe(2000, 1.0, s);  // 5x over: a quarter
  EXPECT_EQ(b.size(s), 500);
}

TEST(BatchSizer, StaysWithinTenRowsAndTheMaximum) {
  Settings s = adaptive(20, 100, 3000);
  BatchSizer b(s);
  for (int i = 0; i < 5; ++i) b.observe(b.size(s), 10.0, s);
  EXPECT_EQ(b.size(s), BatchSizer::kMinRows);
  for (int i = 0; i < 40; ++i) b.observe(b.size(s), 0.001, s);
  EXPECT_EQ(b.size(s), 3000);
  s.max_batch_size = 1000;  // lowered live
  EXPECT_EQ(b.size(s), 1000);
}

TEST(BatchSizer, AShortLastBatchSaysNothingAboutTheRate) {
  Settings s = adaptive(1000, 200);
  BatchSizer b(s);
  b.observe(3, 0.001, s);
  EXPECT_EQ(b.size(s), 1000);
}

TEST(RunControl, ManualThrottleUntilATimeOrUntilLifted) {
  RunControl c{Settings{}};
  auto now = RunControl::SystemClock::now();
  EXPECT_FALSE(c.manually_throttled(now));
  c.throttle(now + std::chrono::seconds(10));
  EXPECT_TRUE(c.manually_throttled(now));
  EXPECT_FALSE(c.manually_throttled(now + std::chrono::seconds(11)));
  c.throttle(std::nullopt);
  EXPECT_TRUE(c.manually_throttled(now + std::chrono::hours(100)));
  EXPECT_FALSE(c.throttle_until());
  c.lift_throttle();
  EXPECT_FALSE(c.manually_throttled(now));
}

TEST(Settings, OneTableChecksEveryKey) {
  Settings s;
  EXPECT_EQ(set_setting(s, "batch_size", "2000"), "");
  EXPECT_EQ(s.batch_size, 2000);
  EXPECT_EQ(set_setting(s, "lock_timeout", "1.5s"), "");
  EXPECT_EQ(s.lock_timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(set_setting(s, "target_batch_time", "0"), "");  // off
  EXPECT_EQ(set_setting(s, "target_batch_time", "5ms"),
            "target_batch_time: 5ms is out of range (0 (off) or 10ms to 1m00s)");
  EXPECT_EQ(set_setting(s, "batch_size", "12x"),
            "batch_size: expected a whole number, got \"12x\"");
  EXPECT_EQ(set_setting(s, "nope", "1"), "unknown setting \"nope\"");
  EXPECT_EQ(setting_text(s, "lock_timeout"), "1.5s");
  EXPECT_EQ(setting_text(s, "batch_size"), "2000");
  s.max_batch_size = 100;
  EXPECT_EQ(check_settings(s), "max_batch_size must not be less than batch_size");
  // Every default reads back as a value the same table accepts.
  for (const auto& key : setting_keys()) {
    Settings fresh;
    EXPECT_EQ(set_setting(fresh, key, setting_text(Settings{}, key)), "") << key;
  }
}

}  // namespace
}  // namespace tandem
