#include <algorithm>
#include <cctype>
#include <iterator>
#include <map>
#include <queue>
#include <set>
#include <sstream>

#include "ops/registry.h"
#include "plan/plan_output.h"
#include "plan/steps.h"
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
    case StepKind::kShadowRead:
      return "shadow read";
  }
  return "?";
}

namespace {

Needs needs_of(const Operation& operation) {
  Needs n;
  kind_of(operation).needs(operation, n);
  return n;
}

// Refuses an operation on a table that another renames or drops, and two
// operations of which one replaces a column (alter_column_type,
// rename_column, move_column, drop_column, add_reference's drop_via) and the
// other attaches something to it or replaces it too: what the second puts on
// the column stays on the old one, which cleanup drops, or is not where the
// first expects it at cutover (issue 16).
void refuse_conflicts(const Spec& spec, const std::vector<Needs>& all) {
  std::map<std::string, std::vector<size_t>> by_table;
  for (size_t i = 0; i < all.size(); ++i) {
    if (!all[i].table.empty()) by_table[all[i].table].push_back(i);
  }
  for (const auto& [table, ops] : by_table) {
    for (size_t i : ops) {
      if (all[i].moves_table && ops.size() > 1) {
        const size_t j = ops[0] == i ? ops[1] : ops[0];
        const Operation& a = spec.operations[std::min(i, j)];
        const Operation& b = spec.operations[std::max(i, j)];
        throw Error(ErrorKind::kBadInput,
                    b.where.to_string() + ": " + operation_name(b) + " and the " +
                        operation_name(a) + " at " + a.where.to_string() + " both work on " +
                        table + ", which " + operation_name(spec.operations[i]) +
                        " takes away under that name at cutover: the other's later steps "
                        "would not find it. Run them as two migrations, one after the other");
      }
      for (const auto& column : all[i].replaces) {
        for (size_t j : ops) {
          if (j == i) continue;
          if (!all[j].attaches.count(column) && !(all[j].replaces.count(column) && j > i)) continue;
          const Operation& a = spec.operations[std::min(i, j)];
          const Operation& b = spec.operations[std::max(i, j)];
          const std::string replacer = operation_name(spec.operations[i]);
          throw Error(
              ErrorKind::kBadInput,
              b.where.to_string() + ": " + operation_name(b) + " and the " + operation_name(a) +
                  " at " + a.where.to_string() + " both change " + table + "." + column +
                  ", which " + replacer +
                  " replaces: what the other puts on the column would stay on the old one, "
                  "which cleanup drops. Run them as two migrations, one after the other" +
                  (replacer.rfind("alter_column", 0) == 0
                       ? "; or write them as one alter_column, which changes the column's "
                         "type, NOT NULL, check, uniqueness, foreign key, default, comment and "
                         "name together"
                       : ""));
        }
      }
    }
  }
}

// Refuses two operations that create the same thing under the same name (a
// column, NOT NULL on a column, a constraint, an index, table or view): both
// validate and plan, and the second then fails mid-run, or finds what it
// checks for already done by the first.
void refuse_same_names(const Spec& spec, const std::vector<Needs>& all) {
  std::map<std::string, size_t> first;
  for (size_t i = 0; i < all.size(); ++i) {
    for (const auto& name : all[i].names) {
      auto [it, fresh] = first.emplace(name, i);
      if (fresh || it->second == i) continue;
      const Operation& a = spec.operations[it->second];
      const Operation& b = spec.operations[i];
      throw Error(ErrorKind::kBadInput,
                  b.where.to_string() + ": " + operation_name(b) + " and the " + operation_name(a) +
                      " at " + a.where.to_string() + " both create " + name + ": " +
                      (name.rfind("NOT NULL", 0) == 0
                           ? "leave one of them out"
                           : "give one of them another name, or leave one of them out"));
    }
  }
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

namespace {

std::vector<Needs> needs_of_all(const Spec& spec) {
  std::vector<Needs> all;
  all.reserve(spec.operations.size());
  for (const auto& o : spec.operations) all.push_back(needs_of(o));
  return all;
}

std::vector<size_t> order_of(const std::vector<Needs>& all) {
  // Who produces what, then an edge producer → consumer for each need; the
  // earliest ready operation goes first (spec order where nothing depends).
  std::map<std::string, std::vector<size_t>> producers;
  for (size_t j = 0; j < all.size(); ++j) {
    for (const auto& thing : all[j].produces) producers[thing].push_back(j);
  }
  std::vector<std::set<size_t>> after(all.size());  // after[j]: waiting for j
  std::vector<size_t> waiting_for(all.size(), 0);
  for (size_t i = 0; i < all.size(); ++i) {
    for (const auto& thing : all[i].needs) {
      auto p = producers.find(thing);
      if (p == producers.end()) continue;
      for (size_t j : p->second) {
        if (j != i && after[j].insert(i).second) ++waiting_for[i];
      }
    }
  }
  std::priority_queue<size_t, std::vector<size_t>, std::greater<size_t>> ready;
  for (size_t i = 0; i < all.size(); ++i) {
    if (waiting_for[i] == 0) ready.push(i);
  }
  std::vector<size_t> order;
  std::vector<bool> placed(all.size(), false);
  while (!ready.empty()) {
    const size_t i = ready.top();
    ready.pop();
    placed[i] = true;
    order.push_back(i);
    for (size_t k : after[i]) {
      if (--waiting_for[k] == 0) ready.push(k);
    }
  }
  for (size_t i = 0; i < all.size(); ++i) {  // a cycle: the rest in spec order
    if (!placed[i]) order.push_back(i);
  }
  return order;
}

}  // namespace

bool spec_adds(const Spec& spec, const std::string& thing) {
  for (const auto& n : needs_of_all(spec)) {
    if (std::find(n.produces.begin(), n.produces.end(), thing) != n.produces.end()) return true;
  }
  return false;
}

std::vector<size_t> dependency_order(const Spec& spec) { return order_of(needs_of_all(spec)); }

bool plans_alike(const Spec& started, const Spec& now) {
  if (started.name != now.name) return false;
  Spec with_now_settings = started;
  with_now_settings.settings = now.settings;
  with_now_settings.settings_given = now.settings_given;
  try {
    return plan_to_json(make_plan(with_now_settings)) == plan_to_json(make_plan(now));
  } catch (const Error&) {
    return false;
  }
}

Plan make_plan(const Spec& spec) {
  const std::vector<Needs> all = needs_of_all(spec);
  refuse_same_names(spec, all);
  refuse_conflicts(spec, all);
  Plan plan;
  plan.migration = spec.name;
  std::vector<Step> steps;
  for (size_t i : order_of(all)) {
    const int index = static_cast<int>(i) + 1;
    kind_of(spec.operations[i]).plan(spec, index, spec.operations[i], steps);
  }
  // After the operations' own checks in shadow_read.
  for (const auto& pair : spec.shadow_reads) steps.push_back(shadow_read_step(spec, pair));
  // At the end of cutover, after the steps that send the new side's writes
  // back.
  for (const auto& pair : spec.shadow_reads) {
    if (!pair.write_after_cutover.empty())
      steps.push_back(shadow_read_after_cutover_step(spec, pair));
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

}  // namespace tandem
