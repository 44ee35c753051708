// drop_column: the contract end of expand/contract. Dropping is metadata only
// (the space is reclaimed as rows are rewritten), and runs at cleanup. It is
// irreversible unless `down` says what the column is re-created with.
#include "plan/checks.h"
#include "plan/operations.h"
#include "util/ident.h"

namespace tandem {

void plan_drop_column(const Spec&, int index, const DropColumn& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  const std::string col = quote_ident(op.column);
  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + table + "." + col + " can be dropped", table,
      {checks::table_exists(table), checks::column_exists(op.column),
       checks::no_dependents(op.column, "drop", true)}));

  Step s;
  s.id = id + "drop_column";
  s.phase = Phase::kCleanup;
  s.description = "drop column " + col + (op.down ? "" : " (its data is gone for good)");
  s.sql = "ALTER TABLE " + table + " DROP COLUMN IF EXISTS " + col + ";\n";
  if (op.down) {
    // A non-volatile default fills existing rows without a rewrite.
    s.rollback_sql = "ALTER TABLE " + table + " ADD COLUMN IF NOT EXISTS " + col + " " + *op.type +
                     " DEFAULT (" + *op.down + ");\n" + "ALTER TABLE " + table + " ALTER COLUMN " +
                     col + " DROP DEFAULT;\n";
  } else {
    s.reversible = false;
  }
  s.lock = "ACCESS EXCLUSIVE (brief: metadata only)";
  s.table_access = "none (space is reclaimed by later updates and VACUUM)";
  out.push_back(s);
}

}  // namespace tandem
