// Keyset batches over a table's primary key: the SQL for one backfill batch
// and one verify chunk. The executor runs them, one short transaction each.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "db/connection.h"
#include "tandem/plan.h"

namespace tandem {

// The columns of the key tandem walks the table by (checks::walk_key_index),
// quoted, in index order. Throws Error(kFatal) when the table has none.
std::vector<std::string> walk_key_columns(Connection& conn, const std::string& table);
// Whether `key` (as walk_key_columns returns it) is one smallint, integer or
// bigint column of `table`: its chunks can then be cut by arithmetic.
bool single_integer_key(Connection& conn, const std::string& table,
                        const std::vector<std::string>& key);
// The planner's row estimate, or an exact count when the table was never analysed.
long long estimate_rows(Connection& conn, const std::string& table);

// A table's size as the catalog has it now.
struct TableSize {
  long long rows = 0;         // estimate_rows
  long long heap_bytes = 0;   // the main fork (pg_relation_size)
  long long index_bytes = 0;  // all its indexes (pg_indexes_size)
  int indexes = 0;
};
TableSize table_size(Connection& conn, const std::string& table);

// What a backfill that updates every row of a table writes. Each row gets a
// new version on a new page (a freshly loaded table's pages are full, so the
// update cannot stay on the row's page) and an entry in every index: the
// table and its indexes grow by about their own size, the old versions'
// space reusable after VACUUM but not returned to the disk. WAL: every page
// of the table and its indexes once whole (the first change to a page after
// a checkpoint), plus per row the new version, an update record and an index
// insert per index. Fitted to measurements (2026-12-02, PostgreSQL 15, three
// table shapes: pgbench_accounts 534 bytes of WAL a row, a two-int table 341,
// a table with two text columns and three indexes 1,332): within 1% of each.
// Growth was within 15% (more where the new column widens narrow rows).
// More WAL when checkpoints come during the backfill (pages of an index not
// in key order are written whole again after each); less growth and WAL
// where pages have room for the new versions.
struct RewriteEstimate {
  long long growth_bytes = 0;
  long long wal_bytes = 0;
};
RewriteEstimate estimate_rewrite(const TableSize& size);

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
  // UPDATE of one range (or work.statement); returns the number of rows
  // updated. Inside the caller's transaction, under a savepoint: when it
  // fails for good (a value the expression cannot convert, the spec's SQL
  // failing), the range's rows are run again one at a time, each undone
  // after it, and the error names the key of the first row that fails on its
  // own, with that row's error.
  long long backfill(Connection& conn, const BatchWork& work, const KeyRange& range) const;

  struct VerifyResult {
    long long rows = 0;
    long long mismatches = 0;
    std::string sample;  // up to five mismatching keys, "(k1,k2) (k1,k2)"
  };
  VerifyResult verify(Connection& conn, const BatchWork& work, const KeyRange& range) const;
  // Verifies the next chunk: up to `rows` rows of `within` past
  // `within.after`, in one pass over them, testing work.mismatch row by row.
  // `upper` becomes the key of the chunk's last row, or empty when fewer than
  // `rows` rows remained (the chunk was the last of `within`).
  VerifyResult verify_next(Connection& conn, const BatchWork& work, const KeyRange& within,
                           int rows, std::vector<std::string>& upper) const;
  // Whether verify runs work.compare (the table is walked by its key) rather
  // than testing work.mismatch row by row.
  bool compares(const BatchWork& work) const;
  // With a single integer key: the least and greatest key in `within`, or
  // nullopt when it holds no row (two index probes).
  std::optional<std::pair<long long, long long>> integer_span(Connection& conn,
                                                              const KeyRange& within) const;
  // Set when the key is one integer column (single_integer_key): a verify
  // checking row by row then cuts its chunks by key value (verify_span).
  bool integer_key = false;
  // verify() of a chunk cut by key values rather than row counts, read with
  // a bitmap or sequential scan: right after a backfill every key has a dead
  // version beside its live one, and an index scan in key order visits the
  // heap for both, one tuple at a time (about three times as slow as
  // reading each page once).
  VerifyResult verify_span(Connection& conn, const BatchWork& work, const KeyRange& range) const;

  // The WHERE clause for a range; parameters are numbered from 1: `after`
  // first, then `upper`. Exposed for tests.
  std::string range_predicate(const KeyRange& range) const;

 private:
  // SELECT of the key columns as text FROM the table AS _row `from_where`,
  // in key order.
  std::string ordered_keys_sql(const std::string& from_where) const;
  long long backfill_rows(Connection& conn, const BatchWork& work, const KeyRange& range) const;
  std::string tuple(const std::string& prefix) const;
  std::string params_tuple(int first) const;
  std::vector<std::string> params(const KeyRange& range) const;

  std::string table_;
  std::vector<std::string> key_;
};

}  // namespace tandem
