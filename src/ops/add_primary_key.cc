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
//
// With `replace: true` the table's primary key is swapped for the new one
// (username -> user_id). The old key's columns stay unique: a twin unique
// index on them is built CONCURRENTLY in backfill, and at cutover one
// transaction (tandem.replace_primary_key) locks the table, then the tables
// whose foreign keys reference the old key, drops those foreign keys and
// the old key, makes the new index the key and adds the foreign keys again
// NOT VALID (bound to the twin), validated next, each in its own
// transaction. The call that swaps back is kept (tandem.undo): a rollback
// builds the new key's index again first when foreign keys reference the
// new key. Cleanup makes the twin a UNIQUE constraint (old_key_name, or
// <table>_<columns>_key).
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
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

  std::vector<std::string> prechecks = {
      checks::table_exists(table), checks::plain_or_partitioned_table("add_primary_key"),
      checks::not_partitioned("add_primary_key does not support partitioned tables "
                              "yet (a key there must include the partition key, "
                              "and cannot be made from an index built beforehand)")};
  for (auto& c : checks::columns_exist(spec, op.schema, op.table, op.columns))
    prechecks.push_back(std::move(c));
  const std::string twin = h.plain("_tandem_oldpk_");
  if (!op.replace) {
    prechecks.push_back(
        "SELECT format('%s already has a primary key, %I; give replace: true to swap it for this "
        "one', rel, conname)\n"
        "  FROM t JOIN pg_constraint c ON c.conrelid = t.rel AND c.contype = 'p'");
    prechecks.push_back(checks::constraint_absent(op.name));
    prechecks.push_back(checks::relation_absent(op.schema, op.name));
  } else {
    // The old key and its index may have the new key's name: they go first.
    prechecks.push_back(
        "SELECT format('%s has no primary key to replace; leave out replace: true', rel)\n"
        "  FROM t WHERE rel IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_constraint k\n"
        "    WHERE k.conrelid = t.rel AND k.contype = 'p')");
    prechecks.push_back(
        "SELECT format('the primary key %I of %s is on (%s) already', c.conname, rel, " +
        quote_literal(join(op.columns, ", ")) +
        ")\n"
        "  FROM t JOIN pg_constraint c ON c.conrelid = t.rel AND c.contype = 'p'\n"
        " WHERE ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)\n"
        "               JOIN pg_attribute a ON a.attrelid = t.rel AND a.attnum = k.n ORDER BY "
        "k.i) = ARRAY[" +
        quote_literals(op.columns) + "]::text[]");
    prechecks.push_back(
        "SELECT format('the primary key %I of %s is DEFERRABLE; replace: true swaps immediate "
        "keys only', c.conname, rel)\n"
        "  FROM t JOIN pg_constraint c ON c.conrelid = t.rel AND c.contype = 'p' AND "
        "c.condeferrable");
    prechecks.push_back(
        "SELECT format('%s uses the index of its primary key as its replica identity; give it "
        "another first (set_replica_identity)', rel)\n"
        "  FROM t JOIN pg_index i ON i.indrelid = t.rel AND i.indisprimary AND i.indisreplident");
    prechecks.push_back(
        "SELECT format('constraint %I already exists on %s', c.conname, rel)\n"
        "  FROM t JOIN pg_constraint c ON c.conrelid = t.rel AND c.contype <> 'p'\n"
        " WHERE c.conname = " +
        quote_literal(op.name));
    prechecks.push_back(
        "SELECT format('%I.%I already exists', n.nspname, c.relname)\n"
        "  FROM t, pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace\n"
        " WHERE n.nspname = " +
        quote_literal(op.schema) + " AND c.relname = " + quote_literal(op.name) +
        "\n"
        "   AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = c.oid\n"
        "                      AND i.indrelid = t.rel AND i.indisprimary)");
    if (!op.old_key_name.empty()) prechecks.push_back(checks::constraint_absent(op.old_key_name));
    prechecks.push_back(checks::relation_absent(op.schema, twin));
  }
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
  const std::string set_not_null_sql = "ALTER TABLE " + table + " " + join(set_not_null, ", ") +
                                       ", " + join(drop_checks, ", ") + ";\n";
  std::vector<Step> kept;
  if (!op.replace) {
    plan_kept_change(id, table, "nullability of the key of " + op.name, restore,
                     set_not_null_sql + "ALTER TABLE " + table + " ADD CONSTRAINT " + name +
                         " PRIMARY KEY USING INDEX " + quote_ident(index_name) + ";\n",
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
    return;
  }

  // replace: true. The twin that keeps the old key's columns unique.
  const std::string q_twin = quote_literal(twin);
  const std::string twin_path = quote_literal(op.schema) + ", " + q_twin;
  out.push_back(
      StepBuilder(id + "build_old_key_index", Phase::kBackfill,
                  "build a unique index " + quote_ident(twin) +
                      " on the columns of the primary key it replaces (CONCURRENTLY): "
                      "they stay unique, and their foreign keys move to it")
          .sql("SELECT * FROM tandem.primary_key_index_builds(" + rel + ", " + q_twin + ");\n")
          .rollback("SELECT 'DROP INDEX CONCURRENTLY IF EXISTS ' || format('%I.%I', " + twin_path +
                    ")\n WHERE to_regclass(format('%I.%I', " + twin_path + ")) IS NOT NULL;\n")
          .generates()
          .lock(StepLock::reads_and_writes_go_on())
          .access("scans table"));

  // Cutover. In rollback order (last first): the new key's index built
  // again when foreign keys reference the new key, the swap back, the
  // validations it leaves.
  out.push_back(StepBuilder(id + "validate_after_rollback", Phase::kCutover,
                            "(on rollback) validate the foreign keys the swap back added again "
                            "NOT VALID, each in its own transaction")
                    .sql("SELECT * FROM tandem.pending_validations(" + rel + ");\n")
                    .rollback("SELECT * FROM tandem.pending_validations(" + rel + ");\n")
                    .generates()
                    .lock({LockMode::kShareUpdateExclusive,
                           "on each constraint's table (reads and writes go on)"})
                    .access("scans each table whose constraint it validates"));
  plan_kept_change(id, table, "nullability of the key of " + op.name, restore, set_not_null_sql,
                   "SET NOT NULL on the key columns (proved by the checks, so no scan)",
                   StepLock::metadata_only(), kept);
  Step nn = kept.at(0);
  nn.id = id + "set_not_null";
  nn.locks = {{table, "ACCESS EXCLUSIVE"}};
  nn.rollback_locks = nn.locks;
  out.push_back(nn);
  const std::string referencing =
      "SELECT format('%I.%I', n.nspname, r.relname), 'ACCESS EXCLUSIVE'\n"
      "  FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid\n"
      "  JOIN pg_namespace n ON n.oid = r.relnamespace\n"
      " WHERE c.contype = 'f' AND c.confrelid = " +
      rel + " AND c.conrelid <> " + rel +
      "\n   AND c.conindid = (SELECT conindid FROM pg_constraint WHERE conrelid = " + rel +
      " AND contype = 'p')\n GROUP BY 1 ORDER BY 1";
  out.push_back(StepBuilder(id + "replace_key", Phase::kCutover,
                            "make the index the primary key " + name +
                                " in place of the table's, moving the foreign keys that reference "
                                "the old key to " +
                                quote_ident(twin) + " (added again NOT VALID)")
                    .sql("SELECT tandem.replace_primary_key(" + rel + ", " +
                         quote_literal(index_name) + ", " + quote_literal(op.name) + ", " + q_twin +
                         ");\n")
                    .rollback("SELECT tandem.undo_change(" + rel + ", 'primary key');\n")
                    .locks_first({{table, "ACCESS EXCLUSIVE"}})
                    .rollback_locks_first({{table, "ACCESS EXCLUSIVE"}})
                    .locks_query(referencing)
                    .lock(StepLock{LockMode::kAccessExclusive,
                                   "(brief: metadata only; on the tables whose foreign keys "
                                   "reference the key too)"})
                    .access("none"));
  out.push_back(validate_pending_step(id + "validate_constraints", rel));
  out.push_back(StepBuilder(id + "keep_new_key_index", Phase::kCutover,
                            "(on rollback) when foreign keys reference the new key, build its "
                            "index again (CONCURRENTLY) to carry them; nothing forward")
                    .sql("SELECT NULL::text WHERE false;\n")
                    .rollback("SELECT * FROM tandem.primary_key_restorations(" + rel + ", " +
                              quote_literal(index_name) + ");\n")
                    .generates()
                    .lock(StepLock::reads_and_writes_go_on())
                    .access("none"));

  out.push_back(kept.at(1));
  out.push_back(
      forget_step(id + "forget_key", "forget how to swap the primary key back",
                  "DELETE FROM tandem.undo WHERE relid = " + rel + " AND item = 'primary key';\n"));
  out.push_back(
      StepBuilder(id + "keep_old_key", Phase::kCleanup,
                  "make " + quote_ident(twin) + " a UNIQUE constraint " +
                      (op.old_key_name.empty() ? std::string("<table>_<columns>_key")
                                               : quote_ident(op.old_key_name)) +
                      " on the old key's columns")
          .sql("SELECT tandem.keep_old_key(" + rel + ", " + q_twin + ", " +
               (op.old_key_name.empty() ? std::string("NULL") : quote_literal(op.old_key_name)) +
               ");\n")
          .reversible(false)
          .locks_first({{table, "ACCESS EXCLUSIVE"}})
          .lock(StepLock::metadata_only())
          .access("none"));
}

std::optional<AddPrimaryKey> parse_add_primary_key(SpecReader& r, const YAML::Node& n) {
  const std::string w = "add_primary_key";
  if (!r.open_operation(n, w, schema_keys("add_primary_key"))) return std::nullopt;
  AddPrimaryKey k;
  r.table_ref(n, w, k.schema, k.table);
  k.columns = r.string_list(n, "columns", w);
  if (n["name"].IsDefined()) {
    r.identifier(n, "name", true, k.name, w);
  } else {
    k.name = k.table + "_pkey";
  }
  if (auto b = r.boolean(n, "replace")) k.replace = *b;
  if (n["old_key_name"].IsDefined()) {
    if (!k.replace) r.error(n["old_key_name"], "old_key_name: only with replace: true");
    r.identifier(n, "old_key_name", true, k.old_key_name, w);
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
