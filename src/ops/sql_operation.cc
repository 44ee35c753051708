// sql: a hand-written statement in one phase, with an optional `down`.
#include <regex>

#include "ops/operations.h"
#include "plan/index_build.h"
#include "spec/reader.h"
#include "spec/schema.h"

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

void plan_sql_operation(const Spec&, int index, const SqlOperation& op, std::vector<Step>& out) {
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
  s.lock = op.lock ? StepLock::from_words(*op.lock)
                   : StepLock{LockMode::kAsWritten, "as written (not analysed)"};
  if (!op.transaction) {
    if (auto index = concurrent_index_name(op.up)) {
      make_index_build_idempotent(s, *index);
      s.lock = op.lock ? StepLock::from_words(*op.lock) : StepLock::reads_and_writes_go_on();
    }
  }
  s.table_access = "as written";
  out.push_back(s);
}

std::optional<SqlOperation> parse_sql_operation(SpecReader& r, const YAML::Node& n) {
  if (!r.open_operation(n, "sql", schema_keys("sql"))) return std::nullopt;
  SqlOperation s;
  if (!n["phase"].IsDefined()) {
    r.missing(n, "phase", "sql");
  } else if (auto p = r.phase(n["phase"], "phase")) {
    s.phase = *p;
  }
  if (auto up = r.scalar(n, "up", true, "sql")) s.up = *up;
  s.down = r.scalar(n, "down", false, "sql");
  if (auto t = r.boolean(n, "transaction")) s.transaction = *t;
  s.lock = r.scalar(n, "lock", false, "sql");
  return s;
}

void needs_sql_operation(const SqlOperation& op, Needs& n) {
  (void)op;
  (void)n;  // hand-written SQL names no table tandem could know
}

}  // namespace tandem
