// What a full-table backfill writes, against the measurements the estimate
// was fitted to (2026-12-02, PostgreSQL 15, a backfill right after a
// checkpoint, no load).
#include <gtest/gtest.h>

#include "engine/backfill.h"

namespace tandem {
namespace {

struct Measured {
  const char* shape;
  TableSize size;
  long long wal_bytes;
  long long grown_bytes;
};

TEST(RewriteEstimate, ReproducesTheBackfillsItWasFittedTo) {
  const Measured runs[] = {
      // pgbench_accounts, scale 2: 84-byte filler, the primary key.
      {"pgbench scale 2", {200000, 26861568, 4513792, 1}, 106800000, 32604160},
      // (id int primary key, a int): per-row costs dominate.
      {"two ints", {2000000, 72540160, 44941312, 1}, 681600000, 132700000},
      // (id bigint primary key, a int, t text, u text), indexes on t and (u, id).
      {"text, three indexes", {500000, 107847680, 130072576, 3}, 666000000, 207000000},
  };
  for (const auto& m : runs) {
    const RewriteEstimate e = estimate_rewrite(m.size);
    EXPECT_NEAR(static_cast<double>(e.wal_bytes) / m.wal_bytes, 1.0, 0.02) << m.shape;
    EXPECT_NEAR(static_cast<double>(e.growth_bytes) / m.grown_bytes, 1.0, 0.15) << m.shape;
  }
}

TEST(RewriteEstimate, GrowsWithIndexesAndRows) {
  TableSize t{1000000, 100 << 20, 20 << 20, 1};
  const auto one = estimate_rewrite(t);
  EXPECT_EQ(one.growth_bytes, 120LL << 20);
  t.indexes = 2;
  EXPECT_EQ(estimate_rewrite(t).wal_bytes - one.wal_bytes, 80LL * 1000000);
  t.rows = 0;
  t.heap_bytes = t.index_bytes = 0;
  EXPECT_EQ(estimate_rewrite(t).wal_bytes, 0);
}

}  // namespace
}  // namespace tandem
