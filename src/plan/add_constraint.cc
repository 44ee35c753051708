// add_constraint: CHECK and FOREIGN KEY are added NOT VALID (a brief lock, no
// scan: new writes are checked from then on) and validated later under a lock
// that lets reads and writes go on. UNIQUE is built as a unique index
// concurrently and attached as the constraint.
#include "plan/checks.h"
#include "plan/index_build.h"
#include "plan/operations.h"
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
  s.lock = "SHARE UPDATE EXCLUSIVE (reads and writes go on; waits for older writers)";
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
  s.lock = "ACCESS EXCLUSIVE (brief: metadata only)";
  s.table_access = "none";
  out.push_back(s);
}

void plan_add_constraint(const Spec&, int index, const AddConstraint& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  const std::string name = quote_ident(op.name);
  std::vector<std::string> prechecks = {checks::table_exists(table),
                                        checks::plain_table("add_constraint"),
                                        checks::constraint_absent(op.name)};
  if (op.kind == AddConstraint::Kind::kUnique) {
    prechecks.push_back(checks::relation_absent(op.schema, op.name));
  }
  if (op.kind == AddConstraint::Kind::kForeignKey) {
    prechecks.push_back(checks::referenced_table_exists(op.references));
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
    plan_constraint_not_valid(id, table, op.name, definition, "ACCESS EXCLUSIVE (brief: no scan)",
                              "SHARE UPDATE EXCLUSIVE (reads and writes go on)", Phase::kPrepare,
                              Phase::kBackfill, out);
    return;
  }
  std::vector<std::string> cols, refs;
  for (const auto& c : op.columns) cols.push_back(quote_ident(c));
  for (const auto& c : op.referenced_columns) refs.push_back(quote_ident(c));
  definition = "FOREIGN KEY (" + join(cols, ", ") + ") REFERENCES " + op.references + " (" +
               join(refs, ", ") + ")" + (op.on_delete.empty() ? "" : " ON DELETE " + op.on_delete);
  plan_constraint_not_valid(
      id, table, op.name, definition, "SHARE ROW EXCLUSIVE on both tables (brief: no scan)",
      "SHARE UPDATE EXCLUSIVE; ROW SHARE on the referenced table (reads and writes go on)",
      Phase::kPrepare, Phase::kBackfill, out, op.references);
}

void plan_constraint_not_valid(const std::string& id, const std::string& table,
                               const std::string& constraint, const std::string& definition,
                               const std::string& add_lock, const std::string& validate_lock,
                               Phase add, Phase validate, std::vector<Step>& out,
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

  s = Step{};
  s.id = id + "validate";
  s.phase = validate;
  s.description = "validate " + name + " against the existing rows";
  s.sql = "ALTER TABLE " + table + " VALIDATE CONSTRAINT " + name + ";\n";
  s.rollback_sql = "";  // dropping the constraint is the previous step's rollback
  s.lock = validate_lock;
  s.table_access = "scans table";
  out.push_back(s);
}

}  // namespace tandem
