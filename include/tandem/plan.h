// A plan: the ordered steps that operations expand into, per phase.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/phase.h"
#include "tandem/spec.h"

namespace tandem {

enum class StepKind {
  kPrecheck,  // read-only catalog checks; every returned row is a reason to refuse
  kSql,       // statements run with a lock timeout; transactional unless said otherwise
  kBackfill,  // keyset batches, one short transaction each, checkpoint in the same transaction
  kVerify,    // chunked compare of old and new storage; any mismatch fails the step
  // a spec's query pair answered both ways on sampled parameters, each set
  // on one snapshot; more differences than the pair allows fail the step
  kShadowRead,
};

const char* to_string(StepKind kind);

// What a backfill or verify step works on. The walk key is the table's primary
// key (or a unique NOT NULL key), read from the catalog when the step starts.
// In every expression the walked table's row is `_row`.
struct BatchWork {
  std::string table;       // qualified and quoted
  std::string set_clause;  // backfill: the SET list that copies one row
  std::string mismatch;    // verify: a predicate true for a row whose copy is wrong
  std::string filter;      // backfill: only rows matching this predicate ("" = every row)
  // backfill: instead of UPDATE ... SET set_clause, this statement, in which
  // {range} stands for the predicate selecting one batch of `_row`.
  std::string statement;
  // verify: when the table is walked by exactly `compare_key` (quoted
  // names), this query instead of testing `mismatch` row by row. {range}
  // stands for the predicate over `_row` selecting one chunk, as in
  // `statement`; the query yields a column `k` per row checked: the row's key
  // as text when its copy is wrong, else NULL. It can join the chunk's rows
  // with the same key range of another table, which PostgreSQL merges in one
  // pass instead of one index lookup per row.
  std::string compare = {};
  std::vector<std::string> compare_key = {};
};

// A table lock that a step takes before its SQL runs.
struct TableLock {
  std::string table;  // qualified and quoted
  std::string mode;   // as LOCK TABLE spells it: "ACCESS EXCLUSIVE", "SHARE ROW EXCLUSIVE"...
};

// A table-level lock mode, strongest last, as the PostgreSQL manual lists them.
enum class LockMode {
  kNone,  // no table lock (catalog reads, a new table)
  kAccessShare,
  kRowShare,
  kRowExclusive,
  kShareUpdateExclusive,
  kShare,
  kShareRowExclusive,
  kExclusive,
  kAccessExclusive,
  kAsWritten,  // hand-written SQL: not analysed
};

// "ACCESS EXCLUSIVE", "none", "as written".
const char* to_string(LockMode mode);

// The strongest lock a step takes, and what a reader of the plan should know
// about it: "(brief: metadata only)", "on the sequence", "; rollback: ...".
struct StepLock {
  LockMode mode = LockMode::kNone;
  std::string note;

  // The mode's words, then the note: "ACCESS EXCLUSIVE (brief: metadata
  // only)"; a note that starts with ';' follows the words directly. For
  // kAsWritten, the note is the whole sentence.
  std::string to_string() const;
  // Whether it conflicts with the SHARE UPDATE EXCLUSIVE lock that VACUUM
  // and ANALYZE hold (a lock not analysed is assumed to).
  bool conflicts_with_vacuum() const;
  // A lock as a spec's `sql` operation words it: the mode its words begin
  // with, the rest as the note; kAsWritten when they begin with none.
  static StepLock from_words(const std::string& words);
  // The sentences plans repeat.
  static StepLock metadata_only() { return {LockMode::kAccessExclusive, "(brief: metadata only)"}; }
  static StepLock reads_and_writes_go_on() {
    return {LockMode::kShareUpdateExclusive, "(reads and writes go on)"};
  }
};

// The placeholder a BatchWork statement carries.
inline constexpr const char* kBatchRange = "{range}";
// A shadow-read pair's steps are reads.<name> and reads.<name>.after_cutover.
inline constexpr std::string_view kReadsPrefix = "reads.";

struct Step {
  std::string id;  // stable across runs: "<operation index>.<name>", stored in the state store
  Phase phase = Phase::kPrepare;
  StepKind kind = StepKind::kSql;
  std::string description;
  std::string sql;                          // forward SQL (kPrecheck: the check query)
  std::optional<std::string> rollback_sql;  // nullopt: irreversible
  bool reversible = true;                   // false: running it passes the point of no return
  bool transactional = true;
  // For non-transactional steps: `sql` and `rollback_sql` are queries whose
  // rows are the statements to run, each on its own, in order (statements
  // that depend on what the catalog holds when the step runs, such as
  // CREATE INDEX CONCURRENTLY of a column's indexes). Run again before every
  // attempt, the query returns only what is left to do.
  bool generates = false;
  StepLock lock;  // the strongest lock it takes
  // Transactional steps that need more than one lock, or one lock before
  // statements that take weaker ones, take them first, in this order: the
  // first waiting up to the lock timeout, each later one only for what is
  // left of it, and the statements after them only for what is left then.
  // So sessions queued behind the first lock wait at most one lock timeout
  // in all, and the step never waits longer than that while holding a lock.
  // The order is the application's most common one (a referenced table
  // before the table that references it), so a step and a writer do not
  // wait for each other; when a later lock times out while earlier ones are
  // held, the application takes that table first, and the step's next
  // attempt does too.
  std::vector<TableLock> locks;
  std::vector<TableLock> rollback_locks;  // the same, for rollback_sql
  // Tables the step locks that only the catalog knows when it runs (those
  // whose foreign keys reference a key): a query, run in the step's
  // transaction before the locks are taken, whose rows (table, mode) join
  // `locks` (and `rollback_locks`) after them, or where an earlier attempt
  // learnt to take them.
  std::optional<std::string> locks_query;
  std::string table_access;  // "none", "scans table", "updates every row", "rewrites table"
  // For non-transactional steps, which cannot record "done" together with
  // their work: a query run before every attempt that returns 'done' when the
  // work is already complete (the attempt is skipped) or 'repair' when an
  // earlier attempt left something half done (repair_sql runs first).
  std::optional<std::string> state_check;
  std::optional<std::string> repair_sql;
  std::optional<BatchWork> batch;
  std::optional<ShadowReadPair> reads;  // kShadowRead: the pair
};

struct Plan {
  std::string migration;
  std::vector<Step> steps;  // in run order; phases never interleave

  std::vector<const Step*> steps_in(Phase phase) const;
  const Step* find(const std::string& id) const;
};

// Expands a spec into a plan. Pure: touches no database. Throws Error(kBadInput)
// for operations the planner refuses.
Plan make_plan(const Spec& spec);

// Whether `now`, a later text of the migration that `started` began, plans
// the same steps with the same SQL: they differ at most in settings (which
// take effect when the migration next runs), gates, the description,
// comments or layout. False when either is refused by the planner.
bool plans_alike(const Spec& started, const Spec& now);

// The order operations are planned in: an operation that needs a table or
// column another one creates comes after it; otherwise spec order. Indexes
// into spec.operations.
std::vector<size_t> dependency_order(const Spec& spec);
// The tables ("schema.table") a spec's operations change or read, including
// the ones they create; `sql` operations name none.
std::set<std::string> tables_touched(const Spec& spec);

}  // namespace tandem
