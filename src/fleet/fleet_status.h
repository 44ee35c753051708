// A fleet's status, one shape for `tandemd fleet status --json`, the
// daemon's `fleet` command and `tandemctl fleet status` (docs/fleet.md),
// and the table people read, made from that JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "fleet/fleet_spec.h"
#include "fleet/fleet_store.h"

namespace tandem {

class Connection;

// The state store's version that holds the fleet tables.
inline constexpr int kFleetSchemaVersion = 14;

// The fleet's state, derived from its targets' (never set by hand):
// completed, rolled_back, pending, failed, waiting_approval or running.
std::string fleet_state_of(const std::vector<FleetTargetRow>& rows);

// {"version": 1, "name", "migration", "state", "reference",
// "cleanup_approved_by", "paused_by", "waves": [{"name", "states",
// "paused_by"}], "targets": [...]}; nullopt when the fleet has not run
// against this control database.
std::optional<nlohmann::json> fleet_status_json(Connection& control, const std::string& fleet);

// pause, resume, retry or approve (cleanup's) of `fleet`: rows in its
// control database that every runner of it reads at its next poll. Returns
// {"fleet", "action", "wave" (when given), "message" (a sentence), and
// "paused" | "lifted" | "retried" | "approved"}. Throws Error(kBadInput)
// for a wave the fleet does not have, or a fleet that has not run there.
nlohmann::json fleet_switch(Connection& control, const FleetSpec& fleet, const std::string& action,
                            const std::string& wave, const std::string& target,
                            const std::string& actor);

// The same as people read it: a line for the fleet, one per wave with its
// counts, then a row per target.
std::string fleet_status_text(const nlohmann::json& status);

}  // namespace tandem
