// drop_table: at cutover the table moves out of the way under a name of
// tandem's (a brief rename), so anything still using it fails while it can
// still come back: rollback renames it back, with every row it held. Cleanup
// drops it. Tables whose foreign keys reference it and views that read it
// are refused at precheck: they would follow it under the new name, and
// dropping it would need CASCADE.
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"

namespace tandem {

void plan_drop_table(const Spec& spec, int index, const DropTable& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  const std::string aside =
      HelperNames(spec, op.schema, op.table, op.table).plain("_tandem_dropped_");
  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + table + " can be dropped", table,
      {checks::table_exists(table), checks::plain_or_partitioned_table("drop_table"),
       "SELECT format('%s is a partition of %s; drop_table drops whole tables only', rel,\n"
       "              (SELECT inhparent::regclass FROM pg_inherits WHERE inhrelid = rel))\n"
       "  FROM t JOIN pg_class c ON c.oid = t.rel WHERE c.relispartition",
       "SELECT format('foreign key %I of %s references %s; drop that foreign key first', "
       "k.conname, k.conrelid::regclass, rel)\n"
       "  FROM t JOIN pg_constraint k ON k.confrelid = t.rel AND k.contype = 'f'"
       " AND k.conrelid <> t.rel",
       "SELECT DISTINCT format('%s %s reads %s; drop or change it first',\n"
       "       CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END,"
       " v.oid::regclass, rel)\n"
       "  FROM t JOIN pg_depend d ON d.refobjid = t.rel AND d.refclassid = 'pg_class'::regclass\n"
       "  JOIN pg_rewrite w ON w.oid = d.objid AND d.classid = 'pg_rewrite'::regclass\n"
       "  JOIN pg_class v ON v.oid = w.ev_class WHERE v.oid <> t.rel",
       checks::relation_absent(op.schema, aside)}));
  const std::string moved = qualified(op.schema, aside);
  out.push_back(
      StepBuilder(id + "move_aside", Phase::kCutover,
                  "move " + table + " out of the way, as " + quote_ident(aside) +
                      ", until cleanup drops it")
          .sql("ALTER TABLE " + table + " RENAME TO " + quote_ident(aside) + ";\n")
          .rollback("ALTER TABLE " + moved + " RENAME TO " + quote_ident(op.table) + ";\n")
          .lock(StepLock::metadata_only())
          .access("none"));
  out.push_back(StepBuilder(id + "drop", Phase::kCleanup,
                            "drop " + moved + " (irreversible: its rows go with it)")
                    .sql("DROP TABLE IF EXISTS " + moved + ";\n")
                    .reversible(false)
                    .lock(StepLock{LockMode::kAccessExclusive, "(brief: no one uses it now)"})
                    .access("none"));
}

std::optional<DropTable> parse_drop_table(SpecReader& r, const YAML::Node& n) {
  const std::string w = "drop_table";
  if (!r.open_operation(n, w, schema_keys("drop_table"))) return std::nullopt;
  DropTable d;
  r.table_ref(n, w, d.schema, d.table);
  return d;
}

void needs_drop_table(const DropTable& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.moves_table = true;
}

}  // namespace tandem
