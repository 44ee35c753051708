// add_primary_key: a primary key on a table that has none, without a long
// lock. ADD PRIMARY KEY builds its index and proves NOT NULL under ACCESS
// EXCLUSIVE, a scan of the table each; here:
//
//   backfill  CHECK (c IS NOT NULL) NOT VALID per key column, validated
//             (SHARE UPDATE EXCLUSIVE: reads and writes go on); the unique
//             index built CONCURRENTLY
//   cutover   one short transaction: SET NOT NULL (proved by the checks, so
//             no scan), the checks dropped, ADD CONSTRAINT ... PRIMARY KEY
//             USING INDEX; which columns were nullable is kept (tandem.undo),
//             so a rollback drops the key and their NOT NULL again
//   cleanup   forget that
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

void plan_add_primary_key(const Spec& spec, int index, const AddPrimaryKey& op,
                          std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  const std::string rel = quote_literal(table) + "::regclass";
  const std::string name = quote_ident(op.name);
  const HelperNames h(spec, op.schema, op.table, op.columns.front());
  const std::string index_name = h.plain("_tandem_pk_");

  std::vector<std::string> prechecks = {checks::table_exists(table),
                                        checks::plain_table("add_primary_key")};
  for (const auto& c : op.columns) prechecks.push_back(checks::column_exists(c));
  prechecks.push_back(
      "SELECT format('%s already has a primary key, %I', rel, conname)\n"
      "  FROM t JOIN pg_constraint c ON c.conrelid = t.rel AND c.contype = 'p'");
  prechecks.push_back(checks::constraint_absent(op.name));
  prechecks.push_back(checks::relation_absent(op.schema, op.name));
  prechecks.push_back(checks::relation_absent(op.schema, index_name));
  out.push_back(checks::precheck_step(id + "precheck",
                                      "check that " + table + " can take the primary key " + name,
                                      table, prechecks));

  // One check per key column; a column that is NOT NULL already passes its
  // validation at once (the scan still runs).
  std::vector<std::string> cols, add, drop, validate, set_not_null, drop_checks;
  for (const auto& c : op.columns) {
    const std::string col = quote_ident(c);
    const std::string check =
        quote_ident(HelperNames(spec, op.schema, op.table, c).plain("_tandem_nn_"));
    cols.push_back(col);
    add.push_back("ALTER TABLE " + table + " ADD CONSTRAINT " + check + " CHECK (" + col +
                  " IS NOT NULL) NOT VALID;\n");
    drop.push_back("ALTER TABLE " + table + " DROP CONSTRAINT IF EXISTS " + check + ";\n");
    validate.push_back("ALTER TABLE " + table + " VALIDATE CONSTRAINT " + check + ";\n");
    set_not_null.push_back("ALTER COLUMN " + col + " SET NOT NULL");
    drop_checks.push_back("DROP CONSTRAINT " + check);
  }
  out.push_back(StepBuilder(id + "add_not_null_checks", Phase::kBackfill,
                            "CHECK (column IS NOT NULL) NOT VALID on each key column: new writes "
                            "are checked from now on")
                    .sql(join(add, ""))
                    .rollback(join(drop, ""))
                    .lock(StepLock{LockMode::kAccessExclusive, "(brief: no scan)"})
                    .access("none"));
  out.push_back(StepBuilder(id + "validate_not_null_checks", Phase::kBackfill,
                            "validate those checks against the existing rows")
                    .sql(join(validate, ""))
                    .rollback("")
                    .lock(StepLock::reads_and_writes_go_on())
                    .access("scans table once per key column"));
  out.push_back(concurrent_index_step(id + "build_index", Phase::kBackfill, op.schema, index_name,
                                      table, "(" + join(cols, ", ") + ")", true));

  // The statement that makes the columns that are nullable now nullable
  // again, kept for a rollback.
  const std::string restore =
      "(SELECT coalesce(string_agg(format('ALTER TABLE %s ALTER COLUMN %I DROP NOT NULL', " + rel +
      ", attname), '; '), 'SELECT')\n"
      "   FROM pg_attribute WHERE attrelid = " +
      rel + " AND attname IN (" + quote_literals(op.columns) + ") AND NOT attnotnull)";
  std::vector<Step> kept;
  plan_kept_change(id, table, "nullability of the key of " + op.name, restore,
                   "ALTER TABLE " + table + " " + join(set_not_null, ", ") + ", " +
                       join(drop_checks, ", ") + ";\n" + "ALTER TABLE " + table +
                       " ADD CONSTRAINT " + name + " PRIMARY KEY USING INDEX " +
                       quote_ident(index_name) + ";\n",
                   "SET NOT NULL on the key columns (proved by the checks, so no scan), and "
                   "make the index the primary key " +
                       name,
                   StepLock::metadata_only(), kept);
  Step attach = kept.at(0);
  attach.id = id + "attach";
  attach.locks = {{table, "ACCESS EXCLUSIVE"}};
  // The key goes first: it holds the index and the NOT NULL it needs.
  attach.rollback_sql = "ALTER TABLE " + table + " DROP CONSTRAINT IF EXISTS " + name + ";\n" +
                        attach.rollback_sql.value_or("");
  attach.rollback_locks = attach.locks;
  out.push_back(attach);
  out.push_back(kept.at(1));
}

std::optional<AddPrimaryKey> parse_add_primary_key(SpecReader& r, const YAML::Node& n) {
  const std::string w = "add_primary_key";
  if (!r.open_operation(n, w, {"schema", "table", "columns", "name"})) return std::nullopt;
  AddPrimaryKey k;
  r.table_ref(n, w, k.schema, k.table);
  k.columns = r.string_list(n, "columns", w);
  if (n["name"].IsDefined()) {
    r.identifier(n, "name", true, k.name, w);
  } else {
    k.name = k.table + "_pkey";
  }
  return k;
}

void needs_add_primary_key(const AddPrimaryKey& op, Needs& n) {
  n.on_table(op.schema, op.table);
  for (const auto& c : op.columns) {
    n.needs_column(c);
    n.attaches.insert(c);
    n.sets_not_null(c);
  }
  n.adds_constraint(op.name);
  n.adds_relation(op.schema, op.name);
}

}  // namespace tandem
