// A plan as JSON (`tandemd plan --json`) and as text (`tandemd plan`).
#include "plan/plan_output.h"

#include <sstream>
#include <vector>

namespace tandem {

namespace {

nlohmann::json locks_json(const std::vector<TableLock>& locks) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& l : locks) out.push_back({{"table", l.table}, {"mode", l.mode}});
  return out;
}

// "LOCK TABLE a IN SHARE ROW EXCLUSIVE MODE; LOCK TABLE b IN ...", as the
// statements the executor runs before the step's SQL.
std::string locks_sql(const std::vector<TableLock>& locks,
                      const std::optional<std::string>& query) {
  std::string out;
  for (const auto& l : locks) out += "LOCK TABLE " + l.table + " IN " + l.mode + " MODE;\n";
  if (query) {
    out += "-- then LOCK TABLE each (table, mode) this query returns, in its order:\n";
    std::string line;
    std::istringstream in(*query);
    while (std::getline(in, line)) out += "--   " + line + "\n";
  }
  return out;
}

}  // namespace

nlohmann::json plan_to_json(const Plan& plan) {
  nlohmann::json phases = nlohmann::json::array();
  for (const auto& p : phase_table()) {
    nlohmann::json steps_json = nlohmann::json::array();
    for (const Step* s : plan.steps_in(p.phase)) {
      steps_json.push_back({
          {"id", s->id},
          {"kind", to_string(s->kind)},
          {"description", s->description},
          {"sql", s->sql},
          {"rollback", s->rollback_sql ? nlohmann::json(*s->rollback_sql) : nlohmann::json()},
          {"reversible", s->reversible},
          {"transactional", s->transactional},
          {"lock", s->lock.to_string()},
          {"table_access", s->table_access},
      });
      if (s->generates) steps_json.back()["generates"] = true;
      if (!s->locks.empty()) steps_json.back()["locks_first"] = locks_json(s->locks);
      if (s->locks_query) steps_json.back()["locks_query"] = *s->locks_query;
      if (!s->rollback_locks.empty()) {
        steps_json.back()["rollback_locks_first"] = locks_json(s->rollback_locks);
      }
    }
    phases.push_back({{"phase", p.name},
                      {"reversible", p.reversible},
                      {"summary", p.summary},
                      {"steps", steps_json}});
  }
  return {{"name", plan.migration}, {"phases", phases}};
}

namespace {

void indent(std::ostringstream& out, const std::string& text, const std::string& pad) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out << pad << line << "\n";
}

}  // namespace

std::string plan_to_text(const Plan& plan) {
  std::ostringstream out;
  out << "migration " << plan.migration << ": " << plan.steps.size() << " steps\n";
  for (const auto& p : phase_table()) {
    auto in_phase = plan.steps_in(p.phase);
    out << "\nphase " << p.name << (p.reversible ? "" : " (irreversible)") << " - " << p.summary
        << "\n";
    if (in_phase.empty()) out << "  (no steps)\n";
    for (const Step* s : in_phase) {
      out << "  step " << s->id << " [" << to_string(s->kind)
          << (s->transactional ? "" : ", outside a transaction") << "]: " << s->description << "\n";
      out << "    lock: " << s->lock.to_string() << "\n    table: " << s->table_access
          << (s->generates ? "\n    sql (runs each statement this query returns):\n"
                           : "\n    sql:\n");
      indent(out, locks_sql(s->locks, s->locks_query) + s->sql, "      ");
      if (!s->rollback_sql) {
        out << "    rollback: none - irreversible\n";
      } else if (s->rollback_sql->empty()) {
        out << "    rollback: nothing to undo\n";
      } else {
        out << "    rollback:\n";
        indent(out, locks_sql(s->rollback_locks, s->locks_query) + *s->rollback_sql, "      ");
      }
    }
  }
  return out.str();
}

std::string markdown_cell(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string plan_to_markdown(const Plan& plan) {
  std::ostringstream out;
  std::vector<std::string> irreversible;
  for (const auto& s : plan.steps) {
    if (!s.rollback_sql) irreversible.push_back("`" + s.id + "` (" + phase_name(s.phase) + ")");
  }
  out << "### tandem plan: `" << plan.migration << "`\n\n" << plan.steps.size() << " steps. ";
  if (irreversible.empty()) {
    out << "Every step can be rolled back.\n\n";
  } else {
    out << "**Irreversible** (after them the migration can only go forward): ";
    for (size_t i = 0; i < irreversible.size(); ++i) out << (i ? ", " : "") << irreversible[i];
    out << ".\n\n";
  }
  out << "| phase | step | what it does | lock | the table meanwhile | rollback |\n"
         "|---|---|---|---|---|---|\n";
  for (const auto& p : phase_table()) {
    for (const Step* s : plan.steps_in(p.phase)) {
      const std::string rollback = !s->rollback_sql           ? "**irreversible**"
                                   : s->rollback_sql->empty() ? "nothing to undo"
                                                              : "yes";
      out << "| " << p.name << " | `" << s->id << "`" << (s->rollback_sql ? "" : " ⚠️") << " | "
          << markdown_cell(s->description) << " | " << markdown_cell(s->lock.to_string()) << " | "
          << markdown_cell(s->table_access) << " | " << rollback << " |\n";
    }
  }
  out << "\n<details><summary>SQL of each step</summary>\n";
  for (const auto& s : plan.steps) {
    const std::string sql = locks_sql(s.locks, s.locks_query) + s.sql;
    // A fence longer than any run of backticks in the SQL.
    std::string fence = "```";
    while (sql.find(fence) != std::string::npos) fence += "`";
    out << "\n`" << s.id << "` (" << phase_name(s.phase) << ")"
        << (s.generates ? ", runs each statement this query returns" : "") << ":\n\n"
        << fence << "sql\n"
        << sql << (sql.empty() || sql.back() == '\n' ? "" : "\n") << fence << "\n";
  }
  out << "\n</details>\n";
  return out.str();
}

}  // namespace tandem
