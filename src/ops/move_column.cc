// move_column: users.full_name → users_pii(user_id, full_name).
//
//   prepare     create the target table (key + column, empty; primary key; a
//               foreign key to the source, ON UPDATE/DELETE CASCADE); the sync
//               functions of both directions
//   dual_write  trigger on the source: INSERT, UPDATE and DELETE are applied to
//               the target in the writer's transaction
//   backfill    keyset batches: INSERT ... SELECT ... FOR UPDATE ... ON CONFLICT,
//               so a batch copies each row as it is when locked and no writer
//               changes the row between that read and the copy
//   shadow_read every source row has its target row with the same value
//   cutover     the target becomes the truth: a trigger on it writes changes
//               back to the source column (the source trigger stays, so old
//               writers are still mirrored); the compatibility view, if asked
//   cleanup     drop the view, both triggers and functions, then the source column
//
// In slices (docs/slices.md): prepare defines them; the back trigger comes at
// the end of shadow_read with the routes' opening (a live slice's writes
// land on the target first), cutover routes every key to the target, and
// cleanup forgets the slices before the triggers go.
#include <algorithm>

#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/slices.h"
#include "plan/steps.h"
#include "plan/sync.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

namespace {

// The target table: the key and the column, with the source's types, keyed
// like the source and following its rows (ON UPDATE/DELETE CASCADE).
Step create_target_step(const std::string& id, const MoveColumn& op, const std::string& source,
                        const std::string& target) {
  const std::string col = quote_ident(op.column);
  const std::string to_col = quote_ident(op.to_column);
  std::vector<std::string> key_cols;
  for (const auto& k : op.key) key_cols.push_back(quote_ident(k));
  const std::string keys = join(key_cols, ", ");
  return StepBuilder(id + "create_target", Phase::kPrepare,
                     "create " + target + " (" + keys + ", " + to_col + ") with the source's types")
      .sql("CREATE TABLE " + target + " AS SELECT " + keys + ", " + col +
           (op.to_column == op.column ? "" : " AS " + to_col) + " FROM " + source +
           " WITH NO DATA;\n"
           "ALTER TABLE " +
           target + " ADD PRIMARY KEY (" + keys + ");\nALTER TABLE " + target +
           " ADD FOREIGN KEY (" + keys + ") REFERENCES " + source + " (" + keys +
           ")\n  ON UPDATE CASCADE ON DELETE CASCADE;\n")
      .rollback("DROP TABLE IF EXISTS " + target + ";\n")
      .lock(StepLock{LockMode::kShareRowExclusive,
                     "on " + source + " (brief: the foreign key; no scan of it)"})
      .access("none");
}

}  // namespace

void plan_move_column(const Spec& spec, int index, const MoveColumn& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string source = qualified(op.schema, op.table);
  const std::string target = qualified(op.to_schema, op.to_table);
  const std::string col = quote_ident(op.column);
  const std::string to_col = quote_ident(op.to_column);
  const HelperNames h(spec, op.schema, op.table, op.column);

  std::vector<std::string> prechecks = {
      checks::table_exists(source),
      checks::plain_or_partitioned_table("move_column"),
      checks::not_in_partition_key(op.column,
                                   "move_column drops it from the table at cleanup, "
                                   "and PostgreSQL cannot drop a column of the "
                                   "partition key"),
      checks::column_exists(op.column),
      checks::key_is_unique(op.key),
      checks::no_invalid_indexes(),
      checks::relation_absent(op.to_schema, op.to_table)};
  if (op.compat_view) {
    prechecks.push_back(checks::relation_absent(op.compat_view->schema, op.compat_view->name));
  }
  if (op.slices) prechecks.push_back(slices_by_exists(*op.slices));
  out.push_back(checks::precheck_step(id + "precheck",
                                      "check that " + source + "." + col + " can move to " + target,
                                      source, prechecks));

  out.push_back(create_target_step(id, op, source, target));

  Mirror forward{
      source, target, op.key, {{op.to_column, "_row." + col}}, true, "tandem.sync_" + h.tag()};
  Mirror back{target, source, op.key, {{op.column, "_row." + to_col}}, false, forward.guard};
  out.push_back(
      mirror_function_step(id + "create_sync_function",
                           "create the function that applies writes of " + source + " to " + target,
                           h.function("fwd"), forward));
  out.push_back(mirror_function_step(
      id + "create_back_function",
      "create the function that writes " + target + "." + to_col + " back to " + source + "." + col,
      h.function("bwd"), back));
  if (op.slices) out.push_back(define_slices_step(spec, source, *op.slices, id + "define_slices"));
  out.push_back(row_trigger_step(id + "create_sync_trigger", Phase::kDualWrite,
                                 "INSERT, UPDATE and DELETE on " + source + " reach " + target +
                                     " in the writer's transaction",
                                 h.trigger("fwd"), source, h.function("fwd"), kAfterEveryChange));

  BatchWork copy{source, "", "", "", mirror_backfill_statement(forward)};
  out.push_back(backfill_step(id + "backfill",
                              "copy " + col + " of existing rows to " + target + ", in key batches",
                              copy, spec.settings.batch_size));
  out.push_back(analyze_step(id + "analyze", target));
  out.push_back(verify_step(
      id + "verify",
      "every row of " + source + " has its row in " + target + " with the same " + to_col,
      mirror_verify_work(forward)));

  if (op.slices) {
    out.push_back(open_routes_step(spec, id + "open_routes",
                                   {{h.trigger("bwd"), target, h.function("bwd")}}));
    out.push_back(cut_routes_step(spec, id + "cut_routes"));
  } else {
    out.push_back(row_trigger_step(
        id + "create_back_trigger", Phase::kCutover,
        target + " is the truth now: its writes reach " + source + "." + col + " until cleanup",
        h.trigger("bwd"), target, h.function("bwd"), kAfterEveryChange));
  }
  if (op.compat_view) {
    CompatView v{
        *op.compat_view,
        source,
        source + " AS _row",
        {{op.column, "SELECT _m." + to_col + " FROM " + target + " AS _m WHERE " +
                         column_tuple(op.key, "_m.") + " = " + column_tuple(op.key, "_row.")}},
        {},
        false};
    out.push_back(
        compat_view_step(id + "create_compat_view", v,
                         "the old shape of " + source + ", " + col + " read from " + target));
    out.push_back(drop_compat_view_step(id + "drop_compat_view", *op.compat_view));
  }

  if (op.slices) out.push_back(remove_routes_step(spec, id + "remove_routes"));
  out.push_back(drop_back_sync_step(id + "drop_back_sync", h.trigger("bwd"), target, source));
  out.push_back(drop_helpers_step(
      id + "drop_sync", "drop the sync trigger and the functions of both directions",
      {h.trigger("fwd") + " ON " + source}, {h.function("fwd"), h.function("bwd")}, {}));
  out.push_back(drop_column_step(id + "drop_source_column",
                                 "drop " + source + "." + col + "; its values live in " + target,
                                 source, col));
}

std::optional<MoveColumn> parse_move_column(SpecReader& r, const YAML::Node& n) {
  const std::string w = "move_column";
  if (!r.open_operation(n, w, schema_keys("move_column"))) return std::nullopt;
  const size_t before = r.errors.size();
  MoveColumn m;
  r.table_ref(n, w, m.schema, m.table);
  r.identifier(n, "column", true, m.column, w);
  m.key = r.string_list(n, "key", w);
  m.to_schema = m.schema;
  r.relation(n, "to", true, m.to_schema, m.to_table, w);
  r.identifier(n, "to_column", false, m.to_column, w);
  if (m.to_column.empty()) m.to_column = m.column;
  m.compat_view = r.compat_view(n, w);
  if (r.errors.size() == before && std::find(m.key.begin(), m.key.end(), m.column) != m.key.end()) {
    r.error(n["column"], "move_column: \"" + m.column + "\" is part of the key; it cannot move");
  }
  if (r.errors.size() == before) {
    m.slices = parse_slices(r, n, w);
    if (m.slices && m.slices->by == m.column) {
      r.error(n["slices"]["by"],
              "move_column: slices: by: \"" + m.column +
                  "\" is the column that moves; route by a column that stays in " + m.table +
                  " (a key column, or another that identifies whose row it is)");
    }
  }
  return m;
}

void needs_move_column(const MoveColumn& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.adds_table(op.to_schema, op.to_table);
  if (op.compat_view) n.adds_relation(op.compat_view->schema, op.compat_view->name);
  n.replaces.insert(op.column);
}

}  // namespace tandem
