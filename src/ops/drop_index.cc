// drop_index: DROP INDEX CONCURRENTLY at cleanup, so that readers and writers
// go on while it waits for the transactions using the index, and so that
// until cleanup a rollback has nothing to undo. An index that backs a
// constraint is refused: the constraint goes with drop_constraint's rules.
// The index of a partitioned table cannot be dropped CONCURRENTLY (nor can
// its partitions' indexes, which belong to it): DROP INDEX takes it and them
// under a brief ACCESS EXCLUSIVE on the table and its partitions (no scan),
// within the lock timeout like any other step.
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"

namespace tandem {

void plan_drop_index(const Spec&, int index, const DropIndex& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  const std::string name = qualified(op.schema, op.name);
  const std::string literal = quote_literal(name);
  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + name + " is an index of " + table + " that can be dropped",
      table,
      {checks::table_exists(table),
       "SELECT format('%s is not an index of %s', " + literal +
           ", rel)\n"
           "  FROM t WHERE NOT EXISTS (SELECT 1 FROM pg_index\n"
           "                            WHERE indexrelid = to_regclass(" +
           literal + ") AND indrelid = t.rel)",
       "SELECT format('index %s backs constraint %I of %s: drop the constraint instead', " +
           literal +
           ", conname, rel)\n"
           "  FROM t JOIN pg_constraint c ON c.conrelid = t.rel\n"
           " WHERE c.conindid = to_regclass(" +
           literal + ") AND c.contype IN ('p', 'u', 'x')"}));
  // Which of the two statements, from the catalog when the step runs.
  out.push_back(
      StepBuilder(id + "drop_index", Phase::kCleanup,
                  "drop index " + name +
                      " CONCURRENTLY (irreversible; an index of a partitioned table with its "
                      "partitions' indexes, briefly)")
          .sql("SELECT CASE relkind WHEN 'I' THEN 'DROP INDEX IF EXISTS '\n"
               "                    ELSE 'DROP INDEX CONCURRENTLY IF EXISTS ' END || " +
               literal + "\n  FROM pg_class WHERE oid = to_regclass(" + literal + ");\n")
          .reversible(false)
          .generates()
          .lock(StepLock{LockMode::kShareUpdateExclusive,
                         "(reads and writes go on; waits for the transactions that use the "
                         "table); an index of a partitioned table: ACCESS EXCLUSIVE, brief (no "
                         "scan)"})
          .access("none"));
}

std::optional<DropIndex> parse_drop_index(SpecReader& r, const YAML::Node& n) {
  const std::string w = "drop_index";
  if (!r.open_operation(n, w, schema_keys("drop_index"))) return std::nullopt;
  DropIndex d;
  r.table_ref(n, w, d.schema, d.table);
  r.identifier(n, "name", true, d.name, w);
  return d;
}

void needs_drop_index(const DropIndex& op, Needs& n) { n.on_table(op.schema, op.table); }

}  // namespace tandem
