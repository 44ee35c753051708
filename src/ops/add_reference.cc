// add_reference: orders.username → orders.user_id, looked up in users.
//
//   prepare     ADD COLUMN (nullable; metadata only); the lookup function
//   dual_write  BEFORE trigger, in the writer's transaction: a row inserted
//               without the new key, or whose old key changes, gets the new key
//               looked up; a row inserted without the old key, or whose new key
//               changes, gets the old key looked up (writers that already use
//               the new key keep the old column right until cleanup)
//   backfill    keyset batches: SET new = lookup(old) where new IS NULL; the
//               index on the new column (concurrently); the foreign key NOT VALID,
//               then VALIDATE; NOT NULL through a validated check, when asked
//   shadow_read every row's new key is the lookup of its old key
//   cutover     SET NOT NULL (no scan); the compatibility view, if asked
//   cleanup     drop the view, the trigger and function; drop the old column
//               when asked (irreversible)
//
// Only rows without the new key are backfilled: every row written since the
// trigger exists got its key from the trigger, looked up in the writer's own
// transaction. A batch that re-evaluates a row changed under it (READ
// COMMITTED) runs the lookup with the statement's older snapshot, which may
// not see the parent row as the writer left it; the filter skips such a row.
//
// The parent's new key must be filled first: put the add_column that creates
// it before this operation (the planner orders them so when they are in one spec).
#include <algorithm>

#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "plan/sync.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

namespace {

// The lookup trigger's body: NEW.<col> / NEW.<via> and the lookups, filled
// into a readable template. An insert gets whichever key it left out; an
// update of one key alone gets the other.
std::string lookup_body(const std::string& col, const std::string& via, const std::string& new_key,
                        const std::string& old_key) {
  const std::string body = R"(BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.$col IS NULL THEN
      NEW.$col := $new_key;
    ELSIF NEW.$via IS NULL THEN
      NEW.$via := $old_key;
    END IF;
  ELSIF NEW.$via IS DISTINCT FROM OLD.$via AND NEW.$col IS NOT DISTINCT FROM OLD.$col THEN
    NEW.$col := $new_key;
  ELSIF NEW.$col IS DISTINCT FROM OLD.$col AND NEW.$via IS NOT DISTINCT FROM OLD.$via
        AND NEW.$col IS NOT NULL THEN
    NEW.$via := $old_key;
  END IF;
  RETURN NEW;
END
)";
  return fill_template(
      body, {{"$new_key", new_key}, {"$old_key", old_key}, {"$col", col}, {"$via", via}});
}

// Cleanup: the old key dropped with the trigger that fills it (drop_via),
// or only the trigger and its function.
Step cleanup_step(const AddReference& op, const std::string& id, const std::string& table,
                  const std::string& col, const std::string& via, const std::string& trigger,
                  const std::string& fn) {
  if (!op.drop_via) {
    return drop_helpers_step(
        id + "drop_lookup_trigger",
        "drop the lookup trigger and function; writers set " + col + " themselves now",
        {trigger + " ON " + table}, {fn});
  }
  // The trigger fills the old key, which may be NOT NULL, for writers of the
  // new one: both go in one transaction (issue 16).
  Step s = drop_column_step(id + "drop_old_key",
                            "drop the lookup trigger and " + table + "." + via +
                                " with its indexes and constraints, then the function",
                            table, via);
  s.sql = "DROP TRIGGER IF EXISTS " + trigger + " ON " + table + ";\n" + s.sql +
          "DROP FUNCTION IF EXISTS " + fn + "();\n";
  s.locks = {{table, "ACCESS EXCLUSIVE"}};
  return s;
}

}  // namespace

void plan_add_reference(const Spec& spec, int index, const AddReference& op,
                        std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  const std::string parent = qualified(op.references_schema, op.references);
  const std::string col = quote_ident(op.column);
  const std::string via = quote_ident(op.via);
  const std::string ref_col = quote_ident(op.referenced_column);
  const std::string lookup = quote_ident(op.lookup);
  const HelperNames h(spec, op.schema, op.table, op.column);
  const std::string fn = h.function("ref");
  const std::string trigger = h.trigger("ref");
  // The new key for a row, and the old key for a row, by lookup in the parent.
  auto new_key = [&](const std::string& row) {
    return "(SELECT _p." + ref_col + " FROM " + parent + " AS _p WHERE _p." + lookup + " = " + row +
           "." + via + ")";
  };
  auto old_key = [&](const std::string& row) {
    return "(SELECT _p." + lookup + " FROM " + parent + " AS _p WHERE _p." + ref_col + " = " + row +
           "." + col + ")";
  };

  std::vector<std::string> prechecks = {checks::table_exists(table),
                                        checks::plain_or_partitioned_table("add_reference"),
                                        checks::not_partitioned(checks::kPartitionedForeignKey),
                                        checks::column_exists(op.via),
                                        checks::columns_absent({op.column}),
                                        checks::type_exists(op.type),
                                        checks::has_walkable_key(),
                                        checks::no_invalid_indexes(),
                                        checks::referenced_table_exists(parent)};
  if (op.compat_view) {
    prechecks.push_back(checks::relation_absent(op.compat_view->schema, op.compat_view->name));
  }
  if (op.orphans == Orphans::kFail) {
    prechecks.push_back(checks::no_orphans(
        table, {op.via}, parent, {op.lookup},
        op.not_null ? "their new column would stay NULL, and NOT NULL would fail after the "
                      "backfill. Fix them first, or give orphans: delete"
                    : "their new column would stay NULL" +
                          std::string(op.drop_via ? ", and cleanup drops " + via +
                                                        ", which alone names their parent"
                                                  : "") +
                          ". Fix them first, or give orphans: set_null (keep them, their " + col +
                          " NULL) or orphans: delete"));
  }
  if (op.not_null) {
    // Rows without an old key get no new key either.
    prechecks.push_back(checks::no_rows_where(
        table, {op.via}, "_row." + via + " IS NULL",
        "have no " + op.via +
            ": their new column would stay NULL, and NOT NULL would fail after the backfill. "
            "Give them one first, or leave not_null out"));
  }
  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + table + " can gain " + col + " referencing " + parent, table,
      prechecks));

  out.push_back(add_nullable_column_step(id + "add_column", table, col, op.type));

  const std::string body = lookup_body(col, via, new_key("NEW"), old_key("NEW"));
  out.push_back(trigger_function_step(
      id + "create_lookup_function",
      "create the function that keeps " + col + " and " + via + " in agreement", fn, body));

  out.push_back(row_trigger_step(id + "create_lookup_trigger", Phase::kDualWrite,
                                 "rows written with " + via + " get " + col +
                                     " looked up in the writer's transaction, and back",
                                 trigger, table, fn));
  out.push_back(backfill_step(
      id + "backfill", "fill " + col + " of existing rows from " + parent + ", in key batches",
      BatchWork{table, col + " = " + new_key("_row"), "", "_row." + col + " IS NULL", ""},
      spec.settings.batch_size));

  if (op.index) {
    out.push_back(concurrent_index_step(id + "create_index", Phase::kBackfill, op.schema,
                                        utf8_prefix(op.table + "_" + op.column, 55) + "_idx", table,
                                        "(" + col + ")", false));
  }

  const std::string fk = utf8_prefix(op.table + "_" + op.column, 57) + "_fkey";
  plan_constraint_not_valid(
      id + "fk_", table, fk,
      "FOREIGN KEY (" + col + ") REFERENCES " + parent + " (" + ref_col + ")" +
          (op.on_delete.empty() ? "" : " ON DELETE " + op.on_delete),
      {LockMode::kShareRowExclusive, "on both tables (brief: no scan)"},
      {LockMode::kShareUpdateExclusive, "; ROW SHARE on " + parent + " (reads and writes go on)"},
      Phase::kBackfill, Phase::kBackfill, out, parent);
  if (op.not_null) {
    plan_not_null_via_check(spec, id, op.schema, op.table, op.column, Phase::kBackfill,
                            Phase::kBackfill, out);
  }
  if (op.orphans == Orphans::kDelete) {
    // After the backfill. With not_null, before the NOT NULL check NOT
    // VALID (which refuses any update of a row it does not hold for, so an
    // orphan left then would fail the application's updates of it), and
    // once more after it (from then on no new orphan can be written),
    // before its validation: for those written in between.
    const auto pass = [&](const std::string& name, const std::string& when) {
      return irreversible_batch_step(
          id + name,
          "delete the rows of " + table + " whose " + via + " no row of " + parent + " holds" +
              when + " (irreversible)",
          BatchWork{table, "", "", checks::orphan_row({op.via}, parent, {op.lookup}),
                    "DELETE FROM " + table + " AS _row WHERE " + kBatchRange},
          spec.settings.batch_size, "deletes the rows without a parent");
    };
    const auto before = [&](const std::string& step) {
      return std::find_if(out.begin(), out.end(), [&](const Step& s) { return s.id == id + step; });
    };
    if (op.not_null) {
      // plan_not_null_via_check's steps.
      out.insert(before("add_check"), pass("delete_orphans", ""));
      out.insert(before("validate"),
                 pass("delete_orphans_again", ", written before the NOT NULL check was in place"));
    } else {
      out.push_back(pass("delete_orphans", ""));
    }
  }

  out.push_back(verify_step(
      id + "verify", "every row's " + col + " is the " + ref_col + " of its " + via,
      BatchWork{table, "", "_row." + col + " IS DISTINCT FROM " + new_key("_row"), "", ""}));

  if (op.compat_view) {
    CompatView v{*op.compat_view, table, table + " AS _row", {{op.via, old_key("_row")}},
                 {op.column},     false};
    out.push_back(
        compat_view_step(id + "create_compat_view", v,
                         "the old shape of " + table + ", " + via + " looked up by " + col));
    out.push_back(drop_compat_view_step(id + "drop_compat_view", *op.compat_view));
  }

  out.push_back(cleanup_step(op, id, table, col, via, trigger, fn));
}

std::optional<AddReference> parse_add_reference(SpecReader& r, const YAML::Node& n) {
  const std::string w = "add_reference";
  if (!r.open_operation(n, w, schema_keys("add_reference"))) return std::nullopt;
  AddReference a;
  r.table_ref(n, w, a.schema, a.table);
  r.identifier(n, "column", true, a.column, w);
  if (auto t = r.type_name(n, true, w)) a.type = *t;
  r.identifier(n, "via", true, a.via, w);
  a.references_schema = a.schema;
  r.relation(n, "references", true, a.references_schema, a.references, w);
  r.identifier(n, "referenced_column", true, a.referenced_column, w);
  r.identifier(n, "lookup", true, a.lookup, w);
  r.on_delete(n, w, a.on_delete);
  if (auto b = r.boolean(n, "not_null")) a.not_null = *b;
  if (auto b = r.boolean(n, "index")) a.index = *b;
  if (auto b = r.boolean(n, "drop_via")) a.drop_via = *b;
  a.compat_view = r.compat_view(n, w);
  r.orphans(n, w, a.orphans);
  if (a.orphans == Orphans::kSetNull && a.not_null) {
    r.error(n["orphans"],
            "orphans: set_null leaves the new column of those rows NULL, which not_null: true "
            "refuses; give orphans: delete, or fail (the default)");
  }
  return a;
}

void needs_add_reference(const AddReference& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.adds_column(op.column);
  if (op.not_null) n.sets_not_null(op.column);
  if (op.compat_view) n.adds_relation(op.compat_view->schema, op.compat_view->name);
  n.needs.push_back(op.references_schema + "." + op.references + "." + op.referenced_column);
  n.needs_column(op.via);
  if (op.drop_via) n.replaces.insert(op.via);
}

}  // namespace tandem
