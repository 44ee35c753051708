// copy_table: rows of a v1 table kept as rows of a v2 table of another shape.
//
//   prepare     create the target table (when `create` is given); the sync
//               functions of both directions
//   dual_write  trigger on v1: INSERT, UPDATE and DELETE reach v2 through `up`,
//               in the writer's transaction
//   backfill    keyset batches over v1: INSERT ... SELECT ... FOR UPDATE ...
//               ON CONFLICT DO UPDATE
//   shadow_read every v1 row has its v2 row equal to `up` of it, and no v2 row
//               lacks its v1 row
//   cutover     v2 is the truth: a trigger on it writes back to v1 through
//               `down` (when given); the v1-shaped compatibility view, if asked
//   cleanup     drop the view and the sync (v1 itself stays: drop it with an
//               `sql` operation once nothing reads it)
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

Step precheck(const CopyTable& op, const std::string& id, const std::string& source,
              const std::string& target) {
  std::vector<std::string> prechecks = {
      checks::table_exists(source), checks::plain_or_partitioned_table("copy_table"),
      checks::key_is_unique(op.key), checks::no_invalid_indexes()};
  if (op.create) {
    prechecks.push_back(checks::relation_absent(op.to_schema, op.to_table));
  } else {
    prechecks.push_back(checks::referenced_table_exists(target));
  }
  if (op.compat_view) {
    prechecks.push_back(checks::relation_absent(op.compat_view->schema, op.compat_view->name));
  }
  if (op.slices) {
    prechecks.push_back(slices_by_exists(*op.slices));
    prechecks.push_back(slices_rows_reach_back(op));
  }
  return checks::precheck_step(
      id + "precheck", "check that " + source + " can be copied to " + target, source, prechecks);
}

}  // namespace

void plan_copy_table(const Spec& spec, int index, const CopyTable& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string source = qualified(op.schema, op.table);
  const std::string target = qualified(op.to_schema, op.to_table);
  const HelperNames h(spec, op.schema, op.table, op.to_table);

  out.push_back(precheck(op, id, source, target));

  if (op.create) {
    out.push_back(StepBuilder(id + "create_target", Phase::kPrepare, "create " + target)
                      .sql("CREATE TABLE " + target + " (\n  " + *op.create + "\n);\n")
                      .rollback("DROP TABLE IF EXISTS " + target + ";\n")
                      .lock(StepLock{LockMode::kNone, "(a new table)"})
                      .access("none"));
  }

  const std::string guard = "tandem.sync_" + h.tag();
  Mirror forward{source, target, op.key, op.up, true, guard};
  out.push_back(mirror_function_step(
      id + "create_sync_function",
      "create the function that applies writes of " + source + " to " + target + " through up",
      h.function("fwd"), forward));
  std::optional<Mirror> back;
  if (!op.down.empty()) {
    back = Mirror{target, source, op.key, op.down, true, guard};
    out.push_back(mirror_function_step(id + "create_back_function",
                                       "create the function that applies writes of " + target +
                                           " back to " + source + " through down",
                                       h.function("bwd"), *back));
  }
  if (op.slices) out.push_back(define_slices_step(spec, source, *op.slices, id + "define_slices"));
  out.push_back(row_trigger_step(id + "create_sync_trigger", Phase::kDualWrite,
                                 "INSERT, UPDATE and DELETE on " + source + " reach " + target +
                                     " in the writer's transaction",
                                 h.trigger("fwd"), source, h.function("fwd"), kAfterEveryChange));

  out.push_back(backfill_step(
      id + "backfill", "copy existing rows of " + source + " to " + target + ", in key batches",
      BatchWork{source, "", "", "", mirror_backfill_statement(forward)}, spec.settings.batch_size));
  out.push_back(analyze_step(id + "analyze", target));
  out.push_back(verify_step(
      id + "verify", "every row of " + source + " has its row in " + target + ", equal to up of it",
      mirror_verify_work(forward)));
  out.push_back(verify_step(id + "verify_no_extra_rows",
                            "no row of " + target + " lacks its row in " + source,
                            orphan_verify_work(forward)));

  if (op.slices) {
    // In slices, both ways are live from the routes' opening: a live slice's
    // writes land on the new side first.
    out.push_back(open_routes_step(spec, id + "open_routes",
                                   {{h.trigger("bwd"), target, h.function("bwd")}}));
    out.push_back(cut_routes_step(spec, id + "cut_routes"));
  } else if (back) {
    out.push_back(row_trigger_step(
        id + "create_back_trigger", Phase::kCutover,
        target + " is the truth now: its writes reach " + source + " through down until cleanup",
        h.trigger("bwd"), target, h.function("bwd"), kAfterEveryChange));
  }
  if (op.compat_view) {
    std::vector<std::pair<std::string, std::string>> columns = op.down;
    for (const auto& k : op.key) columns.emplace_back(k, "_row." + quote_ident(k));
    CompatView v{*op.compat_view, source, target + " AS _row", columns, {}, true};
    out.push_back(compat_view_step(id + "create_compat_view", v,
                                   "the shape of " + source + " over the rows of " + target));
    out.push_back(drop_compat_view_step(id + "drop_compat_view", *op.compat_view));
  }

  if (op.slices) out.push_back(remove_routes_step(spec, id + "remove_routes"));
  std::vector<std::string> functions = {h.function("fwd")};
  if (back) {
    out.push_back(drop_back_sync_step(id + "drop_back_sync", h.trigger("bwd"), target, source));
    functions.push_back(h.function("bwd"));
  }
  out.push_back(drop_helpers_step(
      id + "drop_sync",
      "drop the sync trigger and functions; " + target + " no longer follows " + source,
      {h.trigger("fwd") + " ON " + source}, functions, {}));
}

std::optional<CopyTable> parse_copy_table(SpecReader& r, const YAML::Node& n) {
  const std::string w = "copy_table";
  if (!r.open_operation(n, w, schema_keys("copy_table"))) return std::nullopt;
  const size_t before = r.errors.size();
  CopyTable c;
  r.table_ref(n, w, c.schema, c.table);
  c.to_schema = c.schema;
  r.relation(n, "to", true, c.to_schema, c.to_table, w);
  c.key = r.string_list(n, "key", w);
  c.up = r.column_map(n, "up", w);
  if (n["down"].IsDefined()) c.down = r.column_map(n, "down", w);
  c.create = r.scalar(n, "create", false, w);
  c.compat_view = r.compat_view(n, w);
  if (c.compat_view && c.down.empty() && r.errors.size() == before) {
    r.error(n["compat_view"],
            "copy_table: compat_view needs \"down\", which gives the view its "
            "columns");
  }
  if (r.errors.size() == before) {
    c.slices = parse_slices(r, n, w);
    if (c.slices) {
      const YAML::Node s = n["slices"];
      const bool in_key = std::find(c.key.begin(), c.key.end(), c.slices->by) != c.key.end();
      const bool in_down = std::any_of(c.down.begin(), c.down.end(),
                                       [&](const auto& d) { return d.first == c.slices->by; });
      if (c.down.empty()) {
        r.error(s,
                "copy_table: slices: slices need \"down\": once a slice is live, its writes "
                "reach the old table through it, so that the slice can go back");
      } else if (!in_key && !in_down) {
        r.error(s["by"], "copy_table: slices: by: \"" + c.slices->by +
                             "\" is neither a key column nor a column that down gives, so a row "
                             "of the new table could not be told which slice it is in");
      }
    }
  }
  for (const auto* m : {&c.up, &c.down}) {
    for (const auto& [column, expr] : *m) {
      if (std::find(c.key.begin(), c.key.end(), column) != c.key.end()) {
        r.error(n, "copy_table: key column \"" + column +
                       "\" is copied as it is; leave it out of up and down");
      }
    }
  }
  return c;
}

void needs_copy_table(const CopyTable& op, Needs& n) {
  n.on_table(op.schema, op.table);
  const std::string target = op.to_schema + "." + op.to_table;
  if (op.create) n.adds_table(op.to_schema, op.to_table);
  if (op.compat_view) n.adds_relation(op.compat_view->schema, op.compat_view->name);
  n.needs.push_back(target);
  for (const auto& [column, expr] : op.up) n.reads(expr);
}

}  // namespace tandem
