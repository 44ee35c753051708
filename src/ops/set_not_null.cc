// set_not_null: SET NOT NULL scans the whole table under ACCESS EXCLUSIVE,
// unless a validated CHECK (column IS NOT NULL) already proves it. So: add
// that check NOT VALID, validate it while writes go on, then SET NOT NULL
// (no scan) and drop the check.
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

void plan_not_null_via_check(const Spec& spec, const std::string& id, const std::string& schema,
                             const std::string& table_name, const std::string& column, Phase add,
                             Phase validate, std::vector<Step>& out) {
  const std::string table = qualified(schema, table_name);
  const std::string col = quote_ident(column);
  const std::string check =
      quote_ident(HelperNames(spec, schema, table_name, column).plain("_tandem_nn_"));
  out.push_back(
      StepBuilder(id + "add_check", add,
                  "CHECK (" + col + " IS NOT NULL) NOT VALID: new writes are checked from now on")
          .sql("ALTER TABLE " + table + " ADD CONSTRAINT " + check + " CHECK (" + col +
               " IS NOT NULL) NOT VALID;\n")
          .rollback("ALTER TABLE " + table + " DROP CONSTRAINT IF EXISTS " + check + ";\n")
          .lock(StepLock{LockMode::kAccessExclusive, "(brief: no scan)"})
          .access("none"));

  out.push_back(
      StepBuilder(id + "validate", validate, "validate the check against the existing rows")
          .sql("ALTER TABLE " + table + " VALIDATE CONSTRAINT " + check + ";\n")
          .rollback("")
          .lock(StepLock::reads_and_writes_go_on())
          .access("scans table"));

  out.push_back(StepBuilder(id + "set_not_null", Phase::kCutover,
                            "SET NOT NULL (proved by the check, so no scan) and drop the check")
                    .sql("ALTER TABLE " + table + " ALTER COLUMN " + col + " SET NOT NULL;\n" +
                         "ALTER TABLE " + table + " DROP CONSTRAINT " + check + ";\n")
                    .rollback("ALTER TABLE " + table + " ALTER COLUMN " + col + " DROP NOT NULL;\n")
                    .lock(StepLock::metadata_only())
                    .access("none"));
}

void plan_set_not_null(const Spec& spec, int index, const SetNotNull& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  std::vector<std::string> prechecks = {checks::table_exists(table),
                                        checks::plain_or_partitioned_table("set_not_null")};
  for (auto& c : checks::columns_exist(spec, op.schema, op.table, {op.column}))
    prechecks.push_back(std::move(c));
  prechecks.push_back(checks::column_nullable(op.column));
  out.push_back(checks::precheck_step(
      id + "precheck",
      "check that " + table + "." + quote_ident(op.column) + " can be made NOT NULL", table,
      prechecks));
  plan_not_null_via_check(spec, id, op.schema, op.table, op.column, Phase::kPrepare,
                          Phase::kBackfill, out);
}

std::optional<SetNotNull> parse_set_not_null(SpecReader& r, const YAML::Node& n) {
  const std::string w = "set_not_null";
  if (!r.open_operation(n, w, schema_keys("set_not_null"))) return std::nullopt;
  SetNotNull s;
  r.table_ref(n, w, s.schema, s.table);
  r.identifier(n, "column", true, s.column, w);
  return s;
}

void needs_set_not_null(const SetNotNull& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.needs_column(op.column);
  n.attaches.insert(op.column);
  n.sets_not_null(op.column);
}

}  // namespace tandem
