// The rate meter behind progress and ETA, and the keyset walker's range
// predicates: pure parts of the engine.
#include "engine/progress.h"

#include <gtest/gtest.h>

#include "engine/backfill.h"

namespace tandem {
namespace {

TEST(RateMeter, SmoothsAndEstimates) {
  RateMeter m(0.5);
  EXPECT_FALSE(m.eta_seconds(100));
  m.add(1000, 1.0);
  EXPECT_DOUBLE_EQ(m.rows_per_second(), 1000);
  m.add(3000, 1.0);
  EXPECT_DOUBLE_EQ(m.rows_per_second(), 2000);
  EXPECT_DOUBLE_EQ(*m.eta_seconds(4000), 2.0);
  m.add(10, 0);  // ignored: no time passed
  EXPECT_DOUBLE_EQ(m.rows_per_second(), 2000);
}

TEST(KeysetWalker, RangePredicateNumbersParametersAfterThenUpper) {
  KeysetWalker one("t", {"id"});
  EXPECT_EQ(one.range_predicate({{}, {}}), "true");
  EXPECT_EQ(one.range_predicate({{"5"}, {}}), "(_row.id) > ($1)");
  EXPECT_EQ(one.range_predicate({{}, {"9"}}), "(_row.id) <= ($1)");
  KeysetWalker two("t", {"a", "b"});
  EXPECT_EQ(two.range_predicate({{"1", "2"}, {"3", "4"}}),
            "(_row.a, _row.b) > ($1, $2) AND (_row.a, _row.b) <= ($3, $4)");
}

TEST(Progress, TheLineRedrawnInPlaceIsCutToTheTerminalsWidth) {
  EXPECT_EQ(fit_to_width("[backfill] 1.backfill  5,000 rows", 80),
            "[backfill] 1.backfill  5,000 rows");
  EXPECT_EQ(fit_to_width("abcdef", 6), "abcdef");
  EXPECT_EQ(fit_to_width("abcdefg", 6), "abcde\u2026");
  // Columns, not bytes: "é" is two bytes and one column.
  EXPECT_EQ(fit_to_width("d\u00e9j\u00e0 vu", 7), "d\u00e9j\u00e0 vu");
  EXPECT_EQ(fit_to_width("d\u00e9j\u00e0 vu!", 7), "d\u00e9j\u00e0 v\u2026");
  EXPECT_EQ(fit_to_width("abc", 1), "");
}

}  // namespace
}  // namespace tandem
