// set_comment: COMMENT ON TABLE / COLUMN at cutover (a brief SHARE UPDATE
// EXCLUSIVE lock: reads and writes go on). The comment it replaces is kept
// (tandem.undo), so a rollback sets it back; cleanup forgets it.
#include "ops/operations.h"
#include "plan/checks.h"
#include "plan/steps.h"
#include "spec/reader.h"
#include "spec/schema.h"
#include "util/ident.h"

namespace tandem {

void plan_comment_change(const std::string& id, const std::string& table,
                         const std::optional<std::string>& column,
                         const std::optional<std::string>& comment, std::vector<Step>& out) {
  const std::string target =
      column ? "COLUMN " + table + "." + quote_ident(*column) : "TABLE " + table;
  const std::string item = column ? "comment on column " + *column : "comment";
  plan_kept_change(
      id, table, item,
      "tandem.comment_statement(" + quote_literal(table) + ", " +
          (column ? quote_literal(*column) : "NULL") + ")",
      "COMMENT ON " + target + " IS " + (comment ? quote_literal(*comment) : "NULL") + ";\n",
      std::string(comment ? "set the comment on " : "remove the comment on ") +
          (column ? "column " + table + "." + quote_ident(*column) : "table " + table) +
          " (the one before is kept for a rollback)",
      StepLock{LockMode::kShareUpdateExclusive, "(brief: reads and writes go on)"}, out);
}

void plan_set_comment(const Spec& spec, int index, const SetComment& op, std::vector<Step>& out) {
  const std::string id = std::to_string(index) + ".";
  const std::string table = qualified(op.schema, op.table);
  std::vector<std::string> prechecks = {checks::table_exists(table)};
  if (op.column) {
    for (auto& c : checks::columns_exist(spec, op.schema, op.table, {*op.column}))
      prechecks.push_back(std::move(c));
  }
  const std::string target =
      op.column ? "COLUMN " + table + "." + quote_ident(*op.column) : "TABLE " + table;
  out.push_back(checks::precheck_step(
      id + "precheck", "check that " + target + " can take a comment", table, prechecks));
  plan_comment_change(id, table, op.column, op.comment, out);
}

std::optional<SetComment> parse_set_comment(SpecReader& r, const YAML::Node& n) {
  const std::string w = "set_comment";
  if (!r.open_operation(n, w, schema_keys("set_comment"))) return std::nullopt;
  SetComment c;
  r.table_ref(n, w, c.schema, c.table);
  if (n["column"].IsDefined()) {
    c.column.emplace();
    r.identifier(n, "column", true, *c.column, w);
  }
  if (auto v = r.value_or_null(n, "comment", false, true, w)) c.comment = *v;
  return c;
}

void needs_set_comment(const SetComment& op, Needs& n) {
  n.on_table(op.schema, op.table);
  if (op.column) {
    n.needs_column(*op.column);
    n.attaches.insert(*op.column);  // as set_default's
  }
  n.names.push_back(op.column ? "comment on column " + n.column(*op.column)
                              : "comment on table " + n.table);
}

}  // namespace tandem
