// alter_column_type: change a column's type online through a shadow column.
//
//   prepare      add shadow column _tandem_new_<c> of the new type; create the
//                up/down conversion functions and the two sync trigger functions
//   dual_write   trigger: every INSERT, and every UPDATE that assigns the column,
//                sets new := up(old) in the writer's own transaction
//   backfill     keyset batches UPDATE ... SET new = up(old); then, when the
//                column is NOT NULL, a NOT VALID check on the shadow, validated
//   shadow_read  every row: new IS NOT DISTINCT FROM up(old)
//   cutover      one short transaction: swap names, move default / identity /
//                NOT NULL, flip the trigger to old := down(new); then, in one of
//                its own, the ownership of a serial column's sequence
//   cleanup      drop the old column, the trigger and the functions
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
#include "spec/reader.h"
#include "tandem/error.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {
namespace {

struct Names {
  std::string table;                           // qualified, quoted
  std::string regclass;                        // 'schema.table'::regclass
  std::string column, shadow, old;             // raw names
  std::string q_column, q_shadow, q_old;       // quoted
  std::string fn_up, fn_down, fn_fwd, fn_bwd;  // qualified function names
  std::string trg_fwd, trg_bwd, nn_check;
};

Names names_for(const Spec& spec, const AlterColumnType& op) {
  Names n;
  n.table = qualified(op.schema, op.table);
  n.regclass = quote_literal(n.table) + "::regclass";
  n.column = op.column;
  n.shadow = "_tandem_new_" + op.column;
  n.old = "_tandem_old_" + op.column;
  n.q_column = quote_ident(n.column);
  n.q_shadow = quote_ident(n.shadow);
  n.q_old = quote_ident(n.old);
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

// dual_write to shadow_read: the forward sync, the copy, the NOT NULL
// check the shadow column gets when the column has NOT NULL, the verify.
void plan_sync_and_copy(const Spec& spec, const Names& n, const std::string& id,
                        std::vector<Step>& out) {
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

  out.push_back(
      StepBuilder(
          id + "add_not_null_check", Phase::kBackfill,
          "when " + n.q_column + " is NOT NULL: CHECK (" + n.q_shadow + " IS NOT NULL) NOT VALID")
          .sql("SELECT tandem.add_not_null_check(" + n.regclass + ", " + quote_literal(n.column) +
               ", " + quote_literal(n.shadow) + ", " + quote_literal(n.nn_check) + ");\n")
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

  out.push_back(verify_step(
      id + "verify", "every row: " + n.q_shadow + " = up(" + n.q_column + ")",
      BatchWork{n.table, "", n.q_shadow + " IS DISTINCT FROM " + n.fn_up + "(" + n.q_column + ")",
                "", ""}));
}

// cutover and cleanup: the swap (sync flipped to the old column), the
// sequence's owner, then the old column and the functions dropped.
void plan_swap_and_cleanup(const Names& n, const std::string& id, std::vector<Step>& out) {
  const std::vector<TableLock> lock_table = {{n.table, "ACCESS EXCLUSIVE"}};
  const std::string swap_in = "SELECT tandem.swap_columns(" + n.regclass + ", " +
                              quote_literal(n.column) + ", " + quote_literal(n.shadow) + ", " +
                              quote_literal(n.old) + ", " + quote_literal(n.nn_check) + ");\n";
  const std::string swap_back = "SELECT tandem.swap_columns(" + n.regclass + ", " +
                                quote_literal(n.column) + ", " + quote_literal(n.old) + ", " +
                                quote_literal(n.shadow) + ", " + quote_literal(n.nn_check) + ");\n";
  out.push_back(StepBuilder(id + "cutover", Phase::kCutover,
                            "swap " + n.q_column + " and " + n.q_shadow + "; sync flips to " +
                                n.q_old + " := down(" + n.q_column + ")")
                    .sql("DROP TRIGGER " + n.trg_fwd + " ON " + n.table + ";\n" + swap_in +
                         create_column_sync_trigger(n.trg_bwd, n.table, n.fn_bwd, n.q_column))
                    .rollback("DROP TRIGGER " + n.trg_bwd + " ON " + n.table + ";\n" + swap_back +
                              create_column_sync_trigger(n.trg_fwd, n.table, n.fn_fwd, n.q_column))
                    .locks_first(lock_table)
                    .rollback_locks_first(lock_table)
                    .lock(StepLock::metadata_only())
                    .access("none"));

  // Its own transaction: ALTER SEQUENCE waits for sessions that used the
  // sequence, which it must not do while holding the table (issue 16).
  auto move_owner = [&](const std::string& from, const std::string& to) {
    return "SELECT tandem.move_sequence_owner(" + n.regclass + ", " + quote_literal(from) + ", " +
           quote_literal(to) + ");\n";
  };
  out.push_back(StepBuilder(id + "move_sequence_owner", Phase::kCutover,
                            "when a sequence belongs to the old column (serial): it belongs to " +
                                n.q_column + " now, so cleanup's DROP COLUMN leaves it")
                    .sql(move_owner(n.old, n.column))
                    .rollback(move_owner(n.column, n.old))
                    .lock(StepLock{LockMode::kShareRowExclusive,
                                   "on the sequence (brief: nextval() waits while it waits)"})
                    .access("none"));

  out.push_back(StepBuilder(id + "drop_old_column", Phase::kCleanup,
                            "drop the backward sync and the old column " + n.q_old)
                    .sql("DROP TRIGGER IF EXISTS " + n.trg_bwd + " ON " + n.table + ";\n" +
                         "ALTER TABLE " + n.table + " DROP COLUMN IF EXISTS " + n.q_old + ";\n")
                    .locks_first(lock_table)
                    .reversible(false)
                    .lock(StepLock::metadata_only())
                    .access("none (space is reclaimed by later updates and VACUUM)"));

  out.push_back(StepBuilder(id + "drop_functions", Phase::kCleanup,
                            "drop the conversion and trigger functions")
                    .sql("DROP FUNCTION IF EXISTS " + n.fn_fwd + "(), " + n.fn_bwd + "();\n" +
                         "DROP FUNCTION IF EXISTS " + n.fn_up + ", " + n.fn_down + ";\n")
                    .reversible(false)
                    .lock(StepLock{LockMode::kNone, ""})
                    .access("none"));
}

}  // namespace

void plan_alter_column_type(const Spec& spec, int index, const AlterColumnType& op,
                            std::vector<Step>& out) {
  if (op.column.size() > 51) {
    throw Error(ErrorKind::kBadInput,
                "alter_column_type: column name \"" + op.column +
                    "\" is longer than 51 bytes; the shadow column's name would not fit");
  }
  const Names n = names_for(spec, op);
  const std::string id = std::to_string(index) + ".";
  const std::string what = n.table + "." + n.q_column;
  const std::string old_type = n.table + "." + n.q_column + "%TYPE";

  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + what + " can change type to " + op.type, n.table,
      {checks::table_exists(n.table), checks::plain_table("alter_column_type"),
       checks::column_exists(n.column), checks::type_exists(op.type), checks::has_walkable_key(),
       checks::columns_absent({n.shadow, n.old}), checks::no_invalid_indexes(),
       checks::no_dependents(n.column, "change the type of", false),
       checks::default_fits(n.column, op.type)}));

  out.push_back(add_nullable_column_step(id + "add_shadow_column", n.table, n.q_shadow, op.type,
                                         "add shadow column " + n.q_shadow + " " + op.type));

  out.push_back(StepBuilder(id + "create_functions", Phase::kPrepare,
                            "create the up/down conversions and the sync trigger functions")
                    // %TYPE resolves when the function is created, before any rename.
                    .sql(conversion_function(n.fn_up, n.column, old_type, op.type, op.up) +
                         conversion_function(n.fn_down, n.column, op.type, old_type, op.down) +
                         sync_trigger_function(n.fn_fwd, n.q_shadow, n.fn_up, n.q_column) +
                         sync_trigger_function(n.fn_bwd, n.q_old, n.fn_down, n.q_column))
                    .rollback("DROP FUNCTION IF EXISTS " + n.fn_fwd + "(), " + n.fn_bwd + "();\n" +
                              "DROP FUNCTION IF EXISTS " + n.fn_up + ", " + n.fn_down + ";\n")
                    .lock(StepLock{LockMode::kNone, ""})
                    .access("none"));

  plan_sync_and_copy(spec, n, id, out);
  plan_swap_and_cleanup(n, id, out);
}

std::optional<AlterColumnType> parse_alter_column_type(SpecReader& r, const YAML::Node& n) {
  const std::string w = "alter_column_type";
  if (!r.open_operation(n, w, {"schema", "table", "column", "type", "up", "down"}))
    return std::nullopt;
  AlterColumnType a;
  r.table_ref(n, w, a.schema, a.table);
  r.identifier(n, "column", true, a.column, w);
  if (auto t = r.type_name(n, true, w)) a.type = *t;
  a.up = r.expression(n, "up");
  a.down = r.expression(n, "down");
  return a;
}

void needs_alter_column_type(const AlterColumnType& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.needs_column(op.column);
  n.replaces.insert(op.column);
}

}  // namespace tandem
