// drop_column: the contract end of expand/contract. Dropping is metadata only
// (the space is reclaimed as rows are rewritten), and runs at cleanup. It is
// irreversible unless `down` says what the column is re-created with; then
// the column's NOT NULL, default and CHECK constraints are recorded before
// the drop and come back with it (its indexes, unique and foreign key
// constraints, comment and position do not).
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"

namespace tandem {
namespace {

// The record of the column's definition, in tandem.events (kind
// column_definition, under the drop step's id): {"not_null": bool,
// "default": text or null, "checks": [{"name", "def", "validated"}]}, each
// check's definition without NOT VALID.
std::string record_definition(const std::string& migration, const std::string& step_id,
                              const std::string& table, const std::string& column) {
  return "INSERT INTO tandem.events (migration, kind, phase, step_id, actor, detail)\n"
         "SELECT " +
         quote_literal(migration) + ", 'column_definition', " +
         std::to_string(static_cast<int>(Phase::kCleanup)) + ", " + quote_literal(step_id) +
         ", 'tandemd',\n"
         "       jsonb_build_object('not_null', a.attnotnull,\n"
         "         'default', (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d\n"
         "                      WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum),\n"
         "         'checks', coalesce((SELECT jsonb_agg(jsonb_build_object('name', c.conname,\n"
         "             'def', regexp_replace(pg_get_constraintdef(c.oid), ' NOT VALID$', ''),\n"
         "             'validated', c.convalidated) ORDER BY c.conname)\n"
         "            FROM pg_constraint c WHERE c.conrelid = a.attrelid AND c.contype = 'c'\n"
         "             AND a.attnum = ANY (c.conkey)), '[]'))\n"
         "  FROM pg_attribute a\n"
         " WHERE a.attrelid = " +
         quote_literal(table) + "::regclass AND a.attname = " + quote_literal(column) +
         " AND NOT a.attisdropped;\n";
}

// A PL/pgSQL block that reads the latest record into `d` (and returns when
// there is none), then runs `body`.
std::string with_definition(const std::string& migration, const std::string& step_id,
                            const std::string& body) {
  return "DO " +
         dollar_quote(
             "DECLARE\n  d jsonb;\n  c jsonb;\nBEGIN\n"
             "  SELECT detail INTO d FROM tandem.events WHERE migration = " +
             quote_literal(migration) + " AND kind = 'column_definition' AND step_id = " +
             quote_literal(step_id) + "\n   ORDER BY id DESC LIMIT 1;\n" + body + "END\n") +
         ";\n";
}

}  // namespace

void plan_drop_column(const Spec& spec, int index, const DropColumn& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  const std::string col = quote_ident(op.column);
  std::vector<std::string> checks = {
      checks::table_exists(table), checks::column_exists(op.column),
      checks::no_dependents(op.column, "drop", true),
      checks::not_in_partition_key(op.column,
                                   "PostgreSQL cannot drop a column of the "
                                   "partition key")};
  if (op.down) checks.push_back(checks::column_restorable(op.column, *op.type, *op.down));
  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + table + "." + col + " can be dropped", table, checks));

  const std::string drop_id = id + "drop_column";
  const std::string t = quote_literal(table);
  if (op.down) {
    // Before the drop; rolled back after the column is back: its CHECK
    // constraints, re-added NOT VALID, are validated without blocking writes.
    out.push_back(
        StepBuilder(id + "save_definition", Phase::kCleanup,
                    "record the NOT NULL, default and CHECK constraints of " + col +
                        ", which a rollback restores")
            .sql(record_definition(spec.name, drop_id, table, op.column))
            .rollback(with_definition(
                spec.name, drop_id,
                "  IF d IS NULL THEN RETURN; END IF;\n"
                "  FOR c IN SELECT * FROM jsonb_array_elements(d->'checks') LOOP\n"
                "    IF (c->>'validated')::boolean AND EXISTS (SELECT 1 FROM pg_constraint\n"
                "        WHERE conrelid = " +
                    t +
                    "::regclass AND conname = c->>'name' AND NOT convalidated) THEN\n"
                    "      EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', " +
                    t +
                    ", c->>'name');\n"
                    "    END IF;\n"
                    "  END LOOP;\n"))
            .lock(StepLock{LockMode::kNone,
                           "(reads the catalog); rollback: SHARE UPDATE EXCLUSIVE (writes go on)"})
            .rollback_locks_first({{table, "SHARE UPDATE EXCLUSIVE"}})
            .access("none; rollback: scans table to validate the restored CHECKs"));
  }

  Step s;
  s.id = drop_id;
  s.phase = Phase::kCleanup;
  s.description = "drop column " + col + (op.down ? "" : " (its data is gone for good)");
  s.sql = "ALTER TABLE " + table + " DROP COLUMN IF EXISTS " + col + ";\n";
  if (op.down) {
    // Back NOT NULL if it was: a non-null, non-volatile default fills
    // existing rows without a rewrite and without a scan. Then its own
    // default, and its CHECK constraints NOT VALID (validated by the step
    // before, rolled back next).
    s.rollback_sql = with_definition(
        spec.name, drop_id,
        "  EXECUTE format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS %I %s%s DEFAULT (%s)', " + t +
            ", " + quote_literal(op.column) + ", " + quote_literal(*op.type) +
            ",\n"
            "                 CASE WHEN (d->>'not_null')::boolean THEN ' NOT NULL' ELSE '' END, " +
            quote_literal(*op.down) +
            ");\n"
            "  IF d->>'default' IS NOT NULL THEN\n"
            "    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %s', " +
            t + ", " + quote_literal(op.column) +
            ", d->>'default');\n"
            "  ELSE\n"
            "    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', " +
            t + ", " + quote_literal(op.column) +
            ");\n"
            "  END IF;\n"
            "  FOR c IN SELECT * FROM jsonb_array_elements(coalesce(d->'checks', '[]')) LOOP\n"
            "    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = " +
            t +
            "::regclass\n"
            "                   AND conname = c->>'name') THEN\n"
            "      EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s NOT VALID', " +
            t +
            ", c->>'name', c->>'def');\n"
            "    END IF;\n"
            "  END LOOP;\n");
    s.description += "; a rollback brings it back with `down`, its NOT NULL, default and CHECKs";
  } else {
    s.reversible = false;
  }
  s.lock = StepLock::metadata_only();
  s.table_access = "none (space is reclaimed by later updates and VACUUM)";
  out.push_back(s);
}

std::optional<DropColumn> parse_drop_column(SpecReader& r, const YAML::Node& n) {
  const std::string w = "drop_column";
  if (!r.open_operation(n, w, schema_keys("drop_column"))) return std::nullopt;
  const size_t before = r.errors.size();
  DropColumn d;
  r.table_ref(n, w, d.schema, d.table);
  r.identifier(n, "column", true, d.column, w);
  d.type = r.type_name(n, false, w);
  d.down = r.expression(n, "down");
  if (d.down && !d.type && r.errors.size() == before) {
    r.error(n, "drop_column: \"down\" needs \"type\", the type the column is re-created with");
  }
  return d;
}

void needs_drop_column(const DropColumn& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.needs_column(op.column);
  n.replaces.insert(op.column);
}

}  // namespace tandem
