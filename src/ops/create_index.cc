// create_index: CREATE [UNIQUE] INDEX CONCURRENTLY, which builds the index
// while reads and writes go on. Rollback drops it the same way.
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
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

std::optional<CreateIndex> parse_create_index(SpecReader& r, const YAML::Node& n) {
  const std::string w = "create_index";
  if (!r.open_operation(
          n, w, {"schema", "table", "name", "columns", "unique", "method", "where", "phase"}))
    return std::nullopt;
  CreateIndex c;
  r.table_ref(n, w, c.schema, c.table);
  r.identifier(n, "name", true, c.name, w);
  c.columns = r.string_list(n, "columns", w);
  if (auto u = r.boolean(n, "unique")) c.unique = *u;
  r.method_name(n, c.method);
  c.where = r.expression(n, "where");
  if (n["phase"].IsDefined()) {
    if (auto p = r.phase(n["phase"], "phase")) c.phase = *p;
  }
  return c;
}

void needs_create_index(const CreateIndex& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.adds_relation(op.schema, op.name);
  for (const auto& c : op.columns) n.reads(c, true);
  if (op.where) n.reads(*op.where, true);
}

}  // namespace tandem
