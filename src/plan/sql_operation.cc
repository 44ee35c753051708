// sql: a hand-written statement in one phase, with an optional `down`.
#include <regex>

#include "plan/index_build.h"
#include "plan/operations.h"

namespace tandem {
namespace {

// CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name: a failed attempt
// leaves an INVALID index behind, which must be dropped before trying again.
std::optional<std::string> concurrent_index_name(const std::string& sql) {
  static const std::regex kCreateIndex(
      R"(^\s*create\s+(unique\s+)?index\s+concurrently\s+(if\s+not\s+exists\s+)?)"
      R"(("[^"]+"|[a-z_][a-z0-9_$]*)(\.("[^"]+"|[a-z_][a-z0-9_$]*))?\s+on\s)",
      std::regex::icase);
  std::smatch m;
  if (!std::regex_search(sql, m, kCreateIndex)) return std::nullopt;
  return m[3].str() + m[4].str();
}

}  // namespace

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
  if (!op.transaction) {
    if (auto index = concurrent_index_name(op.up)) {
      make_index_build_idempotent(s, *index);
      s.lock = op.lock.value_or("SHARE UPDATE EXCLUSIVE (reads and writes go on)");
    }
  }
  s.table_access = "as written";
  out.push_back(s);
}

}  // namespace tandem
