// sql: a hand-written statement in one phase, with an optional `down`.
#include "plan/operations.h"

namespace tandem {

void plan_sql(const Spec&, int index, const SqlOperation& op, std::vector<Step>& out) {
  Step s;
  s.id = std::to_string(index) + ".sql";
  s.phase = op.phase;
  s.kind = StepKind::kSql;
  std::string first_line = op.up.substr(0, op.up.find('\n'));
  if (first_line.size() > 60) first_line = first_line.substr(0, 57) + "...";
  s.description = "hand-written: " + first_line;
  s.sql = op.up;
  if (s.sql.empty() || s.sql.back() != '\n') s.sql += '\n';
  s.rollback_sql = op.down;
  s.reversible = op.down.has_value();
  s.transactional = op.transaction;
  s.lock = op.lock.value_or("as written (not analysed)");
  s.table_access = "as written";
  out.push_back(s);
}

}  // namespace tandem
