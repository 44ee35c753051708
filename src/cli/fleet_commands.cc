// tandemd fleet: one migration on many databases (docs/fleet.md).
#include <algorithm>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/exit_codes.h"
#include "db/connection.h"
#include "engine/state_store.h"
#include "fleet/fleet_runner.h"
#include "fleet/fleet_spec.h"
#include "fleet/fleet_store.h"
#include "util/json.h"
#include "util/text.h"

namespace tandem {
namespace {

// The state store's version that holds the fleet tables.
constexpr int kFleetSchemaVersion = 14;

bool load_fleet(const std::string& file, std::optional<FleetSpec>& fleet, std::optional<Spec>& spec,
                std::optional<Plan>& plan) {
  auto parsed = load_fleet_file(file);
  for (const auto& e : parsed.errors) std::cerr << e.to_string() << "\n";
  if (!parsed.fleet) return false;
  if (!load(parsed.fleet->migration_path, spec, plan)) return false;
  fleet = std::move(parsed.fleet);
  if (fleet->name.empty()) fleet->name = spec->name;
  return true;
}

// --control-dsn, else the fleet file's control, else TANDEM_CONTROL_DSN.
std::optional<std::string> control_dsn(const FleetArgs& a, const FleetSpec& fleet) {
  if (!a.control_dsn.empty()) return a.control_dsn;
  if (!fleet.control_dsn.empty()) return fleet.control_dsn;
  if (const char* env = std::getenv("TANDEM_CONTROL_DSN"); env && *env) return std::string(env);
  std::cerr << "tandemd fleet: no control database: give --control-dsn, the fleet file's "
               "\"control\", or TANDEM_CONTROL_DSN\n";
  return std::nullopt;
}

// The fleet's state, derived from its targets' (never set by hand).
std::string fleet_state_of(const std::vector<FleetTargetRow>& rows) {
  std::map<std::string, int> n;
  for (const auto& r : rows) ++n[r.state];
  const int all = static_cast<int>(rows.size());
  if (n["completed"] == all) return "completed";
  if (n["rolled_back"] == all) return "rolled_back";
  if (n["pending"] == all) return "pending";
  if (n["failed"] + n["held"] > 0) return "failed";
  if (n["cut_over"] + n["completed"] == all) return "waiting_approval";
  return "running";
}

std::string age(double seconds) {
  const long long s = static_cast<long long>(seconds);
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  return std::to_string(s / 3600) + "h";
}

int fleet_status(const FleetArgs& a, const FleetSpec& fleet) {
  auto dsn = control_dsn(a, fleet);
  if (!dsn) return kExitUsage;
  auto conn = connect_postgres(*dsn, "tandemd fleet status");
  FleetStore store(fleet.name);
  std::optional<FleetRecord> record;
  std::vector<FleetTargetRow> rows;
  std::map<std::string, std::string> pauses;
  if (StateStore::schema_version(*conn) >= kFleetSchemaVersion) {
    record = store.record(*conn);
    if (record) {
      rows = store.targets(*conn);
      pauses = store.pauses(*conn);
    }
  }
  const auto paused_by = [&](const std::string& wave) {
    auto it = pauses.find(wave);
    return it == pauses.end() ? std::string() : it->second;
  };
  if (!record) {
    std::cerr << "fleet " << fleet.name << " has not run against this control database\n";
    return kExitBadInput;
  }
  // Counts per wave, in wave order.
  std::vector<std::pair<std::string, std::map<std::string, int>>> waves;
  for (const auto& r : rows) {
    if (waves.empty() || waves.back().first != r.wave) waves.push_back({r.wave, {}});
    ++waves.back().second[r.state];
  }
  if (a.json) {
    nlohmann::json j = {{"version", 1},
                        {"name", fleet.name},
                        {"migration", record->migration},
                        {"state", fleet_state_of(rows)},
                        {"cleanup_approved_by", text_or_null(record->cleanup_approved_by)},
                        {"reference", text_or_null(record->reference_target)},
                        {"paused_by", text_or_null(paused_by(""))}};
    j["waves"] = nlohmann::json::array();
    for (const auto& [w, counts] : waves) {
      j["waves"].push_back(
          {{"name", w}, {"states", counts}, {"paused_by", text_or_null(paused_by(w))}});
    }
    j["targets"] = nlohmann::json::array();
    for (const auto& r : rows) {
      j["targets"].push_back({{"name", r.target},
                              {"wave", r.wave},
                              {"server", r.server},
                              {"state", r.state},
                              {"phase", text_or_null(r.phase)},
                              {"step", text_or_null(r.step)},
                              {"rows_done", r.rows_done},
                              {"last_error", text_or_null(r.last_error)},
                              {"owner", text_or_null(r.owner)},
                              {"since", r.since},
                              {"started_at", text_or_null(r.started_at)},
                              {"ready_at", text_or_null(r.ready_at)},
                              {"cutover_started_at", text_or_null(r.cutover_started_at)},
                              {"cut_over_at", text_or_null(r.cut_over_at)},
                              {"completed_at", text_or_null(r.completed_at)}});
    }
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  std::cout << "fleet " << fleet.name << " (migration " << record->migration
            << "): " << fleet_state_of(rows) << ", " << rows.size() << " targets"
            << (paused_by("").empty() ? "" : "; paused by " + paused_by("")) << "\n";
  for (const auto& [w, counts] : waves) {
    std::vector<std::string> parts;
    for (const auto& [state, n] : counts) parts.push_back(std::to_string(n) + " " + state);
    std::cout << "  wave " << w << ": " << join(parts, ", ")
              << (paused_by(w).empty() ? "" : "; paused by " + paused_by(w)) << "\n";
  }
  std::cout << "\n";
  std::ostringstream t;
  t << std::left << std::setw(12) << "WAVE" << std::setw(16) << "TARGET" << std::setw(18) << "STATE"
    << std::setw(13) << "PHASE" << std::setw(12) << "ROWS" << std::setw(7) << "SINCE"
    << "NOTE\n";
  for (const auto& r : rows) {
    std::string note = r.last_error.empty() ? r.owner : r.last_error;
    if (note.size() > 100) note = note.substr(0, 97) + "...";
    t << std::setw(12) << r.wave << std::setw(16) << r.target << std::setw(18) << r.state
      << std::setw(13) << (r.phase.empty() ? "-" : r.phase) << std::setw(12)
      << with_commas(r.rows_done) << std::setw(7) << age(r.since_seconds) << note << "\n";
  }
  std::cout << t.str();
  return kExitOk;
}

// pause, resume and retry: rows in the control database that every runner
// of the fleet reads at its next poll.
int fleet_switch(const FleetArgs& a, const FleetSpec& fleet, const std::string& dsn) {
  if (!a.wave.empty() && std::none_of(fleet.waves.begin(), fleet.waves.end(),
                                      [&](const FleetWave& w) { return w.name == a.wave; })) {
    std::cerr << "tandemd fleet " << a.action << ": fleet " << fleet.name << " has no wave "
              << a.wave << "\n";
    return kExitBadInput;
  }
  auto conn = connect_postgres(dsn, "tandemd fleet " + a.action);
  FleetStore store(fleet.name);
  if (StateStore::schema_version(*conn) < kFleetSchemaVersion || !store.record(*conn)) {
    std::cerr << "fleet " << fleet.name << " has not run against this control database\n";
    return kExitBadInput;
  }
  const std::string who = actor("fleet " + a.action);
  const std::string what =
      a.wave.empty() ? "fleet " + fleet.name : "wave " + a.wave + " of fleet " + fleet.name;
  if (a.action == "pause") {
    if (store.pause(*conn, a.wave, who)) {
      std::cout << what << " is paused: its targets stop at their next safe point and none "
                << "starts until it is resumed (tandemd fleet resume)\n";
    } else {
      std::cout << what << " was paused already\n";
    }
  } else if (a.action == "resume") {
    const int n = store.resume(*conn, a.wave, who);
    std::cout << (n == 0 ? what + " was not paused; nothing to resume"
                         : what + ": " + std::to_string(n) + (n == 1 ? " pause" : " pauses") +
                               " lifted; its runners go on")
              << "\n";
  } else {
    const int n = store.retry(*conn, a.target, who);
    std::cout << "fleet " << fleet.name << ": " << n << (n == 1 ? " target" : " targets")
              << " failed or held set to pending; a running `tandemd fleet run` takes "
              << (n == 1 ? "it" : "them") << " up at once, or run it again\n";
  }
  return kExitOk;
}

}  // namespace

int cmd_fleet(const FleetArgs& a) {
  std::optional<FleetSpec> fleet;
  std::optional<Spec> spec;
  std::optional<Plan> plan;
  if (!load_fleet(a.file, fleet, spec, plan)) return kExitBadInput;
  if (a.action == "validate") {
    std::cout << a.file << ": fleet " << fleet->name << ", migration " << spec->name << ", "
              << (fleet->targets_query.empty() ? std::to_string(fleet->targets.size()) + " targets"
                                               : std::string("targets from a query"))
              << " in " << fleet->waves.size() << " waves: valid\n";
    return kExitOk;
  }
  try {
    if (a.action == "status") return fleet_status(a, *fleet);
    auto dsn = control_dsn(a, *fleet);
    if (!dsn) return kExitUsage;
    if (a.action == "pause" || a.action == "resume" || a.action == "retry") {
      return fleet_switch(a, *fleet, *dsn);
    }
    if (a.action == "events") {
      auto conn = connect_postgres(*dsn, "tandemd fleet events");
      const nlohmann::json events = FleetStore(fleet->name).events(*conn, a.limit);
      for (const auto& e : events) {
        if (a.json) {
          std::cout << e.dump() << "\n";
          continue;
        }
        std::cout << e["at"].get<std::string>() << "  "
                  << (e["target"].is_null() ? std::string("(fleet)")
                                            : e["target"].get<std::string>())
                  << "  " << e["kind"].get<std::string>()
                  << (e["detail"].is_null() ? "" : ": " + e["detail"].get<std::string>()) << "\n";
      }
      return kExitOk;
    }
    FleetRunOptions o;
    o.control_dsn = *dsn;
    o.actor = actor("fleet " + a.action);
    o.owner = a.owner;
    o.stop = &g_stop;
    for (const auto& p : a.approve) o.approve.insert(*parse_phase(p));
    install_stop_handlers();
    FleetRunner runner(*fleet, *spec, *plan, o);
    const FleetOutcome outcome = a.action == "rollback" ? runner.rollback(a.wave) : runner.run();
    std::cerr << runner.report() << "\n";
    switch (outcome) {
      case FleetOutcome::kCompleted:
      case FleetOutcome::kRolledBack:
        return kExitOk;
      case FleetOutcome::kWaitingApproval:
        return kExitNeedsApproval;
      case FleetOutcome::kFailed:
        return kExitStepFailed;
      case FleetOutcome::kStopped:
        return kExitInterrupted;
    }
  } catch (const std::exception& e) {
    return report(e);
  }
  return kExitOk;
}

}  // namespace tandem
