// create_index: CREATE [UNIQUE] INDEX CONCURRENTLY, which builds the index
// while reads and writes go on. Rollback drops it the same way.
#include "plan/checks.h"
#include "plan/index_build.h"
#include "plan/operations.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

void plan_create_index(const Spec&, int index, const CreateIndex& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  const std::string name = qualified(op.schema, op.name);
  out.push_back(checks::precheck_step(
      id + "precheck", "check that index " + name + " can be built on " + table, table,
      {checks::table_exists(table), checks::plain_table("create_index"),
       checks::relation_absent(op.schema, op.name)}));

  Step s;
  s.id = id + "create_index";
  s.phase = op.phase;
  s.description =
      std::string("build ") + (op.unique ? "unique " : "") + "index " + name + " concurrently";
  s.sql = std::string("CREATE ") + (op.unique ? "UNIQUE " : "") + "INDEX CONCURRENTLY " +
          quote_ident(op.name) + " ON " + table + " USING " + op.method + " (" +
          join(op.columns, ", ") + ")" + (op.where ? " WHERE " + *op.where : "") + ";\n";
  s.rollback_sql = "DROP INDEX CONCURRENTLY IF EXISTS " + name + ";\n";
  s.lock = "SHARE UPDATE EXCLUSIVE (reads and writes go on; waits for older writers)";
  s.table_access = "scans table twice";
  make_index_build_idempotent(s, name);
  out.push_back(s);
}

}  // namespace tandem
