#include <algorithm>
#include <sstream>

#include "plan/operations.h"
#include "tandem/error.h"
#include "tandem/plan.h"

namespace tandem {

const char* to_string(StepKind kind) {
  switch (kind) {
    case StepKind::kPrecheck:
      return "precheck";
    case StepKind::kSql:
      return "sql";
    case StepKind::kBackfill:
      return "backfill";
    case StepKind::kVerify:
      return "verify";
  }
  return "?";
}

Plan make_plan(const Spec& spec) {
  Plan plan;
  plan.migration = spec.name;
  std::vector<Step> steps;
  int index = 0;
  for (const auto& operation : spec.operations) {
    ++index;
    std::visit(
        [&](const auto& op) {
          using T = std::decay_t<decltype(op)>;
          if constexpr (std::is_same_v<T, AlterColumnType>)
            plan_alter_column_type(spec, index, op, steps);
          if constexpr (std::is_same_v<T, SqlOperation>) plan_sql(spec, index, op, steps);
          if constexpr (std::is_same_v<T, CreateIndex>) plan_create_index(spec, index, op, steps);
          if constexpr (std::is_same_v<T, AddConstraint>)
            plan_add_constraint(spec, index, op, steps);
          if constexpr (std::is_same_v<T, SetNotNull>) plan_set_not_null(spec, index, op, steps);
          if constexpr (std::is_same_v<T, DropColumn>) plan_drop_column(spec, index, op, steps);
          if constexpr (std::is_same_v<T, AddColumn>) plan_add_column(spec, index, op, steps);
        },
        operation.op);
  }
  // Phases run in order; within a phase, operations run in spec order.
  std::stable_sort(steps.begin(), steps.end(), [](const Step& a, const Step& b) {
    return static_cast<int>(a.phase) < static_cast<int>(b.phase);
  });
  plan.steps = std::move(steps);
  return plan;
}

std::vector<const Step*> Plan::steps_in(Phase phase) const {
  std::vector<const Step*> out;
  for (const auto& s : steps) {
    if (s.phase == phase) out.push_back(&s);
  }
  return out;
}

const Step* Plan::find(const std::string& id) const {
  for (const auto& s : steps) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

nlohmann::json Plan::to_json() const {
  nlohmann::json phases = nlohmann::json::array();
  for (const auto& p : phase_table()) {
    nlohmann::json steps_json = nlohmann::json::array();
    for (const Step* s : steps_in(p.phase)) {
      steps_json.push_back({
          {"id", s->id},
          {"kind", to_string(s->kind)},
          {"description", s->description},
          {"sql", s->sql},
          {"rollback", s->rollback_sql ? nlohmann::json(*s->rollback_sql) : nlohmann::json()},
          {"reversible", s->reversible},
          {"transactional", s->transactional},
          {"lock", s->lock},
          {"table_access", s->table_access},
      });
    }
    phases.push_back({{"phase", p.name},
                      {"reversible", p.reversible},
                      {"summary", p.summary},
                      {"steps", steps_json}});
  }
  return {{"migration", migration}, {"phases", phases}};
}

namespace {

void indent(std::ostringstream& out, const std::string& text, const std::string& pad) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out << pad << line << "\n";
}

}  // namespace

std::string Plan::to_text() const {
  std::ostringstream out;
  out << "migration " << migration << ": " << steps.size() << " steps\n";
  for (const auto& p : phase_table()) {
    auto in_phase = steps_in(p.phase);
    out << "\nphase " << p.name << (p.reversible ? "" : " (irreversible)") << " - " << p.summary
        << "\n";
    if (in_phase.empty()) out << "  (no steps)\n";
    for (const Step* s : in_phase) {
      out << "  step " << s->id << " [" << to_string(s->kind)
          << (s->transactional ? "" : ", outside a transaction") << "]: " << s->description << "\n";
      out << "    lock: " << s->lock << "\n    table: " << s->table_access << "\n    sql:\n";
      indent(out, s->sql, "      ");
      if (!s->rollback_sql) {
        out << "    rollback: none - irreversible\n";
      } else if (s->rollback_sql->empty()) {
        out << "    rollback: nothing to undo\n";
      } else {
        out << "    rollback:\n";
        indent(out, *s->rollback_sql, "      ");
      }
    }
  }
  return out.str();
}

}  // namespace tandem
