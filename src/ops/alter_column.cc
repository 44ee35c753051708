// alter_column: change a column online through a shadow column, which
// takes its place at cutover. alter_column_type is its simple form.
//
//   prepare      add shadow column _tandem_new_<c> of the new type (or the
//                column's own); create the up/down conversion functions and
//                the two sync trigger functions
//   dual_write   trigger: every INSERT, and every UPDATE that assigns the column,
//                sets new := up(old) in the writer's own transaction
//   backfill     keyset batches UPDATE ... SET new = up(old); then a NOT VALID
//                check (new IS NOT NULL) when the column is or becomes NOT
//                NULL, validated; the new CHECK, foreign key and unique
//                index on the shadow (NOT VALID then VALIDATE; the index
//                CONCURRENTLY), which follow it when it takes the column's
//                name; then every index that uses the column built again on
//                the shadow (CONCURRENTLY), and a key's index once more on
//                the column itself, for a rollback after cutover
//   shadow_read  every row: new IS NOT DISTINCT FROM up(old)
//   cutover      one short transaction: swap names, move default / identity /
//                NOT NULL, the primary key and unique constraints (USING INDEX
//                the twins), the other indexes (renamed), foreign keys on either
//                side and checks (added again NOT VALID), the compatibility
//                view and the rename, flip the trigger to old := down(new);
//                then, in transactions of their own, the ownership of a serial
//                column's sequence, the validations, the default and comment
//   cleanup      drop the old column (and its indexes), the trigger and the
//                functions; widen the sequence to the column's type
//
// Why the backfill cannot overwrite a newer write with a stale copy: it is an
// UPDATE, so it locks each row and, under READ COMMITTED, re-evaluates up(old)
// on the newest row version; and every write that changes the column runs
// the BEFORE trigger, so the shadow is a function of the row itself. The
// backfill writes only the shadow, so the trigger does not fire for it.
#include <string>

#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "plan/sync.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "tandem/error.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {
namespace {

struct Names {
  std::string op_name;                         // "alter_column" or "alter_column_type"
  std::string table;                           // qualified, quoted
  std::string regclass;                        // 'schema.table'::regclass
  std::string column, shadow, old;             // raw names
  std::string q_column, q_shadow, q_old;       // quoted
  std::string final_name, q_final;             // the column's name after cutover
  std::string fn_up, fn_down, fn_fwd, fn_bwd;  // qualified function names
  std::string trg_fwd, trg_bwd, nn_check;
};

Names names_for(const Spec& spec, const AlterColumn& op, const std::string& op_name) {
  Names n;
  n.op_name = op_name;
  n.table = qualified(op.schema, op.table);
  n.regclass = quote_literal(n.table) + "::regclass";
  n.column = op.column;
  n.shadow = "_tandem_new_" + op.column;
  n.old = "_tandem_old_" + op.column;
  n.q_column = quote_ident(n.column);
  n.q_shadow = quote_ident(n.shadow);
  n.q_old = quote_ident(n.old);
  n.final_name = op.rename.empty() ? op.column : op.rename;
  n.q_final = quote_ident(n.final_name);
  HelperNames h(spec, op.schema, op.table, op.column);
  n.fn_up = h.function("up");
  n.fn_down = h.function("down");
  n.fn_fwd = h.function("fwd");
  n.fn_bwd = h.function("bwd");
  n.trg_fwd = h.trigger("fwd");
  n.trg_bwd = h.trigger("bwd");
  n.nn_check = h.plain("_tandem_nn_");
  return n;
}

std::string conversion_function(const std::string& name, const std::string& param,
                                const std::string& param_type, const std::string& return_type,
                                const std::optional<std::string>& expr) {
  // A one-expression SQL function: PostgreSQL inlines it into the backfill's
  // UPDATE, the verify query and the trigger, so a conversion costs no
  // function call per row. A SQL function's result takes an assignment cast
  // to the declared type, so the default conversion is the value itself, as
  // in ALTER TABLE ... TYPE without USING.
  std::string body = expr ? "(" + *expr + ")" : quote_ident(param);
  return "CREATE FUNCTION " + name + "(" + quote_ident(param) + " " + param_type +
         ")\n"
         "  RETURNS " +
         return_type + " LANGUAGE sql AS " + dollar_quote("\n  SELECT " + body + "\n") + ";\n";
}

std::string sync_trigger_function(const std::string& name, const std::string& target,
                                  const std::string& convert, const std::string& source) {
  return "CREATE FUNCTION " + name + "() RETURNS trigger LANGUAGE plpgsql AS " +
         dollar_quote("\nBEGIN\n  NEW." + target + " := " + convert + "(NEW." + source +
                      ");\n  RETURN NEW;\nEND\n") +
         ";\n";
}

}  // namespace

namespace {

// The CHECK, foreign key and unique constraint the spec adds, built on the
// shadow column, which they follow when it takes the column's name. From the
// step that adds each, a write whose up() value breaks it fails, as it would
// after cutover: `up` must give values the new constraints accept.
void plan_new_constraints(const AlterColumn& op, const Names& n, const std::string& id,
                          std::vector<Step>& out) {
  if (op.check) {
    // The expression names the column as the spec does: PostgreSQL binds it
    // to the shadow column while that one carries the column's name, within
    // one transaction that no other session sees.
    const size_t at = out.size();
    plan_constraint_not_valid(id + "check_", n.table, op.check_name, "CHECK (" + *op.check + ")",
                              {LockMode::kAccessExclusive, "(brief: no scan)"},
                              StepLock::reads_and_writes_go_on(), Phase::kBackfill,
                              Phase::kBackfill, out);
    Step& add = out[at];
    const std::string rename = "ALTER TABLE " + n.table + " RENAME COLUMN ";
    add.sql = rename + n.q_column + " TO " + n.q_old + ";\n" + rename + n.q_shadow + " TO " +
              n.q_column + ";\n" + add.sql + rename + n.q_column + " TO " + n.q_shadow + ";\n" +
              rename + n.q_old + " TO " + n.q_column + ";\n";
    add.locks = {{n.table, "ACCESS EXCLUSIVE"}};
    add.description = "add " + quote_ident(op.check_name) + " CHECK (" + *op.check +
                      ") NOT VALID on " + n.q_shadow + " (written as on " + n.q_column +
                      "): its writes are checked from now on";
  }
  if (!op.references.empty()) {
    plan_constraint_not_valid(id + "fk_", n.table, op.references_name,
                              "FOREIGN KEY (" + n.q_shadow + ") REFERENCES " + op.references +
                                  " (" + quote_ident(op.referenced_column) + ")" +
                                  (op.on_delete.empty() ? "" : " ON DELETE " + op.on_delete),
                              {LockMode::kShareRowExclusive, "on both tables (brief: no scan)"},
                              {LockMode::kShareUpdateExclusive,
                               "; ROW SHARE on the referenced table (reads and writes go on)"},
                              Phase::kBackfill, Phase::kBackfill, out, op.references);
  }
  if (op.unique) {
    plan_unique_via_index(id, op.schema, op.table, op.unique_name, {n.shadow}, Phase::kBackfill,
                          Phase::kBackfill, out);
  }
}

// dual_write to shadow_read: the forward sync, the copy, the NOT NULL
// check the shadow column gets when the column has NOT NULL, the verify.
void plan_sync_and_copy(const Spec& spec, const AlterColumn& op, const Names& n,
                        const std::string& id, std::vector<Step>& out) {
  const std::string what = n.table + "." + n.q_column;
  const std::vector<TableLock> lock_table = {{n.table, "ACCESS EXCLUSIVE"}};
  Step s = row_trigger_step(
      id + "create_forward_trigger", Phase::kDualWrite,
      "every write of " + n.q_column + " sets " + n.q_shadow + " := up(" + n.q_column + ")",
      n.trg_fwd, n.table, n.fn_fwd);
  s.sql = create_column_sync_trigger(n.trg_fwd, n.table, n.fn_fwd, n.q_column);
  // The trigger fills the shadow column, which is NOT NULL after a cutover
  // that was rolled back: the two go in one transaction, or inserts fail in
  // between (issue 16).
  s.rollback_sql = "DROP TRIGGER IF EXISTS " + n.trg_fwd + " ON " + n.table + ";\nALTER TABLE " +
                   n.table + " DROP COLUMN IF EXISTS " + n.q_shadow + ";\n";
  s.rollback_locks = lock_table;
  s.lock = {LockMode::kShareRowExclusive,
            "(brief: blocks writes while waiting); rollback: ACCESS EXCLUSIVE"};
  out.push_back(s);
  out.push_back(backfill_step(
      id + "backfill", "copy " + what + " into " + n.q_shadow + " in primary-key batches",
      BatchWork{n.table, n.q_shadow + " = " + n.fn_up + "(" + n.q_column + ")", "", "", ""},
      spec.settings.batch_size));

  if (op.not_null != false) {
    // NOT NULL from cutover on: the column has it now (tandem.add_not_null_check
    // adds the check only then), or the spec asks for it.
    const std::string add_check =
        op.not_null
            ? "ALTER TABLE " + n.table + " ADD CONSTRAINT " + quote_ident(n.nn_check) + " CHECK (" +
                  n.q_shadow + " IS NOT NULL) NOT VALID;\n"
            : "SELECT tandem.add_not_null_check(" + n.regclass + ", " + quote_literal(n.column) +
                  ", " + quote_literal(n.shadow) + ", " + quote_literal(n.nn_check) + ");\n";
    out.push_back(
        StepBuilder(id + "add_not_null_check", Phase::kBackfill,
                    std::string(op.not_null ? "" : "when " + n.q_column + " is NOT NULL: ") +
                        "CHECK (" + n.q_shadow + " IS NOT NULL) NOT VALID")
            .sql(add_check)
            .rollback("ALTER TABLE " + n.table + " DROP CONSTRAINT IF EXISTS " +
                      quote_ident(n.nn_check) + ";\n")
            .lock(StepLock::metadata_only())
            .access("none"));

    out.push_back(StepBuilder(id + "validate_not_null_check", Phase::kBackfill,
                              "validate that check, so cutover's SET NOT NULL needs no scan")
                      .sql("SELECT tandem.validate_constraint_if_exists(" + n.regclass + ", " +
                           quote_literal(n.nn_check) + ");\n")
                      .rollback("")
                      .lock(StepLock::reads_and_writes_go_on())
                      .access("scans table"));
  }
  plan_new_constraints(op, n, id, out);

  // After the copy, so the backfill maintains no index; while the verify
  // and cutover wait, the trigger keeps them current like any other write.
  const std::string cols = n.regclass + ", " + quote_literal(n.column) + ", " +
                           quote_literal(n.shadow) + ", " + quote_literal(n.old);
  out.push_back(StepBuilder(id + "build_indexes", Phase::kBackfill,
                            "when indexes use " + n.q_column + ": build each again on " +
                                n.q_shadow +
                                " (CONCURRENTLY), and a primary key's or unique constraint's on " +
                                n.q_column + " once more, so a rollback after cutover has it")
                    .sql("SELECT * FROM tandem.column_index_builds(" + cols + ");\n")
                    .rollback("SELECT * FROM tandem.column_index_drops(" + cols + ");\n")
                    .generates()
                    .lock(StepLock::reads_and_writes_go_on())
                    .access("scans table once per index it builds"));

  out.push_back(verify_step(
      id + "verify", "every row: " + n.q_shadow + " = up(" + n.q_column + ")",
      BatchWork{n.table, "", n.q_shadow + " IS DISTINCT FROM " + n.fn_up + "(" + n.q_column + ")",
                "", ""}));
}

// cutover and cleanup: the swap (sync flipped to the old column), the
// compatibility view and the rename, the sequence's owner, the default and
// comment, then the old column and the functions dropped.
void plan_swap_and_cleanup(const AlterColumn& op, const Names& n, const std::string& id,
                           std::vector<Step>& out) {
  const std::vector<TableLock> lock_table = {{n.table, "ACCESS EXCLUSIVE"}};
  // NOT NULL on the column that comes in: as on the one it replaces (no
  // argument), or as the spec says; swapped back, each column keeps its own.
  const std::string nn_in =
      op.not_null ? std::string(*op.not_null ? ", true" : ", false") : std::string();
  const std::string nn_back = op.not_null ? ", false" : "";
  const std::string swap_in = "SELECT tandem.swap_columns(" + n.regclass + ", " +
                              quote_literal(n.column) + ", " + quote_literal(n.shadow) + ", " +
                              quote_literal(n.old) + ", " + quote_literal(n.nn_check) + nn_in +
                              ");\n";
  const std::string swap_back = "SELECT tandem.swap_columns(" + n.regclass + ", " +
                                quote_literal(n.column) + ", " + quote_literal(n.old) + ", " +
                                quote_literal(n.shadow) + ", " + quote_literal(n.nn_check) +
                                nn_back + ");\n";
  // The rename goes with the swap, in its transaction: the backward sync
  // names the column by its new name.
  std::string rename, rename_back, view, drop_view;
  if (!op.rename.empty()) {
    const std::string alter = "ALTER TABLE " + n.table + " RENAME COLUMN ";
    rename = alter + n.q_column + " TO " + n.q_final + ";\n";
    rename_back = alter + n.q_final + " TO " + n.q_column + ";\n";
    if (op.compat_view) {
      // Before the rename, so the view keeps the column's old name.
      view = create_compat_view_sql(
          CompatView{*op.compat_view, n.table, n.table + " AS _row", {}, {n.old}, false});
      drop_view =
          "DROP VIEW IF EXISTS " + qualified(op.compat_view->schema, op.compat_view->name) + ";\n";
    }
  }
  // A new default goes with the swap too: a column that becomes NOT NULL
  // may rely on it from the first insert after cutover. The default before
  // is kept for the rollback, which puts it back before swapping back.
  std::string set_default, undo_default;
  std::vector<Step> kept;
  if (op.default_value) {
    plan_default_change(id + "default_", n.table, n.final_name, *op.default_value, kept);
    set_default = kept.at(0).sql;
    undo_default = kept.at(0).rollback_sql.value_or("");
  }
  // What this operation added to the column goes before the swap back, or
  // the swap would carry it over to the old column (the steps that added it
  // are rolled back next).
  std::vector<std::string> added;
  if (op.check) added.push_back(op.check_name);
  if (!op.references.empty()) added.push_back(op.references_name);
  if (op.unique) added.push_back(op.unique_name);
  std::string drop_added;
  for (const auto& c : added) {
    drop_added += "ALTER TABLE " + n.table + " DROP CONSTRAINT IF EXISTS " + quote_ident(c) + ";\n";
  }
  std::string description = "swap " + n.q_column + " and " + n.q_shadow + "; sync flips to " +
                            n.q_old + " := down(" + n.q_final +
                            "); keys, indexes, foreign keys and checks on " + n.q_column +
                            " move to the new column";
  if (!view.empty()) {
    description += "; publish the view " + qualified(op.compat_view->schema, op.compat_view->name) +
                   " with the old name";
  }
  if (!rename.empty()) description += "; rename it to " + n.q_final;
  if (op.default_value) description += "; " + kept.at(0).description;
  out.push_back(StepBuilder(id + "cutover", Phase::kCutover, description)
                    .sql("DROP TRIGGER " + n.trg_fwd + " ON " + n.table + ";\n" + swap_in + view +
                         rename + set_default +
                         create_column_sync_trigger(n.trg_bwd, n.table, n.fn_bwd, n.q_final))
                    .rollback("DROP TRIGGER " + n.trg_bwd + " ON " + n.table + ";\n" +
                              undo_default + drop_view + rename_back + drop_added + swap_back +
                              create_column_sync_trigger(n.trg_fwd, n.table, n.fn_fwd, n.q_column))
                    // Every lock first (forward the column is n.column, back
                    // it is the final name).
                    .locks_query(swap_locks_query(n.regclass, {n.column, n.final_name}))
                    .lock({LockMode::kAccessExclusive,
                           "(brief: metadata only), on the table and on the tables of the "
                           "foreign keys that move, all taken first within one lock timeout"})
                    .access("none"));
  if (op.compat_view && !op.rename.empty()) {
    out.push_back(drop_compat_view_step(id + "drop_compat_view", *op.compat_view));
  }

  // Its own transaction: ALTER SEQUENCE waits for sessions that used the
  // sequence, which it must not do while holding the table (issue 16).
  auto move_owner = [&](const std::string& from, const std::string& to) {
    return "SELECT tandem.move_sequence_owner(" + n.regclass + ", " + quote_literal(from) + ", " +
           quote_literal(to) + ");\n";
  };
  out.push_back(StepBuilder(id + "move_sequence_owner", Phase::kCutover,
                            "when a sequence belongs to the old column (serial): it belongs to " +
                                n.q_final + " now, so cleanup's DROP COLUMN leaves it")
                    .sql(move_owner(n.old, n.final_name))
                    .rollback(move_owner(n.final_name, n.old))
                    .lock(StepLock{LockMode::kShareRowExclusive,
                                   "on the sequence (brief: nextval() waits while it waits)"})
                    .access("none"));

  out.push_back(validate_pending_step(id + "validate_constraints", n.regclass));
  if (op.default_value) out.push_back(kept.at(1));  // forgets it at cleanup
  if (op.comment) plan_comment_change(id + "comment_", n.table, n.final_name, *op.comment, out);

  out.push_back(StepBuilder(id + "drop_old_column", Phase::kCleanup,
                            "drop the backward sync and the old column " + n.q_old)
                    .sql("DROP TRIGGER IF EXISTS " + n.trg_bwd + " ON " + n.table + ";\n" +
                         "ALTER TABLE " + n.table + " DROP COLUMN IF EXISTS " + n.q_old + ";\n")
                    .locks_first(lock_table)
                    .reversible(false)
                    .lock(StepLock::metadata_only())
                    .access("none (space is reclaimed by later updates and VACUUM)"));

  // Not before: until cleanup the old column gets down(new), which fails for
  // values past the old type's range.
  out.push_back(StepBuilder(id + "fit_sequence", Phase::kCleanup,
                            "when a sequence feeds " + n.q_final +
                                " and its type is narrower than the column's: ALTER SEQUENCE ... "
                                "AS the column's type")
                    .sql("SELECT tandem.fit_sequence(" + n.regclass + ", " +
                         quote_literal(n.final_name) + ");\n")
                    .reversible(false)
                    .lock(StepLock{LockMode::kShareRowExclusive,
                                   "on the sequence (brief: nextval() waits while it waits)"})
                    .access("none"));

  out.push_back(StepBuilder(id + "drop_functions", Phase::kCleanup,
                            "drop the conversion and trigger functions")
                    .sql("DROP FUNCTION IF EXISTS " + n.fn_fwd + "(), " + n.fn_bwd + "();\n" +
                         "DROP FUNCTION IF EXISTS " + n.fn_up + ", " + n.fn_down + ";\n")
                    .reversible(false)
                    .lock(StepLock{LockMode::kNone, ""})
                    .access("none"));
}

}  // namespace

namespace {

// The shadow column: of the new type, or of the column's own (with its
// collation), read from the catalog when the step runs.
Step add_shadow_step(const AlterColumn& op, const Names& n, const std::string& id) {
  if (op.type) {
    return add_nullable_column_step(id + "add_shadow_column", n.table, n.q_shadow, *op.type,
                                    "add shadow column " + n.q_shadow + " " + *op.type);
  }
  return StepBuilder(id + "add_shadow_column", Phase::kPrepare,
                     "add shadow column " + n.q_shadow + " of " + n.q_column + "'s type")
      .sql("DO " +
           dollar_quote(
               "\nBEGIN\n  EXECUTE (SELECT format('ALTER TABLE %s ADD COLUMN %I %s%s', "
               "attrelid::regclass, " +
               quote_literal(n.shadow) +
               ", format_type(atttypid, atttypmod),\n"
               "           CASE WHEN attcollation NOT IN (0, (SELECT typcollation FROM pg_type"
               " WHERE oid = atttypid))\n"
               "                THEN ' COLLATE ' || attcollation::regcollation ELSE '' END)\n"
               "      FROM pg_attribute WHERE attrelid = " +
               n.regclass + " AND attname = " + quote_literal(n.column) +
               " AND NOT attisdropped);\nEND\n") +
           ";\n")
      .rollback("ALTER TABLE " + n.table + " DROP COLUMN IF EXISTS " + n.q_shadow + ";\n")
      .lock(StepLock::metadata_only())
      .access("none");
}

void plan_column_change(const Spec& spec, int index, const AlterColumn& op,
                        const std::string& op_name, std::vector<Step>& out) {
  if (op.column.size() > 51) {
    throw Error(ErrorKind::kBadInput,
                op_name + ": column name \"" + op.column +
                    "\" is longer than 51 bytes; the shadow column's name would not fit");
  }
  const Names n = names_for(spec, op, op_name);
  const std::string id = std::to_string(index) + ".";
  const std::string what = n.table + "." + n.q_column;
  const std::string old_type = n.table + "." + n.q_column + "%TYPE";

  std::vector<std::string> prechecks = {checks::table_exists(n.table),
                                        checks::plain_or_partitioned_table(op_name),
                                        checks::column_exists(n.column)};
  if (op.type) prechecks.push_back(checks::type_exists(*op.type));
  prechecks.insert(
      prechecks.end(),
      {checks::has_walkable_key(), checks::columns_absent({n.shadow, n.old}),
       checks::no_invalid_indexes(), checks::only_carried_dependents(n.column),
       checks::not_in_partition_key(
           n.column, op_name + " replaces the column with a new one, and PostgreSQL cannot "
                               "drop a column of the partition key")});
  if (op.type) prechecks.push_back(checks::default_fits(n.column, *op.type));
  if (op.check) prechecks.push_back(checks::constraint_absent(op.check_name));
  if (op.unique) {
    prechecks.push_back(checks::not_partitioned(checks::kPartitionedUnique));
    prechecks.push_back(checks::constraint_absent(op.unique_name));
    prechecks.push_back(checks::relation_absent(op.schema, op.unique_name));
  }
  if (!op.references.empty()) {
    prechecks.push_back(checks::not_partitioned(checks::kPartitionedForeignKey));
    prechecks.push_back(checks::referenced_table_exists(op.references));
    prechecks.push_back(checks::constraint_absent(op.references_name));
  }
  if (!op.rename.empty()) prechecks.push_back(checks::columns_absent({op.rename}));
  if (op.compat_view) {
    prechecks.push_back(checks::relation_absent(op.compat_view->schema, op.compat_view->name));
  }
  if (op.default_value) prechecks.push_back(checks::takes_default(n.column));
  out.push_back(checks::precheck_step(id + "precheck",
                                      op.type && op_name == "alter_column_type"
                                          ? "check that " + what + " can change type to " + *op.type
                                          : "check that " + what + " can be changed",
                                      n.table, prechecks));

  out.push_back(add_shadow_step(op, n, id));

  const std::string new_type = op.type.value_or(old_type);
  out.push_back(StepBuilder(id + "create_functions", Phase::kPrepare,
                            "create the up/down conversions and the sync trigger functions")
                    // %TYPE resolves when the function is created, before any rename.
                    .sql(conversion_function(n.fn_up, n.column, old_type, new_type, op.up) +
                         conversion_function(n.fn_down, n.column, new_type, old_type, op.down) +
                         sync_trigger_function(n.fn_fwd, n.q_shadow, n.fn_up, n.q_column) +
                         sync_trigger_function(n.fn_bwd, n.q_old, n.fn_down, n.q_final))
                    .rollback("DROP FUNCTION IF EXISTS " + n.fn_fwd + "(), " + n.fn_bwd + "();\n" +
                              "DROP FUNCTION IF EXISTS " + n.fn_up + ", " + n.fn_down + ";\n")
                    .lock(StepLock{LockMode::kNone, ""})
                    .access("none"));

  plan_sync_and_copy(spec, op, n, id, out);
  plan_swap_and_cleanup(op, n, id, out);
}

}  // namespace

void plan_alter_column(const Spec& spec, int index, const AlterColumn& op, std::vector<Step>& out) {
  plan_column_change(spec, index, op, "alter_column", out);
}

namespace {

// alter_column_type is alter_column with only a type, up and down.
AlterColumn as_alter_column(const AlterColumnType& op) {
  AlterColumn a;
  a.schema = op.schema;
  a.table = op.table;
  a.column = op.column;
  a.type = op.type;
  a.up = op.up;
  a.down = op.down;
  return a;
}

}  // namespace

void plan_alter_column_type(const Spec& spec, int index, const AlterColumnType& op,
                            std::vector<Step>& out) {
  plan_column_change(spec, index, as_alter_column(op), "alter_column_type", out);
}

std::optional<AlterColumnType> parse_alter_column_type(SpecReader& r, const YAML::Node& n) {
  const std::string w = "alter_column_type";
  if (!r.open_operation(n, w, schema_keys("alter_column_type"))) return std::nullopt;
  AlterColumnType a;
  r.table_ref(n, w, a.schema, a.table);
  r.identifier(n, "column", true, a.column, w);
  if (auto t = r.type_name(n, true, w)) a.type = *t;
  a.up = r.expression(n, "up");
  a.down = r.expression(n, "down");
  return a;
}

void needs_alter_column_type(const AlterColumnType& op, Needs& n) {
  needs_alter_column(as_alter_column(op), n);
}

std::optional<AlterColumn> parse_alter_column(SpecReader& r, const YAML::Node& n) {
  const std::string w = "alter_column";
  if (!r.open_operation(n, w, schema_keys("alter_column"))) return std::nullopt;
  AlterColumn a;
  r.table_ref(n, w, a.schema, a.table);
  r.identifier(n, "column", true, a.column, w);
  if (n["type"].IsDefined()) a.type = r.type_name(n, true, w);
  a.not_null = r.boolean(n, "not_null");
  a.check = r.expression(n, "check");
  if (auto b = r.boolean(n, "unique")) a.unique = *b;
  if (n["references"].IsDefined()) {
    std::string schema = a.schema, table;
    if (r.relation(n, "references", true, schema, table, w)) {
      a.references = qualified(schema, table);
      a.references_raw = schema + "." + table;
      r.identifier(n, "referenced_column", true, a.referenced_column, w);
    }
    r.on_delete(n, w, a.on_delete);
  }
  a.default_value = r.value_or_null(n, "default", true, false, w);
  a.comment = r.value_or_null(n, "comment", false, false, w);
  if (n["rename"].IsDefined()) {
    r.identifier(n, "rename", true, a.rename, w);
    if (a.rename == a.column) r.error(n["rename"], w + ": \"rename\" is the column's current name");
  }
  a.compat_view = r.compat_view(n, w);
  a.up = r.expression(n, "up");
  a.down = r.expression(n, "down");

  const std::string final_name = a.rename.empty() ? a.column : a.rename;
  auto name_or = [&](const char* key, const std::string& suffix, std::string& out) {
    if (n[key].IsDefined()) {
      r.identifier(n, key, true, out, w);
    } else {
      out = a.table + "_" + final_name + suffix;
    }
  };
  name_or("check_name", "_check", a.check_name);
  name_or("unique_name", "_key", a.unique_name);
  name_or("foreign_key_name", "_fkey", a.references_name);

  // Keys that qualify another that is missing.
  for (const auto& [key, needs] :
       std::vector<std::pair<const char*, const char*>>{{"check_name", "check"},
                                                        {"unique_name", "unique"},
                                                        {"referenced_column", "references"},
                                                        {"foreign_key_name", "references"},
                                                        {"on_delete", "references"},
                                                        {"compat_view", "rename"}}) {
    if (n[key].IsDefined() && !n[needs].IsDefined()) {
      r.error(n[key], std::string(key) + ": only with " + needs);
    }
  }
  if (a.not_null == false && !a.down) {
    r.error(n["not_null"],
            "not_null: false needs \"down\": the old column keeps its NOT NULL until cleanup, "
            "so down must give it a value for rows new writers leave NULL (e.g. down: "
            "COALESCE(" +
                quote_ident(a.column) + ", ''))");
  }
  if (!a.type && !a.not_null && !a.check && !a.unique && a.references.empty() && !a.default_value &&
      !a.comment && a.rename.empty() && !n["references"].IsDefined()) {
    r.error(n,
            "alter_column: nothing to change: give at least one of type, not_null, check, "
            "unique, references, default, comment or rename");
  }
  return a;
}

void needs_alter_column(const AlterColumn& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.needs_column(op.column);
  n.replaces.insert(op.column);
  const std::string final_name = op.rename.empty() ? op.column : op.rename;
  if (!op.rename.empty()) n.takes_column_name(op.rename);
  if (op.not_null == true) n.sets_not_null(final_name);
  if (op.check) {
    n.reads(*op.check, true);
    n.adds_constraint(op.check_name);
  }
  if (op.unique) {
    n.adds_constraint(op.unique_name);
    n.adds_relation(op.schema, op.unique_name);
  }
  if (!op.references.empty()) {
    n.adds_constraint(op.references_name);
    n.needs.push_back(op.references_raw + "." + op.referenced_column);
  }
  if (op.default_value) {
    if (*op.default_value) n.reads(**op.default_value);
    n.names.push_back("default of " + n.column(final_name));
  }
  if (op.comment) n.names.push_back("comment on column " + n.column(final_name));
  if (op.compat_view) n.adds_relation(op.compat_view->schema, op.compat_view->name);
}

}  // namespace tandem
