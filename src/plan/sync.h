// Building blocks of the operations that keep two tables in step: the sync
// trigger functions (in the writer's transaction), the backfill statement that
// copies one batch, the verify predicates, and compatibility views.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tandem/plan.h"
#include "tandem/spec.h"

namespace tandem {

// Rows of `to` that follow rows of `from`, matched by `key` (column names that
// both tables have, holding the same values).
struct Mirror {
  std::string from;  // qualified, quoted
  std::string to;    // qualified, quoted
  std::vector<std::string> key;
  // columns of `to` ← SQL expressions over the `from` row, which is `_row`
  std::vector<std::pair<std::string, std::string>> columns;
  // true: `to` has one row per `from` row (INSERT, UPDATE and DELETE are
  // mirrored). false: `to`'s rows exist already; only the columns are
  // written, and a deleted `from` row sets them NULL.
  bool whole_rows = true;
  // A transaction-local setting that the functions of both directions of one
  // sync set while they write, so the other direction does not echo the write.
  std::string guard;
};

// The body of an AFTER INSERT OR UPDATE OR DELETE row trigger function on
// `m.from` that applies the row's change to `m.to`.
std::string mirror_function_body(const Mirror& m);

// Creates that function (`function`, qualified) in prepare; dropped on rollback.
Step mirror_function_step(const std::string& id, const std::string& description,
                          const std::string& function, const Mirror& m);

// A backfill batch for a whole-row mirror: INSERT ... SELECT over the batch of
// `from` rows, locked FOR UPDATE so that no writer changes a row between the
// read and the copy, ON CONFLICT DO UPDATE. Carries the kBatchRange marker.
std::string mirror_backfill_statement(const Mirror& m);

// Verify predicate over a `from` row (`_row`): its `to` row is missing or differs.
std::string mirror_mismatch(const Mirror& m);
// Verify predicate over a `to` row (`_row`): no `from` row has its key.
std::string orphan_mismatch(const Mirror& m);

// The verify work over `from`: a row whose `to` row is missing or differs is
// wrong. Walked by the mirror's key, each chunk's rows are joined with the
// `to` rows of the same key range (one merge of two index range scans);
// walked by another key, each row is looked up (mirror_mismatch).
BatchWork mirror_verify_work(const Mirror& m);
// The same over `to`: a row that no `from` row has the key of is wrong.
BatchWork orphan_verify_work(const Mirror& m);

// A compatibility view: one column per column of `shape` (a relation, as a
// regclass literal), in its order, read from `from_clause` (which names the
// row it reads `_row`). A column listed in `replace` is the expression given
// (cast to the column's type); other columns are `_row.<name>`, or NULL of the
// column's type when `others_null`. Columns in `skip` are left out. The column
// list is read from the catalog when the step runs.
struct CompatView {
  ViewName view;
  std::string shape;
  std::string from_clause;
  std::vector<std::pair<std::string, std::string>> replace;
  std::vector<std::string> skip;
  bool others_null = false;
};

// The SQL (a DO block) that creates the view.
std::string create_compat_view_sql(const CompatView& v);
// Creates the view at cutover; dropped on rollback.
Step compat_view_step(const std::string& id, const CompatView& v, const std::string& what);
// Drops it at cleanup, before anything it reads is dropped.
Step drop_compat_view_step(const std::string& id, const ViewName& view);

// "(a, b)" of quoted names, each prefixed.
std::string column_tuple(const std::vector<std::string>& columns, const std::string& prefix = "");

}  // namespace tandem
