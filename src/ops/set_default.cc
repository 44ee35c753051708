// set_default: ALTER COLUMN ... SET DEFAULT or DROP DEFAULT at cutover, a
// brief metadata change: rows written from then on get the new default;
// existing rows keep their values. The default it replaces (or none) is kept
// (tandem.undo), so a rollback sets it back; cleanup forgets it.
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"

namespace tandem {

void plan_default_change(const std::string& id, const std::string& table, const std::string& column,
                         const std::optional<std::string>& value, std::vector<Step>& out) {
  const std::string col = quote_ident(column);
  const std::string rel = quote_literal(table) + "::regclass";
  // The statement that puts the default as it is now back: SET or DROP.
  const std::string restore =
      "(SELECT format('ALTER TABLE %s ALTER COLUMN %I %s', " + rel + ", " + quote_literal(column) +
      ",\n"
      "        coalesce('SET DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), 'DROP DEFAULT'))\n"
      "   FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid"
      " AND d.adnum = a.attnum\n  WHERE a.attrelid = " +
      rel + " AND a.attname = " + quote_literal(column) + ")";
  plan_kept_change(
      id, table, "default of " + column, restore,
      "ALTER TABLE " + table + " ALTER COLUMN " + col +
          (value ? " SET DEFAULT " + *value : " DROP DEFAULT") + ";\n",
      (value ? "new rows get DEFAULT " + *value + " for " : "new rows get no default for ") + col +
          " (the default before is kept for a rollback)",
      StepLock::metadata_only(), out);
}

void plan_set_default(const Spec& spec, int index, const SetDefault& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  std::vector<std::string> prechecks = {checks::table_exists(table)};
  for (auto& c : checks::columns_exist(spec, op.schema, op.table, {op.column}))
    prechecks.push_back(std::move(c));
  prechecks.push_back(checks::takes_default(op.column));
  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + table + "." + quote_ident(op.column) + " can take a default",
      table, prechecks));
  plan_default_change(id, table, op.column, op.value, out);
}

std::optional<SetDefault> parse_set_default(SpecReader& r, const YAML::Node& n) {
  const std::string w = "set_default";
  if (!r.open_operation(n, w, schema_keys("set_default"))) return std::nullopt;
  SetDefault d;
  r.table_ref(n, w, d.schema, d.table);
  r.identifier(n, "column", true, d.column, w);
  if (auto v = r.value_or_null(n, "default", true, true, w)) d.value = *v;
  return d;
}

void needs_set_default(const SetDefault& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.needs_column(op.column);
  // On the column: an operation that replaces the column would leave it on
  // the old one, or not find the column by its name.
  n.attaches.insert(op.column);
  if (op.value) n.reads(*op.value);
  n.names.push_back("default of " + n.column(op.column));
}

}  // namespace tandem
