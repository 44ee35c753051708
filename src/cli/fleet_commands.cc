// tandemd fleet: one migration on many databases (docs/fleet.md).
#include <cstdlib>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/exit_codes.h"
#include "db/connection.h"
#include "fleet/fleet_runner.h"
#include "fleet/fleet_spec.h"
#include "fleet/fleet_status.h"
#include "fleet/fleet_store.h"

namespace tandem {
namespace {

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

int fleet_status(const FleetArgs& a, const FleetSpec& fleet) {
  auto dsn = control_dsn(a, fleet);
  if (!dsn) return kExitUsage;
  auto conn = connect_postgres(*dsn, "tandemd fleet status");
  const auto status = fleet_status_json(*conn, fleet.name);
  if (!status) {
    std::cerr << "fleet " << fleet.name << " has not run against this control database\n";
    return kExitBadInput;
  }
  std::cout << (a.json ? status->dump(2) + "\n" : fleet_status_text(*status));
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
      auto conn = connect_postgres(*dsn, "tandemd fleet " + a.action);
      std::cout << fleet_switch(*conn, *fleet, a.action, a.wave, a.target,
                                actor("fleet " + a.action))["message"]
                       .get<std::string>()
                << "\n";
      return kExitOk;
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
    o.lease_wait = std::chrono::seconds(30);  // rollback: for runners the pause is stopping
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
