// rename_constraint: ALTER TABLE ... RENAME CONSTRAINT at cutover, a brief
// metadata change (a primary key's or unique constraint's index is renamed
// with it); rollback renames it back.
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"

namespace tandem {

void plan_rename_constraint(const Spec&, int index, const RenameConstraint& op,
                            std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  const std::string from = quote_ident(op.name);
  const std::string to = quote_ident(op.to);
  out.push_back(checks::precheck_step(
      id + "precheck", "check that constraint " + from + " of " + table + " can become " + to,
      table,
      {checks::table_exists(table), checks::constraint_exists(op.name),
       checks::constraint_absent(op.to), checks::relation_absent(op.schema, op.to)}));
  out.push_back(rename_step(id + "rename", table, "CONSTRAINT", from, to));
}

std::optional<RenameConstraint> parse_rename_constraint(SpecReader& r, const YAML::Node& n) {
  const std::string w = "rename_constraint";
  if (!r.open_operation(n, w, schema_keys("rename_constraint"))) return std::nullopt;
  RenameConstraint rc;
  r.table_ref(n, w, rc.schema, rc.table);
  r.identifier(n, "name", true, rc.name, w);
  r.new_name(n, rc.name, rc.to, w, "constraint");
  return rc;
}

void needs_rename_constraint(const RenameConstraint& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.adds_constraint(op.to);
}

}  // namespace tandem
