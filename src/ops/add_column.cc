// add_column: a new column that every row has a value in before anyone relies
// on it.
//
//   prepare     ADD COLUMN (nullable, no default: metadata only); the fill function
//   dual_write  trigger: a write that leaves the column NULL gets the backfill
//               expression, evaluated over the row, in the writer's own transaction
//   backfill    keyset batches: UPDATE ... SET c = expr WHERE c IS NULL; then the
//               unique index (concurrently) and the NOT NULL check, when asked for
//   shadow_read every row whose expression is not NULL has a value
//   cutover     SET NOT NULL (no scan), SET DEFAULT, when asked for
//   cleanup     drop the fill trigger and function
//
// A volatile expression (gen_random_uuid()) is evaluated once per row: the
// backfill only touches rows that are still NULL, and so does the trigger.
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

void plan_add_column(const Spec& spec, int index, const AddColumn& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  const std::string col = quote_ident(op.column);
  const HelperNames h(spec, op.schema, op.table, op.column);
  const std::string fn = h.function("fill");
  const std::string trigger = h.trigger("fill");

  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + table + " can gain column " + col, table,
      {checks::table_exists(table), checks::plain_table("add_column"), checks::type_exists(op.type),
       checks::has_walkable_key(), checks::columns_absent({op.column}),
       checks::no_invalid_indexes()}));

  out.push_back(add_nullable_column_step(id + "add_column", table, col, op.type));

  // The expression is written over the row's columns; the subquery over NEW.*
  // lets it be evaluated as written, without rewriting it.
  const std::string fill_body = "BEGIN\n  IF NEW." + col + " IS NULL THEN\n    NEW." + col +
                                " := (SELECT " + op.backfill +
                                " FROM (SELECT NEW.*) AS _row);\n"
                                "  END IF;\n  RETURN NEW;\nEND\n";
  out.push_back(trigger_function_step(id + "create_fill_function",
                                      "create the function that fills " + col + " for new writes",
                                      fn, fill_body));

  out.push_back(row_trigger_step(id + "create_fill_trigger", Phase::kDualWrite,
                                 "writes that leave " + col + " NULL get " + op.backfill, trigger,
                                 table, fn));
  out.push_back(
      backfill_step(id + "backfill", "fill " + col + " for existing rows in primary-key batches",
                    BatchWork{table, col + " = (" + op.backfill + ")", "", col + " IS NULL", ""},
                    spec.settings.batch_size));

  if (op.unique) {
    plan_unique_via_index(id, op.schema, op.table, op.table + "_" + op.column + "_key", {op.column},
                          Phase::kBackfill, Phase::kBackfill, out);
  }
  if (op.not_null) {
    // After the backfill: every row has a value, and the trigger fills new ones.
    plan_not_null_via_check(spec, id, op.schema, op.table, op.column, Phase::kBackfill,
                            Phase::kBackfill, out);
  }

  out.push_back(verify_step(
      id + "verify", "every row has " + col + " filled",
      BatchWork{table, "", col + " IS NULL AND (" + op.backfill + ") IS NOT NULL", "", ""}));

  if (op.default_value) {
    out.push_back(
        StepBuilder(id + "set_default", Phase::kCutover,
                    "new rows get DEFAULT " + *op.default_value)
            .sql("ALTER TABLE " + table + " ALTER COLUMN " + col + " SET DEFAULT " +
                 *op.default_value + ";\n")
            .rollback("ALTER TABLE " + table + " ALTER COLUMN " + col + " DROP DEFAULT;\n")
            .lock(StepLock::metadata_only())
            .access("none"));
  }

  out.push_back(drop_helpers_step(
      id + "drop_fill_trigger",
      "drop the fill trigger and function; the application writes " + col + " now",
      {trigger + " ON " + table}, {fn}));
}

std::optional<AddColumn> parse_add_column(SpecReader& r, const YAML::Node& n) {
  const std::string w = "add_column";
  if (!r.open_operation(
          n, w, {"schema", "table", "column", "type", "backfill", "default", "unique", "not_null"}))
    return std::nullopt;
  AddColumn a;
  r.table_ref(n, w, a.schema, a.table);
  r.identifier(n, "column", true, a.column, w);
  if (auto t = r.type_name(n, true, w)) a.type = *t;
  if (!n["backfill"].IsDefined()) {
    r.missing(n, "backfill", w);
  } else if (auto e = r.expression(n, "backfill")) {
    a.backfill = *e;
  }
  a.default_value = r.expression(n, "default");
  if (auto u = r.boolean(n, "unique")) a.unique = *u;
  if (auto nn = r.boolean(n, "not_null")) a.not_null = *nn;
  return a;
}

void needs_add_column(const AddColumn& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.adds_column(op.column);
  if (op.not_null) n.sets_not_null(op.column);
  n.reads(op.backfill);
  if (op.default_value) n.reads(*op.default_value);
  if (op.unique || op.not_null) n.attaches.insert(op.column);
}

}  // namespace tandem
