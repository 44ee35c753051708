// Step shapes that several operations build the same way.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tandem/plan.h"
#include "tandem/spec.h"

namespace tandem {

// A step with its fields named, instead of assigned one by one:
//   out.push_back(StepBuilder(id, Phase::kCutover, "what it does")
//                     .sql(forward)
//                     .rollback(undo)
//                     .lock(StepLock::metadata_only())
//                     .access("none"));
// Without .rollback() a step has no undo (irreversible unless a later
// phase's rollback covers it); .rollback("") says there is nothing to undo.
class StepBuilder {
 public:
  StepBuilder(std::string id, Phase phase, std::string description) {
    step_.id = std::move(id);
    step_.phase = phase;
    step_.description = std::move(description);
  }
  StepBuilder& kind(StepKind k) { return set(step_.kind, k); }
  StepBuilder& sql(std::string v) { return set(step_.sql, std::move(v)); }
  StepBuilder& rollback(std::string v) { return set(step_.rollback_sql, std::move(v)); }
  StepBuilder& reversible(bool v) { return set(step_.reversible, v); }
  StepBuilder& lock(StepLock v) { return set(step_.lock, std::move(v)); }
  StepBuilder& locks_first(std::vector<TableLock> v) { return set(step_.locks, std::move(v)); }
  StepBuilder& rollback_locks_first(std::vector<TableLock> v) {
    return set(step_.rollback_locks, std::move(v));
  }
  StepBuilder& locks_query(std::string v) { return set(step_.locks_query, std::move(v)); }
  StepBuilder& access(std::string v) { return set(step_.table_access, std::move(v)); }
  StepBuilder& batch(BatchWork v) { return set(step_.batch, std::move(v)); }
  StepBuilder& reads(ShadowReadPair v) { return set(step_.reads, std::move(v)); }
  // Runs outside a transaction (CREATE INDEX CONCURRENTLY and the like).
  StepBuilder& outside_transaction() { return set(step_.transactional, false); }
  // Outside a transaction, its SQL a query yielding the statements to run
  // (Step::generates).
  StepBuilder& generates() {
    outside_transaction();
    return set(step_.generates, true);
  }
  operator Step() const { return step_; }

 private:
  template <typename F, typename V>
  StepBuilder& set(F& field, V&& value) {
    field = std::forward<V>(value);
    return *this;
  }
  Step step_;
};

// Names of the helpers an operation creates: unique per (migration, table,
// column) and within PostgreSQL's 63 bytes.
class HelperNames {
 public:
  HelperNames(const Spec& spec, const std::string& schema, const std::string& table,
              const std::string& column);
  const std::string& tag() const { return tag_; }
  // tandem."<table>__<column>_<tag>_<suffix>"
  std::string function(const std::string& suffix) const;
  // "zz_tandem_<column>_<tag>_<suffix>": sorts after typical application
  // triggers, so it sees the row as their BEFORE triggers left it.
  std::string trigger(const std::string& suffix) const;
  // "<prefix><column>_<tag>", unquoted: constraint names and the like.
  std::string plain(const std::string& prefix) const;

 private:
  std::string tag_, base_, column_;
};

// When a row trigger fires.
inline constexpr const char* kBeforeWrite = "BEFORE INSERT OR UPDATE";
inline constexpr const char* kAfterEveryChange = "AFTER INSERT OR UPDATE OR DELETE";

// CREATE TRIGGER ... <timing> ... FOR EACH ROW.
std::string create_row_trigger(const std::string& trigger, const std::string& table,
                               const std::string& function, const char* timing = kBeforeWrite);

// A BEFORE row trigger that derives a column from `column`: it fires on
// INSERT and on an UPDATE that assigns `column`, so a backfill that writes
// only the derived column does not run it again for every row. When the
// table has another BEFORE UPDATE row trigger, which could change `column`
// without the UPDATE naming it, it fires on every UPDATE instead.
std::string create_column_sync_trigger(const std::string& trigger, const std::string& table,
                                       const std::string& function, const std::string& column);

// A step that creates a row trigger, dropped on rollback.
Step row_trigger_step(const std::string& id, Phase phase, const std::string& description,
                      const std::string& trigger, const std::string& table,
                      const std::string& function, const char* timing = kBeforeWrite);

// The shadow_read step of a spec's query pair: its SQL draws the parameter
// sets into tandem.shadow_samples ($1 the migration, $2 the step, $3 the
// round: 0 in the phase, 1, 2, ... at the cutover gate), followed
// by the two queries as comments; the executor runs the pair from
// Step::reads. Rollback forgets the samples.
Step shadow_read_step(const Spec& spec, const ShadowReadPair& pair);
// The pair's second comparison, at the end of cutover, with its
// write_after_cutover probe through the new path (reads.<name>.after_cutover).
Step shadow_read_after_cutover_step(const Spec& spec, const ShadowReadPair& pair);

// A trigger function created in prepare and dropped on rollback.
Step trigger_function_step(const std::string& id, const std::string& description,
                           const std::string& function, const std::string& body);

// A cleanup step that drops the trigger that carries writes of `table` back
// to `to`, before the step that drops the forward sync: each of the two
// locks one table, so writers that take the two tables in either order (one
// transaction the old way, another the new) never hold what it waits for.
Step drop_back_sync_step(const std::string& id, const std::string& trigger,
                         const std::string& table, const std::string& to);

// A cleanup step that drops helper triggers (each "trigger ON table") and
// functions; irreversible, like all of cleanup. With triggers on several
// tables, `tables` names them in the order their locks are taken first.
Step drop_helpers_step(const std::string& id, const std::string& description,
                       const std::vector<std::string>& triggers_on,
                       const std::vector<std::string>& functions,
                       const std::vector<std::string>& tables = {});

// ADD COLUMN without default or NOT NULL (metadata only) in prepare; dropped on rollback.
Step add_nullable_column_step(const std::string& id, const std::string& table,
                              const std::string& column, const std::string& type,
                              const std::string& description = "");

// Cleanup's forgetting of what tandem kept for a rollback (`sql` deletes
// its row); irreversible, as cleanup is.
Step forget_step(const std::string& id, const std::string& description, const std::string& sql);

// A change made in place at cutover (`change`, statements) whose previous
// state is kept first in tandem.undo under `item`: `restore` is an SQL
// expression giving the statement that puts it back, evaluated before the
// change. Rollback runs that statement; cleanup forgets it.
void plan_kept_change(const std::string& id, const std::string& table, const std::string& item,
                      const std::string& restore, const std::string& change,
                      const std::string& description, const StepLock& lock, std::vector<Step>& out);

// A Step::locks_query for a swap of a column of table `regclass` (an SQL
// expression) named one of `columns` (whichever exists): ACCESS EXCLUSIVE on
// the tables its foreign keys reference, the table, then the tables whose
// foreign keys reference it, each group by name (the order writers most
// often take them in; the executor learns another from a timeout).
std::string swap_locks_query(const std::string& regclass, const std::vector<std::string>& columns);

// Cutover's validation of the foreign keys and checks that a swap on table
// `regclass` (an SQL expression) added again NOT VALID, each in a
// transaction of its own.
Step validate_pending_step(const std::string& id, const std::string& regclass);

// ALTER TABLE table RENAME <what> from TO to at cutover (metadata only),
// renamed back on rollback; `what` is "COLUMN" or "CONSTRAINT", the names
// are quoted.
Step rename_step(const std::string& id, const std::string& table, const std::string& what,
                 const std::string& from, const std::string& to);

// DROP COLUMN at cleanup, irreversible.
Step drop_column_step(const std::string& id, const std::string& description,
                      const std::string& table, const std::string& column);

// CREATE [UNIQUE] INDEX CONCURRENTLY `name` ON table `definition`, idempotent,
// dropped the same way on rollback. `name` unqualified; schema is the table's.
Step concurrent_index_step(const std::string& id, Phase phase, const std::string& schema,
                           const std::string& name, const std::string& table,
                           const std::string& definition, bool unique);

// The backfill: keyset batches of `batch_size` rows, one transaction each.
Step backfill_step(const std::string& id, const std::string& description, BatchWork work,
                   int batch_size);
// The same for rows changed for good (deleted, or a column cleared): no
// rollback; `access` says what it does to the table's rows.
Step irreversible_batch_step(const std::string& id, const std::string& description, BatchWork work,
                             int batch_size, const std::string& access);

// ANALYZE of a table the backfill filled, after it: the planner has the
// table's statistics for the checks and for the readers that move to it,
// instead of an empty table's until autovacuum comes by. SKIP_LOCKED: a
// table autovacuum holds is left to it.
Step analyze_step(const std::string& id, const std::string& table);

// The shadow read: every row, in key chunks; a row matching work.mismatch fails it.
Step verify_step(const std::string& id, const std::string& description, BatchWork work);

}  // namespace tandem
