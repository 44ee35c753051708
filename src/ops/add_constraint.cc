// add_constraint: CHECK and FOREIGN KEY are added NOT VALID (a brief lock, no
// scan: new writes are checked from then on) and validated later under a lock
// that lets reads and writes go on. UNIQUE is built as a unique index
// concurrently and attached as the constraint.
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/index_build.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"
#include "util/text.h"

namespace tandem {

void plan_unique_via_index(const std::string& id, const std::string& schema,
                           const std::string& table_name, const std::string& constraint,
                           const std::vector<std::string>& columns, Phase build, Phase attach,
                           std::vector<Step>& out) {
  const std::string table = qualified(schema, table_name);
  const std::string name = quote_ident(constraint);
  const std::string index = qualified(schema, constraint);
  std::vector<std::string> cols;
  for (const auto& c : columns) cols.push_back(quote_ident(c));
  Step s;
  s.id = id + "build_unique_index";
  s.phase = build;
  s.description = "build the unique index " + index + " concurrently";
  s.sql = "CREATE UNIQUE INDEX CONCURRENTLY " + name + " ON " + table + " (" + join(cols, ", ") +
          ");\n";
  s.rollback_sql = "DROP INDEX CONCURRENTLY IF EXISTS " + index + ";\n";
  s.lock = {LockMode::kShareUpdateExclusive, "(reads and writes go on; waits for older writers)"};
  s.table_access = "scans table twice";
  make_index_build_idempotent(s, index);
  out.push_back(s);

  s = Step{};
  s.id = id + "attach_unique_index";
  s.phase = attach;
  s.description = "make the index the constraint " + name;
  s.sql =
      "ALTER TABLE " + table + " ADD CONSTRAINT " + name + " UNIQUE USING INDEX " + name + ";\n";
  s.rollback_sql = "ALTER TABLE " + table + " DROP CONSTRAINT IF EXISTS " + name + ";\n";
  s.lock = StepLock::metadata_only();
  s.table_access = "none";
  out.push_back(s);
}

void plan_add_constraint(const Spec& spec, int index, const AddConstraint& op,
                         std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  const std::string name = quote_ident(op.name);
  std::vector<std::string> prechecks = {checks::table_exists(table),
                                        checks::plain_or_partitioned_table("add_constraint"),
                                        checks::constraint_absent(op.name)};
  if (op.kind == AddConstraint::Kind::kUnique) {
    prechecks.push_back(checks::not_partitioned(checks::kPartitionedUnique));
    prechecks.push_back(checks::relation_absent(op.schema, op.name));
  }
  if (op.kind == AddConstraint::Kind::kForeignKey) {
    prechecks.push_back(checks::not_partitioned(checks::kPartitionedForeignKey));
    prechecks.push_back(checks::referenced_table_exists(op.references));
    if (op.orphans == AddConstraint::Orphans::kFail) {
      prechecks.push_back(checks::no_orphans(
          table, op.columns, op.references, op.referenced_columns,
          "VALIDATE would fail on them after the backfill. Fix or remove them first, or give "
          "orphans: set_null or orphans: delete"));
    } else {
      prechecks.push_back(checks::has_walkable_key());
    }
    if (op.orphans == AddConstraint::Orphans::kSetNull) {
      for (const auto& c : op.columns) {
        prechecks.push_back(
            "SELECT format('column %I of %s is NOT NULL: orphans: set_null "
            "cannot clear it; give orphans: delete', attname, rel)\n"
            "  FROM t JOIN pg_attribute a ON a.attrelid = t.rel AND a.attname = " +
            quote_literal(c) + " AND a.attnotnull");
      }
    }
  }
  out.push_back(checks::precheck_step(id + "precheck",
                                      "check that constraint " + name + " can be added to " + table,
                                      table, prechecks));

  if (op.kind == AddConstraint::Kind::kUnique) {
    plan_unique_via_index(id, op.schema, op.table, op.name, op.columns, Phase::kPrepare,
                          Phase::kBackfill, out);
    return;
  }

  std::string definition;
  if (op.kind == AddConstraint::Kind::kCheck) {
    definition = "CHECK (" + op.check + ")";
    plan_constraint_not_valid(
        id, table, op.name, definition, {LockMode::kAccessExclusive, "(brief: no scan)"},
        StepLock::reads_and_writes_go_on(), Phase::kPrepare, Phase::kBackfill, out);
    return;
  }
  std::vector<std::string> cols, refs;
  for (const auto& c : op.columns) cols.push_back(quote_ident(c));
  for (const auto& c : op.referenced_columns) refs.push_back(quote_ident(c));
  definition = "FOREIGN KEY (" + join(cols, ", ") + ") REFERENCES " + op.references + " (" +
               join(refs, ", ") + ")" + (op.on_delete.empty() ? "" : " ON DELETE " + op.on_delete);
  plan_constraint_not_valid(id, table, op.name, definition,
                            {LockMode::kShareRowExclusive, "on both tables (brief: no scan)"},
                            {LockMode::kShareUpdateExclusive,
                             "; ROW SHARE on the referenced table (reads and writes go on)"},
                            Phase::kPrepare, Phase::kBackfill, out, op.references);
  if (op.orphans != AddConstraint::Orphans::kFail) {
    // Before VALIDATE, after the NOT VALID constraint: no new orphan can
    // appear by then, so one pass finds them all.
    std::vector<std::string> nulls;
    for (const auto& c : op.columns) nulls.push_back(quote_ident(c) + " = NULL");
    const std::string orphan = checks::orphan_row(op.columns, op.references, op.referenced_columns);
    const bool remove = op.orphans == AddConstraint::Orphans::kDelete;
    BatchWork work{table, remove ? "" : join(nulls, ", "), "", orphan,
                   remove ? "DELETE FROM " + table + " AS _row WHERE " + kBatchRange : ""};
    Step fix = irreversible_batch_step(
        id + "fix_orphans",
        std::string(remove ? "delete" : "set NULL the foreign key of") + " the rows of " + table +
            " whose parent in " + op.references + " is missing (irreversible)",
        work, spec.settings.batch_size,
        remove ? "deletes the rows without a parent" : "updates the rows without a parent");
    out.insert(out.end() - 1, std::move(fix));  // before validate
  }
}

void plan_constraint_not_valid(const std::string& id, const std::string& table,
                               const std::string& constraint, const std::string& definition,
                               const StepLock& add_lock, const StepLock& validate_lock, Phase add,
                               Phase validate, std::vector<Step>& out,
                               const std::string& referenced) {
  const std::string name = quote_ident(constraint);
  Step s;
  s.id = id + "add_not_valid";
  s.phase = add;
  s.description = "add " + name + " NOT VALID: new writes are checked from now on";
  s.sql = "ALTER TABLE " + table + " ADD CONSTRAINT " + name + " " + definition + " NOT VALID;\n";
  s.rollback_sql = "ALTER TABLE " + table + " DROP CONSTRAINT IF EXISTS " + name + ";\n";
  if (!referenced.empty() && referenced != table) {
    // A foreign key locks both tables: adding it, SHARE ROW EXCLUSIVE;
    // dropping it, ACCESS EXCLUSIVE. ALTER TABLE would take the referencing
    // table first, while writers take the referenced one first (they write
    // or lock the parent row, then write the child): each would wait for the
    // other until lock_timeout, attempt after attempt (issue 16). Both are
    // taken first, in the writers' order.
    s.locks = {{referenced, "SHARE ROW EXCLUSIVE"}, {table, "SHARE ROW EXCLUSIVE"}};
    s.rollback_locks = {{referenced, "ACCESS EXCLUSIVE"}, {table, "ACCESS EXCLUSIVE"}};
  }
  s.lock = add_lock;
  s.table_access = "none";
  out.push_back(s);

  out.push_back(
      StepBuilder(id + "validate", validate, "validate " + name + " against the existing rows")
          .sql("ALTER TABLE " + table + " VALIDATE CONSTRAINT " + name + ";\n")
          .rollback("")  // dropping the constraint is the previous step's rollback
          .lock(validate_lock)
          .access("scans table"));
}

std::optional<AddConstraint> parse_add_constraint(SpecReader& r, const YAML::Node& n) {
  const std::string w = "add_constraint";
  if (!r.open_operation(n, w, schema_keys("add_constraint"))) return std::nullopt;
  const size_t before = r.errors.size();
  AddConstraint c;
  r.table_ref(n, w, c.schema, c.table);
  r.identifier(n, "name", true, c.name, w);
  int kinds = n["check"].IsDefined() + n["foreign_key"].IsDefined() + n["unique"].IsDefined();
  if (kinds != 1) {
    r.error(n, "add_constraint: give exactly one of \"check\", \"foreign_key\" or \"unique\"");
    return std::nullopt;
  }
  if (n["orphans"].IsDefined() && !n["foreign_key"].IsDefined()) {
    r.error(n["orphans"], "orphans: only a foreign_key has orphans");
  }
  if (n["check"].IsDefined()) {
    c.kind = AddConstraint::Kind::kCheck;
    if (auto e = r.expression(n, "check")) c.check = *e;
    if (c.check.empty() && r.errors.size() == before)
      r.error(n["check"], "check: must not be empty");
  } else if (n["unique"].IsDefined()) {
    c.kind = AddConstraint::Kind::kUnique;
    c.columns = r.string_list(n, "unique", w);
  } else {
    c.kind = AddConstraint::Kind::kForeignKey;
    c.columns = r.string_list(n, "foreign_key", w);
    std::string ref_schema = "public";
    std::string ref_table;
    r.identifier(n, "references", true, ref_table, w);
    auto dot = ref_table.find('.');
    if (dot != std::string::npos) {
      ref_schema = ref_table.substr(0, dot);
      ref_table = ref_table.substr(dot + 1);
    }
    c.references = qualified(ref_schema, ref_table);
    c.referenced_columns = r.string_list(n, "referenced_columns", w);
    r.on_delete(n, w, c.on_delete);
    r.orphans(n, w, c.orphans);
    if (c.columns.size() != c.referenced_columns.size() && r.errors.size() == before) {
      r.error(n, "add_constraint: foreign_key has " + std::to_string(c.columns.size()) +
                     " columns but referenced_columns has " +
                     std::to_string(c.referenced_columns.size()));
    }
  }
  return c;
}

void needs_add_constraint(const AddConstraint& op, Needs& n) {
  n.on_table(op.schema, op.table);
  n.adds_constraint(op.name);
  // A unique constraint takes its index's name (ADD CONSTRAINT ... USING INDEX).
  if (op.kind == AddConstraint::Kind::kUnique) n.adds_relation(op.schema, op.name);
  if (op.kind == AddConstraint::Kind::kForeignKey) n.needs.push_back(op.references);
  if (op.kind == AddConstraint::Kind::kCheck) n.reads(op.check, true);
  for (const auto& c : op.columns) {
    n.needs_column(c);
    n.attaches.insert(c);
  }
}

}  // namespace tandem
