// create_index: CREATE [UNIQUE] INDEX CONCURRENTLY, which builds the index
// while reads and writes go on. Rollback drops it the same way.
#include "plan/checks.h"
#include "plan/operations.h"
#include "plan/steps.h"
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

  out.push_back(concurrent_index_step(id + "create_index", op.phase, op.schema, op.name, table,
                                      "USING " + op.method + " (" + join(op.columns, ", ") + ")" +
                                          (op.where ? " WHERE " + *op.where : ""),
                                      op.unique));
}

}  // namespace tandem
