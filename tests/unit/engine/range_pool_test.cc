// The parallel workers' shared ranges: order, slots, retiring, splits, errors.
#include "engine/range_pool.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>

namespace tandem {
namespace {

std::vector<Partition> ranges_of(int n) {
  std::vector<Partition> out(n);
  for (int i = 0; i < n; ++i) out[i].worker = i;
  return out;
}

std::vector<Partition*> pointers(std::vector<Partition>& ranges) {
  std::vector<Partition*> out;
  for (auto& r : ranges) out.push_back(&r);
  return out;
}

TEST(RangePool, RangesGoInKeyOrderAndOneGivenBackGoesFirst) {
  auto ranges = ranges_of(3);
  RangePool pool(pointers(ranges), 0);
  Partition* first = pool.next();
  EXPECT_EQ(first->worker, 0);
  pool.put_first(first);
  EXPECT_EQ(pool.next()->worker, 0);
  EXPECT_EQ(pool.next()->worker, 1);
  Partition piece;
  piece.worker = 7;
  pool.add_split(piece);
  EXPECT_EQ(pool.next()->worker, 7);
  EXPECT_EQ(pool.next()->worker, 2);
  EXPECT_EQ(pool.next(), nullptr);
  EXPECT_TRUE(pool.empty());
}

TEST(RangePool, StaffsUpToTheWorkersAllowedReusingFreeSlots) {
  auto ranges = ranges_of(5);
  RangePool pool(pointers(ranges), 1);  // one session kept from an earlier step
  std::vector<std::pair<size_t, int>> started;
  auto start = [&](size_t slot, Partition* r) { started.emplace_back(slot, r->worker); };
  EXPECT_EQ(pool.staff(
                2, [] { return true; }, start),
            2);
  ASSERT_EQ(started.size(), 2u);
  EXPECT_EQ(started[0], std::make_pair(size_t{0}, 0));
  EXPECT_EQ(started[1], std::make_pair(size_t{1}, 1));
  // Nothing more while two work; a held throttle starts none either.
  EXPECT_EQ(pool.staff(
                2, [] { return true; }, start),
            2);
  EXPECT_EQ(pool.staff(
                4, [] { return false; }, start),
            2);
  EXPECT_EQ(started.size(), 2u);
  // Slot 0 ends: its slot is the first one reused.
  pool.ended(0, false);
  EXPECT_EQ(pool.staff(
                3, [] { return true; }, start),
            3);
  ASSERT_EQ(started.size(), 4u);
  EXPECT_EQ(started[2].first, 0u);
  EXPECT_EQ(started[3].first, 2u);
}

TEST(RangePool, AWorkerRetiresWhenMoreWorkThanAllowed) {
  auto ranges = ranges_of(4);
  RangePool pool(pointers(ranges), 0);
  pool.staff(
      3, [] { return true; }, [](size_t, Partition*) {});
  EXPECT_FALSE(pool.retire_if_over(3));
  EXPECT_TRUE(pool.retire_if_over(1));
  EXPECT_TRUE(pool.retire_if_over(1));
  EXPECT_FALSE(pool.retire_if_over(1));  // one left, as allowed
}

TEST(RangePool, SplitsAreWantedOnlyWhenNoRangeWaits) {
  auto ranges = ranges_of(1);
  RangePool pool(pointers(ranges), 0);
  pool.staff(
      3, [] { return true; }, [](size_t, Partition*) {});
  // One works, three allowed, no range left: two splits wanted.
  EXPECT_TRUE(pool.wait(1, false, true, 3, std::chrono::milliseconds(1)));
  EXPECT_TRUE(pool.claim_split());
  EXPECT_TRUE(pool.claim_split());
  EXPECT_FALSE(pool.claim_split());
  // A held throttle (no split allowed) wants none.
  EXPECT_TRUE(pool.wait(1, false, false, 3, std::chrono::milliseconds(1)));
  EXPECT_FALSE(pool.claim_split());
  // Nothing running and no range: the step is over.
  pool.ended(0, false);
  EXPECT_FALSE(pool.wait(0, false, true, 3, std::chrono::milliseconds(1)));
}

TEST(RangePool, AWorkerThatEndsFreesItsSlotForTheWaitingThread) {
  auto ranges = ranges_of(2);
  RangePool pool(pointers(ranges), 0);
  EXPECT_EQ(pool.staff(
                1, [] { return true; }, [](size_t, Partition*) {}),
            1);
  std::thread ender([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    pool.ended(0, false);
  });
  // Woken by the end (or, had the notice come first, by the timeout).
  EXPECT_TRUE(pool.wait(1, false, true, 1, std::chrono::seconds(5)));
  ender.join();
  int started = 0;
  EXPECT_EQ(pool.staff(
                1, [] { return true; },
                [&](size_t slot, Partition*) {
                  EXPECT_EQ(slot, 0u);
                  ++started;
                }),
            1);
  EXPECT_EQ(started, 1);
}

TEST(RangePool, ARealFailureBeatsASiblingsStop) {
  auto ranges = ranges_of(1);
  RangePool pool(pointers(ranges), 0);
  pool.rethrow_error();  // none yet
  pool.record_error(std::make_exception_ptr(std::runtime_error("stop")), true);
  pool.record_error(std::make_exception_ptr(std::runtime_error("failure")), false);
  pool.record_error(std::make_exception_ptr(std::runtime_error("later stop")), true);
  pool.record_error(std::make_exception_ptr(std::runtime_error("later failure")), false);
  try {
    pool.rethrow_error();
    FAIL() << "no error rethrown";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "failure");
  }
}

}  // namespace
}  // namespace tandem
