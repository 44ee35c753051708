#include "plan/checks.h"

#include "plan/needs.h"
#include "plan/steps.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem::checks {

std::string table_exists(const std::string& table) {
  return "SELECT format('table %s does not exist', " + quote_literal(table) +
         ") FROM t WHERE rel IS NULL";
}

std::string referenced_table_exists(const std::string& table) {
  return "SELECT format('referenced table %s does not exist', " + quote_literal(table) +
         ") WHERE to_regclass(" + quote_literal(table) + ") IS NULL";
}

std::string orphan_row(const std::vector<std::string>& columns, const std::string& parent,
                       const std::vector<std::string>& parent_columns) {
  std::vector<std::string> present, match;
  for (size_t i = 0; i < columns.size(); ++i) {
    const std::string c = "_row." + quote_ident(columns[i]);
    present.push_back(c + " IS NOT NULL");
    match.push_back("_p." + quote_ident(parent_columns[i]) + " = " + c);
  }
  return join(present, " AND ") + " AND NOT EXISTS (SELECT 1 FROM " + parent + " AS _p WHERE " +
         join(match, " AND ") + ")";
}

namespace {

// A guard: column `c` of relation `rel` (an SQL expression) exists.
std::string has_column(const std::string& rel, const std::string& c) {
  return "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = " + rel +
         " AND attname = " + quote_literal(c) + " AND NOT attisdropped)";
}

// "FROM t CROSS JOIN LATERAL (...) o ... WHERE o.n > 0": o.n and o.sample
// from `scan` (a query giving n and, optionally, sample), run through
// query_to_xml, so that it is parsed only once every guard holds (the
// tables and columns it reads exist; the checks beside it report what is
// missing).
std::string when_scan_finds(const std::string& scan, const std::vector<std::string>& guards) {
  return "  FROM t CROSS JOIN LATERAL (\n"
         "    SELECT (xpath('/row/n/text()', x))[1]::text::bigint AS n,\n"
         "           (xpath('/row/sample/text()', x))[1]::text AS sample\n"
         "      FROM query_to_xml(CASE WHEN " +
         join(guards, "\n                                AND ") + "\n      THEN " +
         quote_literal(scan) +
         "\n      ELSE 'SELECT 0 AS n' END, false, true, '') x) o\n"
         " WHERE o.n > 0";
}

}  // namespace

std::string no_orphans(const std::string& table, const std::vector<std::string>& columns,
                       const std::string& parent, const std::vector<std::string>& parent_columns,
                       const std::string& then) {
  std::vector<std::string> values;
  for (const auto& c : columns) values.push_back("_row." + quote_ident(c) + "::text");
  const std::string value =
      values.size() == 1 ? values[0] : "'(' || concat_ws(', ', " + join(values, ", ") + ") || ')'";
  const std::string scan = "SELECT count(*) AS n, array_to_string((array_agg(DISTINCT " + value +
                           "))[1:5], ', ') AS sample FROM " + table + " AS _row WHERE " +
                           orphan_row(columns, parent, parent_columns);
  const std::string parent_rel = "to_regclass(" + quote_literal(parent) + ")";
  std::vector<std::string> guards = {"rel IS NOT NULL", parent_rel + " IS NOT NULL"};
  for (const auto& c : columns) guards.push_back(has_column("rel", c));
  for (const auto& c : parent_columns) guards.push_back(has_column(parent_rel, c));
  return "SELECT format('%s rows of %s have no parent in %s (missing: %s); %s', o.n, rel, " +
         quote_literal(parent) + ", o.sample, " + quote_literal(then) + ")\n" +
         when_scan_finds(scan, guards);
}

std::string no_rows_where(const std::string& table, const std::vector<std::string>& columns,
                          const std::string& predicate, const std::string& what) {
  std::vector<std::string> guards = {"rel IS NOT NULL"};
  for (const auto& c : columns) guards.push_back(has_column("rel", c));
  return "SELECT format('%s rows of %s %s', o.n, rel, " + quote_literal(what) + ")\n" +
         when_scan_finds("SELECT count(*) AS n FROM " + table + " AS _row WHERE " + predicate,
                         guards);
}

std::vector<std::string> columns_exist(const Spec& spec, const std::string& schema,
                                       const std::string& table,
                                       const std::vector<std::string>& columns) {
  std::vector<std::string> out;
  for (const auto& c : columns) {
    if (!spec_adds(spec, schema + "." + table + "." + c)) out.push_back(column_exists(c));
  }
  return out;
}

std::string plain_or_partitioned_table(const std::string& operation) {
  return "SELECT format('%s is %s; " + operation +
         " works on plain and partitioned tables', rel,\n"
         "              CASE c.relkind WHEN 'v' THEN 'a view' WHEN 'm' THEN 'a materialized view'\n"
         "                             WHEN 'f' THEN 'a foreign table'\n"
         "                             ELSE 'not a table (relkind ' || c.relkind::text || ')'"
         " END)\n"
         "  FROM t JOIN pg_class c ON c.oid = t.rel WHERE c.relkind NOT IN ('r', 'p')\n"
         "UNION ALL\n"
         "SELECT format('partition %s of %s is a foreign table; " +
         operation +
         " needs every partition to be a table', p.relid::regclass, rel)\n"
         "  FROM t, pg_partition_tree(t.rel) p JOIN pg_class c ON c.oid = p.relid\n"
         " WHERE c.relkind = 'f'";
}

const char* const kPartitionedForeignKey =
    "PostgreSQL before 18 cannot add a foreign key to a partitioned table NOT VALID, and adding "
    "it validated scans every partition while writes wait: add it to each partition with "
    "add_constraint";
const char* const kPartitionedUnique =
    "a unique constraint of a partitioned table must include the partition key and cannot be "
    "made from an index built beforehand: build a unique index over the columns and the "
    "partition key with create_index (unique: true), partition by partition";

std::string not_partitioned(const std::string& why) {
  return "SELECT format('%s is a partitioned table; %s', rel, " + quote_literal(why) +
         ")\n  FROM t JOIN pg_class c ON c.oid = t.rel WHERE c.relkind = 'p'";
}

std::string not_in_partition_key(const std::string& column, const std::string& why) {
  const std::string col = quote_literal(column);
  // A column of the key itself (partattrs), or one its expressions use.
  return "SELECT format('column %I is in the partition key of %s; %s', " + col +
         ", p.relid::regclass, " + quote_literal(why) +
         ")\n"
         "  FROM t, pg_partition_tree(t.rel) p\n"
         "  JOIN pg_partitioned_table k ON k.partrelid = p.relid\n"
         "  JOIN pg_attribute a ON a.attrelid = p.relid AND a.attname = " +
         col +
         "\n"
         " WHERE a.attnum = ANY (k.partattrs)\n"
         "    OR coalesce(k.partexprs::text, '') LIKE '%:varattno ' || a.attnum || ' %'";
}

std::string column_exists(const std::string& column, const std::string& what) {
  const std::string col = quote_literal(column);
  std::string role;  // a format string: its % doubled
  for (char c : what) role += c == '%' ? "%%" : std::string(1, c);
  return "SELECT format(" + quote_literal(role + " %I does not exist in table %s") + ", " + col +
         ", rel) FROM t\n"
         " WHERE rel IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = rel\n"
         "   AND attname = " +
         col + " AND attnum > 0 AND NOT attisdropped)";
}

std::string usable_key_index(const std::string& i) {
  return i + ".indisunique AND " + i + ".indisvalid AND " + i + ".indimmediate AND " + i +
         ".indpred IS NULL AND " + i + ".indexprs IS NULL\n   AND (" + i +
         ".indisprimary OR NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = " + i +
         ".indrelid AND a.attnum = ANY (" + i + ".indkey) AND NOT a.attnotnull))";
}

std::string walk_key_index(const std::string& rel) {
  return "SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = " + rel + "\n   AND " +
         usable_key_index("i") +
         "\n ORDER BY i.indisprimary DESC, i.indnatts, i.indexrelid LIMIT 1";
}

std::string has_walkable_key() {
  return "SELECT format('table %s has no primary key and no unique index over NOT NULL columns; "
         "tandem walks the table by such a key (add one first)', rel)\n"
         "  FROM t WHERE rel IS NOT NULL AND NOT EXISTS (" +
         walk_key_index("rel") + ")";
}

std::string key_is_unique(const std::vector<std::string>& columns) {
  const std::string n = std::to_string(columns.size());
  return "SELECT format('%s has no primary key or unique index over exactly (%s) with every "
         "column NOT NULL; tandem matches rows by that key', rel, " +
         quote_literal(join(columns, ", ")) +
         ")\n"
         "  FROM t WHERE rel IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_index i\n"
         "   WHERE i.indrelid = rel AND " +
         usable_key_index("i") + " AND i.indnatts = " + n +
         "\n     AND (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = rel"
         " AND a.attnum = ANY (i.indkey)\n            AND a.attname = ANY (ARRAY[" +
         quote_literals(columns) + "]::name[])) = " + n + ")";
}

std::string no_invalid_indexes() {
  return "SELECT format('index %s on %s is INVALID (left by a failed CREATE INDEX "
         "CONCURRENTLY?); drop or rebuild it first', i.indexrelid::regclass, rel)\n"
         "  FROM t JOIN pg_index i ON i.indrelid = t.rel WHERE NOT i.indisvalid";
}

std::string type_exists(const std::string& type) {
  return "SELECT format('type %s does not exist', " + quote_literal(type) +
         ")\n WHERE to_regtype(" + quote_literal(type) + ") IS NULL";
}

std::string default_fits(const std::string& column, const std::string& type) {
  // The default's type: that of the outermost node of its stored expression
  // (pg_attrdef.adbin), whose type field comes before any nested node's for
  // constants, function and operator calls and SQL value functions
  // (CURRENT_TIMESTAMP). A default of another shape is not judged here.
  const std::string col = quote_literal(column);
  const std::string new_type = "to_regtype(" + quote_literal(type) + ")";
  return "SELECT format('column %I has DEFAULT %s, of type %s, which %s does not take by "
         "assignment: cutover would fail. Drop the default (ALTER TABLE %s ALTER COLUMN %I "
         "DROP DEFAULT) and set it again after the migration',\n"
         "       a.attname, pg_get_expr(d.adbin, d.adrelid), format_type(x.typ, NULL), "
         "format_type(" +
         new_type +
         ", NULL), rel, a.attname)\n"
         "  FROM t JOIN pg_attribute a ON a.attrelid = t.rel AND a.attname = " +
         col +
         "\n  JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum\n"
         "  CROSS JOIN LATERAL (SELECT (regexp_match(d.adbin::text,\n"
         "    '^[{](?:CONST|FUNCEXPR|OPEXPR|SQLVALUEFUNCTION) [^{]*?:(?:consttype|funcresulttype"
         "|opresulttype|type) ([0-9]+)'))[1]::oid AS typ) x\n"
         " WHERE x.typ IS NOT NULL AND " +
         new_type + " IS NOT NULL AND x.typ <> " + new_type +
         "\n   AND NOT EXISTS (SELECT 1 FROM pg_cast WHERE castsource = x.typ AND casttarget = " +
         new_type + " AND castcontext IN ('a', 'i'))";
}

std::string columns_absent(const std::vector<std::string>& columns) {
  return "SELECT format('column %I already exists in %s; an earlier migration left it behind: "
         "roll that migration back or drop the column', a.attname, rel)\n"
         "  FROM t JOIN pg_attribute a ON a.attrelid = t.rel\n"
         " WHERE a.attname IN (" +
         quote_literals(columns) + ") AND NOT a.attisdropped";
}

std::string relation_absent(const std::string& schema, const std::string& name) {
  const std::string q = quote_literal(qualified(schema, name));
  return "SELECT format('%s already exists', to_regclass(" + q + "))\n WHERE to_regclass(" + q +
         ") IS NOT NULL";
}

std::string constraint_absent(const std::string& name) {
  return "SELECT format('constraint %I already exists on %s', conname, rel)\n"
         "  FROM t JOIN pg_constraint c ON c.conrelid = t.rel WHERE c.conname = " +
         quote_literal(name);
}

std::string constraint_exists(const std::string& name) {
  const std::string con = quote_literal(name);
  return "SELECT format('%s has no constraint %I', rel, " + con +
         ")\n"
         "  FROM t WHERE rel IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_constraint\n"
         "                                                WHERE conrelid = t.rel AND conname = " +
         con + ")";
}

std::string column_nullable(const std::string& column) {
  return "SELECT format('column %I of %s is already NOT NULL', attname, rel)\n"
         "  FROM t JOIN pg_attribute a ON a.attrelid = t.rel\n"
         " WHERE a.attname = " +
         quote_literal(column) + " AND a.attnotnull";
}

std::string takes_default(const std::string& column) {
  return "SELECT format('column %I of %s is an identity or generated column; its value does not "
         "come from a default', attname, rel)\n"
         "  FROM t JOIN pg_attribute a ON a.attrelid = t.rel AND a.attname = " +
         quote_literal(column) + "\n WHERE a.attidentity <> '' OR a.attgenerated <> ''";
}

std::string column_restorable(const std::string& column, const std::string& type,
                              const std::string& down) {
  const std::string col = quote_literal(column);
  return "SELECT format('column %I of %s is %s: a rollback could not bring it back as it "
         "was; drop it without `down` (irreversible), or change that first', a.attname, rel,\n"
         "       CASE WHEN a.attidentity <> '' THEN 'an identity column'\n"
         "            WHEN a.attgenerated <> '' THEN 'a generated column'\n"
         "            ELSE 'the owner of a sequence its default uses' END)\n"
         "  FROM t JOIN pg_attribute a ON a.attrelid = t.rel AND a.attname = " +
         col +
         "\n WHERE a.attidentity <> '' OR a.attgenerated <> ''\n"
         "    OR EXISTS (SELECT 1 FROM pg_depend d WHERE d.refclassid = 'pg_class'::regclass\n"
         "                 AND d.refobjid = t.rel AND d.refobjsubid = a.attnum\n"
         "                 AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')\n"
         "                 AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S')\n"
         "UNION ALL\n"
         "SELECT format('column %I of %s is NOT NULL, and `down` (%s) gives NULL: a rollback "
         "could not bring it back NOT NULL', a.attname, rel, " +
         quote_literal(down) +
         ")\n"
         "  FROM t JOIN pg_attribute a ON a.attrelid = t.rel AND a.attname = " +
         col + "\n WHERE a.attnotnull AND (SELECT (" + down + ")::" + type + ") IS NULL";
}

namespace {

// What refusals of a column's dependents share: the dependent named (a
// view by its name), and the rows of pg_depend on column `col` (quoted) in
// `d`, the column in `a`, but its default and its sequence.
constexpr const char* kDependentName =
    "       CASE WHEN d.classid = 'pg_rewrite'::regclass\n"
    "            THEN 'view ' || (SELECT ev_class::regclass::text FROM pg_rewrite\n"
    "                              WHERE oid = d.objid)\n"
    "            ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END,\n";

std::string dependents_of(const std::string& col) {
  return "  FROM t JOIN pg_attribute a ON a.attrelid = t.rel AND a.attname = " + col +
         "\n"
         "  JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.rel\n"
         "                  AND d.refobjsubid = a.attnum\n"
         " WHERE d.classid <> 'pg_attrdef'::regclass\n"
         "   AND NOT (d.classid = 'pg_class'::regclass\n"
         "            AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S')";
}

}  // namespace

std::string no_dependents(const std::string& column, const std::string& doing, bool allow_indexes) {
  const std::string col = quote_literal(column);
  std::string sql = "SELECT format('%s depends on column %I; tandem cannot " + doing +
                    " a column that %s uses yet: drop it and recreate it after the migration',\n" +
                    kDependentName + "       " + col +
                    ",\n"
                    "       CASE WHEN d.classid = 'pg_rewrite'::regclass THEN 'a view'\n"
                    "            WHEN d.classid = 'pg_class'::regclass AND d.objid <> t.rel\n"
                    "              THEN 'an index' ELSE 'another object' END)\n" +
                    dependents_of(col);
  if (allow_indexes) {
    // DROP COLUMN removes the column's own indexes and constraints with it.
    sql +=
        "\n   AND NOT (d.classid = 'pg_class'::regclass AND d.deptype = 'a')"
        "\n   AND d.classid <> 'pg_constraint'::regclass";
  }
  return sql;
}

std::string only_carried_dependents(const std::string& column) {
  const std::string col = quote_literal(column);
  const std::string in_expression =
      "(':varattno ' || a.attnum || ' ')";  // a Var of the column in a node tree
  return std::string(
             "SELECT format('%s uses column %I%s; tandem cannot carry it over to the new "
             "column: drop it and create it again after the migration',\n") +
         kDependentName + "       " + col +
         ",\n"
         "       CASE WHEN (SELECT relkind FROM pg_class WHERE oid = t.rel) = 'p'\n"
         "              THEN ' (tandem carries indexes and constraints over to the new column of "
         "a plain table, not yet of a partitioned one)'\n"
         "            WHEN d.classid = 'pg_class'::regclass\n"
         "              THEN ' in an expression or a predicate, or under an operator class "
         "that is not its type''s default'\n"
         "            WHEN d.classid = 'pg_constraint'::regclass\n"
         "              THEN ' (an exclusion constraint, or a foreign key of a partitioned "
         "table)'\n"
         "            ELSE '' END)\n" +
         dependents_of(col) +
         "\n"
         "   AND NOT (d.classid = 'pg_class'::regclass AND EXISTS (\n"
         "     SELECT 1 FROM pg_index i WHERE i.indexrelid = d.objid\n"
         "        AND (SELECT relkind FROM pg_class WHERE oid = i.indrelid) = 'r'\n"
         "        AND a.attnum = ANY (i.indkey)\n"
         "        AND coalesce(i.indexprs::text, '') NOT LIKE '%' || " +
         in_expression +
         " || '%'\n"
         "        AND coalesce(i.indpred::text, '') NOT LIKE '%' || " +
         in_expression +
         " || '%'\n"
         "        AND (SELECT opcdefault FROM pg_opclass\n"
         "              WHERE oid = i.indclass[array_position(i.indkey::int2[], a.attnum)])\n"
         "        AND NOT EXISTS (SELECT 1 FROM pg_constraint x WHERE x.conindid = i.indexrelid\n"
         "                           AND x.contype = 'x')))\n"
         "   AND NOT (d.classid = 'pg_constraint'::regclass AND EXISTS (\n"
         "     SELECT 1 FROM pg_constraint c WHERE c.oid = d.objid\n"
         "        AND c.contype IN ('p', 'u', 'f', 'c') AND c.conparentid = 0\n"
         "        AND (SELECT relkind FROM pg_class WHERE oid = c.conrelid) = 'r'))";
}

Step precheck_step(const std::string& id, const std::string& description, const std::string& table,
                   const std::vector<std::string>& checks) {
  return StepBuilder(id, Phase::kPrepare, description)
      .kind(StepKind::kPrecheck)
      .sql("WITH t AS (SELECT to_regclass(" + quote_literal(table) + ") AS rel)\n" +
           join(checks, "\nUNION ALL\n"))
      .rollback("")
      .lock(StepLock{LockMode::kNone, "(catalog reads)"})
      .access("none");
}

}  // namespace tandem::checks
