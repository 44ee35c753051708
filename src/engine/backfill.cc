#include "engine/backfill.h"

#include <algorithm>
#include <cstdio>

#include "plan/checks.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

std::vector<std::string> walk_key_columns(Connection& conn, const std::string& table) {
  Rows r = conn.exec(
      "SELECT a.attname FROM pg_index i"
      "  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)"
      " WHERE i.indexrelid = (" +
          checks::walk_key_index("$1::regclass") +
          ")"
          " ORDER BY array_position(i.indkey::int2[], a.attnum)",
      {table});
  if (r.empty()) {
    throw Error(ErrorKind::kFatal, "table " + table +
                                       " has no primary key and no unique index over NOT NULL "
                                       "columns; the backfill walks such a key");
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < r.size(); ++i) out.push_back(quote_ident(r.text(i, 0)));
  return out;
}

bool single_integer_key(Connection& conn, const std::string& table,
                        const std::vector<std::string>& key) {
  if (key.size() != 1) return false;
  return conn.exec(
                 "SELECT 1 FROM pg_attribute WHERE attrelid = $1::regclass"
                 " AND quote_ident(attname) = $2 AND NOT attisdropped"
                 " AND atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)",
                 {table, key[0]})
             .size() == 1;
}

namespace {

// The relations that hold a table's rows: the table itself, or each leaf
// partition of a partitioned one. SQL over $1 (the table).
constexpr const char* kLeaves =
    "(SELECT $1::regclass AS relid WHERE NOT EXISTS (SELECT 1 FROM pg_partition_tree($1::regclass))"
    " UNION ALL SELECT relid FROM pg_partition_tree($1::regclass) WHERE isleaf)";

}  // namespace

long long estimate_rows(Connection& conn, const std::string& table) {
  // The planner's estimate of each leaf; a leaf never analysed is counted.
  Rows r = conn.exec(std::string("SELECT c.oid::regclass::text, c.reltuples::bigint FROM ") +
                         kLeaves + " l JOIN pg_class c ON c.oid = l.relid",
                     {table});
  long long n = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    const long long estimate = r.integer(i, 1, -1);
    n += estimate >= 0 ? estimate : conn.exec("SELECT count(*) FROM " + r.text(i, 0)).integer(0, 0);
  }
  return n;
}

TableSize table_size(Connection& conn, const std::string& table) {
  // Summed over the leaves; indexes: as many as a leaf has at most.
  Rows r = conn.exec(std::string("SELECT coalesce(sum(pg_relation_size(l.relid)), 0),"
                                 " coalesce(sum(pg_indexes_size(l.relid)), 0),"
                                 " coalesce(max((SELECT count(*) FROM pg_index i"
                                 " WHERE i.indrelid = l.relid)), 0) FROM ") +
                         kLeaves + " l",
                     {table});
  TableSize size;
  size.rows = estimate_rows(conn, table);
  size.heap_bytes = r.integer(0, 0);
  size.index_bytes = r.integer(0, 1);
  size.indexes = static_cast<int>(r.integer(0, 2));
  return size;
}

RewriteEstimate estimate_rewrite(const TableSize& size) {
  // Bytes of WAL a row costs beyond its data: the update's record, and each
  // index insert's (measured; see backfill.h).
  constexpr long long kPerRow = 140;
  constexpr long long kPerIndexEntry = 80;
  RewriteEstimate e;
  e.growth_bytes = size.heap_bytes + size.index_bytes;
  e.wal_bytes = 2 * e.growth_bytes + size.rows * (kPerRow + kPerIndexEntry * size.indexes);
  return e;
}

std::string KeysetWalker::tuple(const std::string& prefix) const {
  std::vector<std::string> cols;
  for (const auto& k : key_) cols.push_back(prefix + k);
  return "(" + join(cols, ", ") + ")";
}

std::string KeysetWalker::params_tuple(int first) const {
  std::vector<std::string> ps;
  for (size_t i = 0; i < key_.size(); ++i) ps.push_back("$" + std::to_string(first + i));
  return "(" + join(ps, ", ") + ")";
}

std::vector<std::string> KeysetWalker::params(const KeyRange& range) const {
  std::vector<std::string> out = range.after;
  out.insert(out.end(), range.upper.begin(), range.upper.end());
  return out;
}

std::string KeysetWalker::range_predicate(const KeyRange& range) const {
  std::vector<std::string> parts;
  int next = 1;
  if (!range.after.empty()) {
    parts.push_back(tuple("_row.") + " > " + params_tuple(next));
    next += static_cast<int>(key_.size());
  }
  if (!range.upper.empty()) parts.push_back(tuple("_row.") + " <= " + params_tuple(next));
  return parts.empty() ? "true" : join(parts, " AND ");
}

std::string KeysetWalker::ordered_keys_sql(const std::string& from_where) const {
  std::vector<std::string> cols, order;
  for (const auto& k : key_) {
    cols.push_back("_row." + k + "::text");
    // Qualified, so ORDER BY means the key column and not the text output
    // column of the same name: sorting "10" before "9" would make batches of
    // any size and make the planner sort the whole table.
    order.push_back("_row." + k);
  }
  return "SELECT " + join(cols, ", ") + " FROM " + table_ + " AS _row " + from_where +
         " ORDER BY " + join(order, ", ");
}

std::vector<std::string> KeysetWalker::upper_bound(Connection& conn, const KeyRange& within,
                                                   int batch_size) const {
  Rows r = conn.exec(ordered_keys_sql("WHERE " + range_predicate(within)) + " OFFSET " +
                         std::to_string(batch_size - 1) + " LIMIT 1",
                     params(within));
  std::vector<std::string> out;
  if (r.empty()) return out;
  for (size_t c = 0; c < key_.size(); ++c) out.push_back(r.text(0, c));
  return out;
}

long long KeysetWalker::count(Connection& conn, const KeyRange& range) const {
  return conn
      .exec("SELECT count(*) FROM " + table_ + " AS _row WHERE " + range_predicate(range),
            params(range))
      .integer(0, 0);
}

std::vector<std::vector<std::string>> KeysetWalker::split_points(Connection& conn, long long rows,
                                                                 int parts) const {
  std::vector<std::vector<std::string>> out;
  if (parts < 2 || rows <= 0) return out;
  // SYSTEM sampling reads whole pages: cheap at any table size, and the
  // ranges need only be about even.
  const double percent = std::min(100.0, std::max(0.0001, 100.0 * 20000.0 / rows));
  char pct[32];
  std::snprintf(pct, sizeof pct, "%.4f", percent);
  Rows r = conn.exec(ordered_keys_sql(std::string("TABLESAMPLE SYSTEM (") + pct + ")"));
  if (r.size() < static_cast<size_t>(parts) * 10) return out;
  for (int i = 1; i < parts; ++i) {
    const size_t at = r.size() * i / parts - 1;  // the last key of range i - 1
    std::vector<std::string> key;
    for (size_t c = 0; c < key_.size(); ++c) key.push_back(r.text(at, c));
    if (out.empty() || out.back() != key) out.push_back(std::move(key));
  }
  return out;
}

long long KeysetWalker::backfill(Connection& conn, const BatchWork& work,
                                 const KeyRange& range) const {
  conn.exec("SAVEPOINT tandem_batch");
  try {
    return backfill_rows(conn, work, range);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kFatal) throw;
    conn.exec("ROLLBACK TO SAVEPOINT tandem_batch");
    Rows keys = conn.exec(ordered_keys_sql("WHERE " + range_predicate(range)), params(range));
    KeyRange one{range.after, {}};
    for (size_t i = 0; i < keys.size(); ++i) {
      one.upper.clear();
      for (size_t c = 0; c < key_.size(); ++c) one.upper.push_back(keys.text(i, c));
      conn.exec("SAVEPOINT tandem_row");
      try {
        backfill_rows(conn, work, one);
      } catch (const Error& row) {
        if (row.kind() != ErrorKind::kFatal) throw;
        throw Error(row.kind(),
                    std::string(row.what()) + " (the row with key (" + join(one.upper, ",") +
                        ") of " + table_ + ")",
                    row.sqlstate());
      }
      conn.exec("ROLLBACK TO SAVEPOINT tandem_row");
      one.after = one.upper;
    }
    throw;
  }
}

long long KeysetWalker::backfill_rows(Connection& conn, const BatchWork& work,
                                      const KeyRange& range) const {
  std::string where = range_predicate(range);
  if (!work.filter.empty()) where = "(" + work.filter + ") AND " + where;
  std::string sql;
  if (work.statement.empty()) {
    sql = "UPDATE " + table_ + " AS _row SET " + work.set_clause + " WHERE " + where;
  } else {
    sql = fill_template(work.statement, {{kBatchRange, where}});
  }
  return conn.exec(sql, params(range)).affected;
}

KeysetWalker::VerifyResult KeysetWalker::verify_next(Connection& conn, const BatchWork& work,
                                                     const KeyRange& within, int rows,
                                                     std::vector<std::string>& upper) const {
  // One scan of the chunk, kept for the four answers read off it: the chunk
  // is not first found by its keys (an index-only scan, which right after a
  // backfill visits every row's page) and then read again.
  std::vector<std::string> cols, last, order;
  for (size_t i = 0; i < key_.size(); ++i) {
    const std::string alias = "_k" + std::to_string(i + 1);
    cols.push_back("_row." + key_[i] + " AS " + alias);
    last.push_back(alias + "::text");
    order.push_back("_chunk." + alias + " DESC");  // the column, not its text
  }
  Rows r = conn.exec(
      "WITH _chunk AS MATERIALIZED (SELECT " + join(cols, ", ") + ", CASE WHEN " + work.mismatch +
          " THEN " + key_text(key_, "_row.") + " END AS _bad FROM " + table_ + " AS _row WHERE " +
          range_predicate(within) + " ORDER BY " + tuple("_row.") + " LIMIT " +
          std::to_string(rows) +
          ")\n"
          "SELECT (SELECT count(*) FROM _chunk), (SELECT count(_bad) FROM _chunk),"
          " (SELECT coalesce(array_to_string((array_agg(_bad) FILTER (WHERE _bad IS NOT NULL))"
          "[1:5], ' '), '') FROM _chunk), _last.*\n"
          "  FROM (SELECT 1) _one LEFT JOIN (SELECT " +
          join(last, ", ") + " FROM _chunk ORDER BY " + join(order, ", ") +
          " LIMIT 1) _last ON true",
      params(within));
  VerifyResult v{r.integer(0, 0), r.integer(0, 1), r.text(0, 2)};
  upper.clear();
  if (v.rows >= rows) {
    for (size_t c = 0; c < key_.size(); ++c) upper.push_back(r.text(0, 3 + c));
  }
  return v;
}

std::optional<std::pair<long long, long long>> KeysetWalker::integer_span(
    Connection& conn, const KeyRange& within) const {
  Rows r = conn.exec("SELECT min(_row." + key_[0] + "), max(_row." + key_[0] + ") FROM " + table_ +
                         " AS _row WHERE " + range_predicate(within),
                     params(within));
  if (r.is_null(0, 0)) return std::nullopt;
  return std::make_pair(r.integer(0, 0), r.integer(0, 1));
}

KeysetWalker::VerifyResult KeysetWalker::verify_span(Connection& conn, const BatchWork& work,
                                                     const KeyRange& range) const {
  conn.exec("SET LOCAL enable_indexscan = off");
  return verify(conn, work, range);
}

bool KeysetWalker::compares(const BatchWork& work) const {
  return !work.compare.empty() && work.compare_key == key_;
}

KeysetWalker::VerifyResult KeysetWalker::verify(Connection& conn, const BatchWork& work,
                                                const KeyRange& range) const {
  // The key is rendered only for mismatching rows: a clean chunk costs one
  // comparison per row and nothing more.
  const std::string rows =
      compares(work) ? fill_template(work.compare, {{kBatchRange, range_predicate(range)}})
                     : "SELECT CASE WHEN " + work.mismatch + " THEN " + key_text(key_, "_row.") +
                           " END AS k FROM " + table_ + " AS _row WHERE " + range_predicate(range);
  Rows r = conn.exec(
      "SELECT count(*), count(k),"
      " coalesce(array_to_string((array_agg(k) FILTER (WHERE k IS NOT NULL))[1:5], ' '), '')"
      " FROM (" +
          rows + ") s",
      params(range));
  return {r.integer(0, 0), r.integer(0, 1), r.text(0, 2)};
}

}  // namespace tandem
