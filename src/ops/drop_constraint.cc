// drop_constraint: ALTER TABLE ... DROP CONSTRAINT at cutover, brief, with
// every lock taken first (the table a foreign key references, then the
// table) within one lock timeout. What was dropped is kept in
// tandem.dropped_constraints, so a rollback puts it back as it was: a
// primary key's or unique constraint's index built again CONCURRENTLY and
// the constraint attached to it, a CHECK or foreign key added NOT VALID and
// then validated in a transaction of its own. Cleanup forgets it.
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"

namespace tandem {

namespace {

// Refuses what a rollback could not put back, or what cannot be dropped
// alone: exclusion constraints and constraint triggers, keys and foreign
// keys of a partitioned table (their rollback would need an index built
// CONCURRENTLY, or a foreign key added NOT VALID, which PostgreSQL cannot do
// there), constraints inherited from a parent, a key other tables' foreign keys
// reference, and a key that serves as the replica identity of a published
// table (its writers would fail at once).
std::string droppable(const std::string& name) {
  const std::string con = quote_literal(name);
  const std::string k =
      "  FROM t JOIN pg_constraint k ON k.conrelid = t.rel AND k.conname = " + con + "\n";
  return "SELECT format('constraint %I of %s is an exclusion constraint or a constraint trigger; "
         "tandem cannot put it back online, so it does not drop it', k.conname, rel)\n" +
         k +
         " WHERE k.contype NOT IN ('p', 'u', 'c', 'f')\n"
         "UNION ALL\n"
         "SELECT format('constraint %I of %s %s', k.conname, rel,\n"
         "              CASE WHEN c.relkind = 'p' THEN 'is a key or foreign key of a partitioned "
         "table; of a partitioned table tandem drops CHECK constraints only'\n"
         "                   ELSE 'is inherited; tandem drops a table''s own constraints only' "
         "END)\n" +
         k +
         "  JOIN pg_class c ON c.oid = t.rel\n"
         " WHERE NOT (c.relkind = 'r' OR (c.relkind = 'p' AND k.contype = 'c'))\n"
         "    OR NOT k.conislocal OR k.coninhcount > 0\n"
         "UNION ALL\n"
         "SELECT format('foreign key %I of %s references key %I; drop that foreign key first', "
         "f.conname, f.conrelid::regclass, k.conname)\n" +
         k +
         "  JOIN pg_constraint f ON f.contype = 'f' AND f.conindid = k.conindid\n"
         " WHERE k.contype IN ('p', 'u')\n"
         "UNION ALL\n"
         "SELECT format('%s is published and key %I is its replica identity: without it "
         "updates and deletes would fail; set another replica identity first', rel, k.conname)\n" +
         k +
         "  JOIN pg_class c ON c.oid = t.rel\n"
         "  JOIN pg_index i ON i.indexrelid = k.conindid\n"
         " WHERE k.contype IN ('p', 'u')\n"
         "   AND (i.indisreplident OR (c.relreplident = 'd' AND k.contype = 'p'))\n"
         "   AND EXISTS (SELECT 1 FROM pg_publication_tables p JOIN pg_namespace n\n"
         "                 ON n.nspname = p.schemaname WHERE n.oid = c.relnamespace\n"
         "                AND p.tablename = c.relname)";
}

}  // namespace

void plan_drop_constraint(const Spec&, int index, const DropConstraint& op,
                          std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  const std::string con = quote_ident(op.name);
  const std::string rel = quote_literal(table), name = quote_literal(op.name);
  out.push_back(checks::precheck_step(
      id + "precheck", "check that constraint " + con + " of " + table + " can be dropped", table,
      {checks::table_exists(table), checks::constraint_exists(op.name), droppable(op.name)}));
  out.push_back(
      StepBuilder(id + "drop", Phase::kCutover,
                  "drop constraint " + con + " of " + table +
                      ", kept so that a rollback puts it back as it was")
          .sql("SELECT format('SELECT tandem.drop_constraint(%L::regclass, %L)', " + rel + ", " +
               name +
               ")\n"
               " WHERE EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = " +
               rel + "::regclass\n                AND conname = " + name + ")")
          .rollback("SELECT * FROM tandem.constraint_restorations(" + rel + "::regclass, " + name +
                    ")")
          .generates()
          .lock(StepLock{LockMode::kAccessExclusive,
                         "(brief: metadata only; on the table a foreign key references too)"})
          .access("none"));
  out.push_back(forget_step(id + "forget",
                            "forget the definition of " + con + " kept for a rollback",
                            "DELETE FROM tandem.dropped_constraints WHERE conrelid = " + rel +
                                "::regclass AND conname = " + name + ";\n"));
}

std::optional<DropConstraint> parse_drop_constraint(SpecReader& r, const YAML::Node& n) {
  const std::string w = "drop_constraint";
  if (!r.open_operation(n, w, schema_keys("drop_constraint"))) return std::nullopt;
  DropConstraint d;
  r.table_ref(n, w, d.schema, d.table);
  r.identifier(n, "name", true, d.name, w);
  return d;
}

void needs_drop_constraint(const DropConstraint& op, Needs& n) { n.on_table(op.schema, op.table); }

}  // namespace tandem
