// rename_column: the rename itself is a brief metadata change at cutover. A
// compatibility view created just before it, in the same transaction, keeps
// the old column name for readers that have not moved yet (a view refers to
// columns by position, so it follows the rename), until cleanup drops it.
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "plan/sync.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"

namespace tandem {

void plan_rename_column(const Spec&, int index, const RenameColumn& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  const std::string from = quote_ident(op.column);
  const std::string to = quote_ident(op.to);
  std::vector<std::string> prechecks = {checks::table_exists(table),
                                        checks::column_exists(op.column),
                                        checks::columns_absent({op.to})};
  if (op.compat_view) {
    prechecks.push_back(checks::relation_absent(op.compat_view->schema, op.compat_view->name));
  }
  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + table + "." + from + " can become " + to, table, prechecks));
  if (op.compat_view) {
    out.push_back(
        compat_view_step(id + "create_compat_view",
                         CompatView{*op.compat_view, table, table + " AS _row", {}, {}, false},
                         "the columns of " + table + " under their old names"));
    out.push_back(drop_compat_view_step(id + "drop_compat_view", *op.compat_view));
  }
  out.push_back(rename_step(id + "rename", table, "COLUMN", from, to));
}

std::optional<RenameColumn> parse_rename_column(SpecReader& r, const YAML::Node& n) {
  const std::string w = "rename_column";
  if (!r.open_operation(n, w, schema_keys("rename_column"))) return std::nullopt;
  RenameColumn rc;
  r.table_ref(n, w, rc.schema, rc.table);
  r.identifier(n, "column", true, rc.column, w);
  r.new_name(n, rc.column, rc.to, w, "column");
  rc.compat_view = r.compat_view(n, w);
  return rc;
}

void needs_rename_column(const RenameColumn& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.needs_column(op.column);
  n.replaces.insert(op.column);
  n.takes_column_name(op.to);
  if (op.compat_view) n.adds_relation(op.compat_view->schema, op.compat_view->name);
}

}  // namespace tandem
