// Building blocks of precheck queries. A precheck is one query over
// `WITH t AS (SELECT to_regclass('table') AS rel)` that returns one row of
// text per reason to refuse; no rows means the operation may go ahead.
#pragma once

#include <string>
#include <vector>

#include "tandem/plan.h"
#include "tandem/spec.h"

namespace tandem::checks {

std::string table_exists(const std::string& table);  // qualified, quoted
// A predicate over pg_index row `i`: an index rows can be told apart by
// (unique, valid, checked immediately, over plain columns, not partial,
// every column NOT NULL), as a walk key or a replica identity.
std::string usable_key_index(const std::string& i);
// Refuses when another table the operation reads or writes does not exist.
std::string referenced_table_exists(const std::string& table);  // qualified, quoted
// A predicate over a row `_row` of a table: it has values in `columns` (all
// NOT NULL, as a foreign key matches) that no row of `parent` (qualified,
// quoted) has in `parent_columns`: an orphan.
std::string orphan_row(const std::vector<std::string>& columns, const std::string& parent,
                       const std::vector<std::string>& parent_columns);
// Refuses when rows of the table have values in `columns` (all NOT NULL,
// as a foreign key matches) that no row of `parent` (qualified, quoted) has
// in `parent_columns`: how many, and up to five of the missing values. The
// scan runs only when the tables and columns exist (the checks beside it
// report what is missing). `then` ends the message: what to do.
std::string no_orphans(const std::string& table, const std::vector<std::string>& columns,
                       const std::string& parent, const std::vector<std::string>& parent_columns,
                       const std::string& then);
// Refuses a relation that is not a plain or partitioned table, and a
// partitioned table with a foreign partition (it can have no index, no
// trigger that changes rows, no local default).
std::string plain_or_partitioned_table(const std::string& operation);
// Refuses when rows of the table (as `_row`) match `predicate`, which reads
// `columns`: "<n> rows of <table> <what>". The scan runs only when the
// table and columns exist.
std::string no_rows_where(const std::string& table, const std::vector<std::string>& columns,
                          const std::string& predicate, const std::string& what);
// Why an operation refuses a partitioned table, for not_partitioned.
extern const char* const kPartitionedForeignKey;
extern const char* const kPartitionedUnique;
// Refuses a partitioned table: "<table> is a partitioned table; <why>".
std::string not_partitioned(const std::string& why);
// Refuses a column in the partition key of the table or of any of its
// partitioned partitions: "column c is in the partition key of <rel>; <why>".
std::string not_in_partition_key(const std::string& column, const std::string& why);
// `what` names the column's role in the refusal ("column", "the routing
// column (slices: by)").
std::string column_exists(const std::string& column, const std::string& what = "column");
// column_exists for each of `columns` of schema.table that no operation of
// `spec` adds (those exist by the time the precheck runs, not before).
std::vector<std::string> columns_exist(const Spec& spec, const std::string& schema,
                                       const std::string& table,
                                       const std::vector<std::string>& columns);
// The index tandem walks a table by: the primary key, or else the narrowest
// non-partial unique index over NOT NULL columns. `rel` is an SQL expression
// of type regclass. A query returning the index's oid, or no row.
std::string walk_key_index(const std::string& rel);
// Refuses a table that has no such key.
std::string has_walkable_key();
// Refuses unless a unique index covers exactly `columns`, all NOT NULL.
std::string key_is_unique(const std::vector<std::string>& columns);
std::string no_invalid_indexes();
std::string type_exists(const std::string& type);
// Refuses when the column's default is of a type that `type` does not take by
// assignment (a text '0' for an integer): it could not move at cutover.
std::string default_fits(const std::string& column, const std::string& type);
// Refuses when any of `columns` exists: left behind by an earlier attempt.
std::string columns_absent(const std::vector<std::string>& columns);
// Refuses when a relation (index, table) named `name` exists in the table's schema.
std::string relation_absent(const std::string& schema, const std::string& name);
std::string constraint_absent(const std::string& name);
// Refuses when the table has no constraint `name`.
std::string constraint_exists(const std::string& name);
std::string column_nullable(const std::string& column);
// Refuses an identity or generated column, which a default cannot feed.
std::string takes_default(const std::string& column);
// Refuses a column that a rollback could not bring back as it was: an
// identity or generated column, one that owns its default's sequence (DROP
// COLUMN drops the sequence), or a NOT NULL one whose `down` gives NULL.
std::string column_restorable(const std::string& column, const std::string& type,
                              const std::string& down);
// Refuses when a view, index, constraint or other object depends on the
// column; `doing` completes "tandem cannot <doing> a column that ... uses yet".
// Defaults and owned sequences are allowed when `allow_defaults`.
std::string no_dependents(const std::string& column, const std::string& doing, bool allow_indexes);
// For a type change through a shadow column: refuses what a column swap
// cannot carry over to the new column — views, exclusion constraints,
// indexes with the column in an expression or predicate or under an
// operator class of its own, foreign keys of partitions, anything else —
// and allows indexes, primary keys, unique and CHECK constraints and
// foreign keys on either side; on a partitioned table, none of those yet.
std::string only_carried_dependents(const std::string& column);

// The precheck step itself.
Step precheck_step(const std::string& id, const std::string& description, const std::string& table,
                   const std::vector<std::string>& checks);

}  // namespace tandem::checks
