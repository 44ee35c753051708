// create_table: CREATE TABLE in prepare, so that the table exists before
// anything writes to it; rollback drops it, with whatever was written to it.
// A foreign key in it takes SHARE ROW EXCLUSIVE on the table it references,
// briefly, under the lock timeout.
#include <algorithm>
#include <cctype>

#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

void plan_create_table(const Spec&, int index, const CreateTable& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + table + " can be created", table,
      {"SELECT format('schema %I does not exist', " + quote_literal(op.schema) +
           ")\n WHERE to_regnamespace(" + quote_literal(quote_ident(op.schema)) + ") IS NULL",
       checks::relation_absent(op.schema, op.table)}));
  std::string lower = join(op.columns, ", ");
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  const bool references = lower.find("references") != std::string::npos;
  out.push_back(StepBuilder(id + "create", Phase::kPrepare, "create " + table)
                    .sql("CREATE TABLE " + table + " (\n  " + join(op.columns, ",\n  ") + "\n);\n")
                    .rollback("DROP TABLE IF EXISTS " + table + ";\n")
                    .lock(references ? StepLock{LockMode::kShareRowExclusive,
                                                "(brief) on the tables its foreign keys reference"}
                                     : StepLock{LockMode::kNone, "(a new table)"})
                    .access("none"));
}

std::optional<CreateTable> parse_create_table(SpecReader& r, const YAML::Node& n) {
  const std::string w = "create_table";
  if (!r.open_operation(n, w, schema_keys("create_table"))) return std::nullopt;
  CreateTable c;
  r.table_ref(n, w, c.schema, c.table);
  c.columns = r.string_list(n, "columns", w);
  return c;
}

void needs_create_table(const CreateTable& op, Needs& n) {
  n.table = op.schema + "." + op.table;
  n.adds_table(op.schema, op.table);
}

}  // namespace tandem
