// Keyset batches over a table's primary key: the SQL for one backfill batch
// and one verify chunk. The executor runs them, one short transaction each.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "db/connection.h"
#include "tandem/plan.h"

namespace tandem {

// The columns of the key tandem walks the table by (checks::walk_key_index),
// quoted, in index order. Throws Error(kFatal) when the table has none.
std::vector<std::string> walk_key_columns(Connection& conn, const std::string& table);
// The planner's row estimate, or an exact count when the table was never analysed.
long long estimate_rows(Connection& conn, const std::string& table);

// A chunk of the key space: keys > `after` (all keys when empty) and <= the
// upper bound (no bound when empty).
struct KeyRange {
  std::vector<std::string> after;
  std::vector<std::string> upper;
};

class KeysetWalker {
 public:
  KeysetWalker(std::string table, std::vector<std::string> key_columns)
      : table_(std::move(table)), key_(std::move(key_columns)) {}

  // The key `batch_size` rows past `within.after` and not past
  // `within.upper`, or an empty vector when fewer rows than that remain (the
  // next chunk is the last of the range).
  std::vector<std::string> upper_bound(Connection& conn, const KeyRange& within,
                                       int batch_size) const;
  // Up to `parts - 1` ascending keys that cut the table into ranges of about
  // the same number of rows, read off a sample of about 20,000 rows of the
  // `rows` the table holds; fewer when the sample is too small to tell.
  std::vector<std::vector<std::string>> split_points(Connection& conn, long long rows,
                                                     int parts) const;
  // The rows in a range.
  long long count(Connection& conn, const KeyRange& range) const;
  // UPDATE of one range; returns the number of rows updated.
  long long backfill(Connection& conn, const BatchWork& work, const KeyRange& range) const;

  struct VerifyResult {
    long long rows = 0;
    long long mismatches = 0;
    std::string sample;  // up to five mismatching keys, "(k1,k2) (k1,k2)"
  };
  VerifyResult verify(Connection& conn, const BatchWork& work, const KeyRange& range) const;

  // The WHERE clause for a range; parameters are numbered from 1: `after`
  // first, then `upper`. Exposed for tests.
  std::string range_predicate(const KeyRange& range) const;

 private:
  // SELECT of the key columns as text FROM the table AS _row `from_where`,
  // in key order.
  std::string ordered_keys_sql(const std::string& from_where) const;
  std::string tuple(const std::string& prefix) const;
  std::string params_tuple(int first) const;
  std::vector<std::string> params(const KeyRange& range) const;

  std::string table_;
  std::vector<std::string> key_;
};

}  // namespace tandem
