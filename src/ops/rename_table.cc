// rename_table: the rename is a brief metadata change at cutover. In the
// same transaction a view takes the old name (compat_view, on by default):
// a simple view over the whole table, which PostgreSQL lets old readers and
// writers use as the table itself (INSERT, UPDATE, DELETE, ON CONFLICT and
// RETURNING; column defaults come from the table). It checks privileges and
// row security as the caller (security_invoker) and gets the table's grants.
// Rollback drops the view and renames the table back; cleanup drops the view.
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "plan/sync.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"

namespace tandem {

void plan_rename_table(const Spec&, int index, const RenameTable& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string from = qualified(op.schema, op.table);
  const std::string to = qualified(op.schema, op.to);
  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + from + " can become " + to, from,
      {checks::table_exists(from), checks::plain_or_partitioned_table("rename_table"),
       checks::relation_absent(op.schema, op.to)}));
  std::string sql = "ALTER TABLE " + from + " RENAME TO " + quote_ident(op.to) + ";\n";
  std::string rollback;
  std::string what = "rename " + from + " to " + to;
  if (op.compat_view) {
    sql += "CREATE VIEW " + from + " WITH (security_invoker = true) AS SELECT * FROM " + to +
           ";\nSELECT tandem.copy_grants(" + quote_literal(to) + ", " + quote_literal(from) +
           ");\n";
    rollback = "DROP VIEW IF EXISTS " + from + ";\n";
    what += ", and put a view of it under the old name for old readers and writers";
  }
  rollback += "ALTER TABLE " + to + " RENAME TO " + quote_ident(op.table) + ";\n";
  out.push_back(StepBuilder(id + "rename", Phase::kCutover, what)
                    .sql(sql)
                    .rollback(rollback)
                    .lock(StepLock::metadata_only())
                    .access("none"));
  if (op.compat_view) {
    out.push_back(drop_compat_view_step(id + "drop_compat_view", ViewName{op.schema, op.table}));
  }
}

std::optional<RenameTable> parse_rename_table(SpecReader& r, const YAML::Node& n) {
  const std::string w = "rename_table";
  if (!r.open_operation(n, w, schema_keys("rename_table"))) return std::nullopt;
  RenameTable rt;
  r.table_ref(n, w, rt.schema, rt.table);
  r.new_name(n, rt.table, rt.to, w, "table");
  if (auto v = r.boolean(n, "compat_view")) rt.compat_view = *v;
  return rt;
}

void needs_rename_table(const RenameTable& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.adds_relation(op.schema, op.to);
  n.moves_table = true;
}

}  // namespace tandem
