#include <algorithm>
#include <set>
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

namespace {

std::string rel(const std::string& schema, const std::string& table) {
  return schema + "." + table;
}

// What an operation creates (tables, "table.column") and what it relies on.
struct Needs {
  std::vector<std::string> produces;
  std::vector<std::string> needs;
};

Needs needs_of(const Operation& operation) {
  Needs n;
  std::visit(
      [&](const auto& op) {
        using T = std::decay_t<decltype(op)>;
        if constexpr (std::is_same_v<T, AddColumn>) {
          n.produces.push_back(rel(op.schema, op.table) + "." + op.column);
        }
        if constexpr (std::is_same_v<T, MoveColumn>) {
          n.produces.push_back(rel(op.to_schema, op.to_table));
        }
        if constexpr (std::is_same_v<T, CopyTable>) {
          if (op.create) n.produces.push_back(rel(op.to_schema, op.to_table));
          n.needs.push_back(rel(op.to_schema, op.to_table));
        }
        if constexpr (std::is_same_v<T, AddReference>) {
          n.produces.push_back(rel(op.schema, op.table) + "." + op.column);
          n.needs.push_back(rel(op.references_schema, op.references) + "." + op.referenced_column);
        }
        if constexpr (std::is_same_v<T, AddConstraint>) {
          if (op.kind == AddConstraint::Kind::kForeignKey) {
            n.needs.push_back(op.references);
          }
        }
        if constexpr (std::is_same_v<T, AlterColumnType> || std::is_same_v<T, CreateIndex> ||
                      std::is_same_v<T, AddConstraint> || std::is_same_v<T, SetNotNull> ||
                      std::is_same_v<T, DropColumn> || std::is_same_v<T, AddColumn> ||
                      std::is_same_v<T, MoveColumn> || std::is_same_v<T, CopyTable> ||
                      std::is_same_v<T, AddReference> || std::is_same_v<T, RenameColumn>) {
          n.needs.push_back(rel(op.schema, op.table));
        }
        if constexpr (std::is_same_v<T, SetNotNull> || std::is_same_v<T, RenameColumn> ||
                      std::is_same_v<T, AlterColumnType>) {
          n.needs.push_back(rel(op.schema, op.table) + "." + op.column);
        }
      },
      operation.op);
  return n;
}

}  // namespace

std::set<std::string> tables_touched(const Spec& spec) {
  std::set<std::string> out;
  for (const auto& o : spec.operations) {
    Needs n = needs_of(o);
    for (const auto* list : {&n.produces, &n.needs}) {
      for (const auto& thing : *list) {
        auto first = thing.find('.');
        if (first == std::string::npos) {
          out.insert("public." + thing);
        } else {
          out.insert(thing.substr(0, thing.find('.', first + 1)));
        }
      }
    }
  }
  return out;
}

std::vector<size_t> dependency_order(const Spec& spec) {
  std::vector<Needs> all;
  for (const auto& o : spec.operations) all.push_back(needs_of(o));
  auto produced_by = [&](const std::string& thing, size_t other) {
    const auto& p = all[other].produces;
    return std::find(p.begin(), p.end(), thing) != p.end();
  };
  std::vector<size_t> order;
  std::vector<bool> placed(all.size(), false);
  while (order.size() < all.size()) {
    bool progress = false;
    for (size_t i = 0; i < all.size(); ++i) {
      if (placed[i]) continue;
      bool ready = true;
      for (const auto& thing : all[i].needs) {
        for (size_t j = 0; j < all.size() && ready; ++j) {
          if (j != i && !placed[j] && produced_by(thing, j)) ready = false;
        }
      }
      if (!ready) continue;
      placed[i] = true;
      order.push_back(i);
      progress = true;
      break;  // the earliest ready operation first: spec order where nothing depends
    }
    if (!progress) {  // a cycle: the rest in spec order
      for (size_t i = 0; i < all.size(); ++i) {
        if (!placed[i]) order.push_back(i);
      }
      break;
    }
  }
  return order;
}

Plan make_plan(const Spec& spec) {
  Plan plan;
  plan.migration = spec.name;
  std::vector<Step> steps;
  for (size_t i : dependency_order(spec)) {
    const int index = static_cast<int>(i) + 1;
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
          if constexpr (std::is_same_v<T, MoveColumn>) plan_move_column(spec, index, op, steps);
          if constexpr (std::is_same_v<T, CopyTable>) plan_copy_table(spec, index, op, steps);
          if constexpr (std::is_same_v<T, AddReference>) plan_add_reference(spec, index, op, steps);
          if constexpr (std::is_same_v<T, RenameColumn>) plan_rename_column(spec, index, op, steps);
        },
        spec.operations[i].op);
  }
  // Phases run in order; within a phase, operations run in dependency order
  // (spec order where nothing depends on a later operation).
  std::stable_sort(steps.begin(), steps.end(), [](const Step& a, const Step& b) {
    return static_cast<int>(a.phase) < static_cast<int>(b.phase);
  });
  std::set<std::string> ids;
  for (const auto& st : steps) {
    if (!ids.insert(st.id).second) {
      throw Error(ErrorKind::kFatal, "internal error: two steps have the id " + st.id);
    }
  }
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
