#include "fleet/fleet_status.h"

#include <algorithm>
#include <iomanip>
#include <map>
#include <sstream>

#include "db/connection.h"
#include "engine/state_store.h"
#include "util/json.h"
#include "util/text.h"

namespace tandem {
namespace {

std::string age(double seconds) {
  const long long s = static_cast<long long>(seconds);
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  return std::to_string(s / 3600) + "h";
}

std::string text_of(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : ""; }

}  // namespace

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

std::optional<nlohmann::json> fleet_status_json(Connection& control, const std::string& fleet) {
  if (StateStore::schema_version(control) < kFleetSchemaVersion) return std::nullopt;
  FleetStore store(fleet);
  const auto record = store.record(control);
  if (!record) return std::nullopt;
  const std::vector<FleetTargetRow> rows = store.targets(control);
  const std::map<std::string, std::string> pauses = store.pauses(control);
  const auto paused_by = [&](const std::string& wave) {
    auto it = pauses.find(wave);
    return text_or_null(it == pauses.end() ? std::string() : it->second);
  };
  nlohmann::json j = {{"version", 1},
                      {"name", fleet},
                      {"migration", record->migration},
                      {"state", fleet_state_of(rows)},
                      {"reference", text_or_null(record->reference_target)},
                      {"cleanup_approved_by", text_or_null(record->cleanup_approved_by)},
                      {"paused_by", paused_by("")}};
  j["waves"] = nlohmann::json::array();
  j["targets"] = nlohmann::json::array();
  for (const auto& r : rows) {
    if (j["waves"].empty() || j["waves"].back()["name"] != r.wave) {
      j["waves"].push_back({{"name", r.wave},
                            {"states", nlohmann::json::object()},
                            {"paused_by", paused_by(r.wave)}});
    }
    auto& states = j["waves"].back()["states"];
    states[r.state] = states.value(r.state, 0) + 1;
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
                            {"since_seconds", r.since_seconds},
                            {"started_at", text_or_null(r.started_at)},
                            {"ready_at", text_or_null(r.ready_at)},
                            {"cutover_started_at", text_or_null(r.cutover_started_at)},
                            {"cut_over_at", text_or_null(r.cut_over_at)},
                            {"completed_at", text_or_null(r.completed_at)}});
  }
  return j;
}

nlohmann::json fleet_switch(Connection& control, const FleetSpec& fleet, const std::string& action,
                            const std::string& wave, const std::string& target,
                            const std::string& actor) {
  if (!wave.empty() && std::none_of(fleet.waves.begin(), fleet.waves.end(),
                                    [&](const FleetWave& w) { return w.name == wave; })) {
    throw Error(ErrorKind::kBadInput, "fleet " + fleet.name + " has no wave " + wave);
  }
  FleetStore store(fleet.name);
  if (StateStore::schema_version(control) < kFleetSchemaVersion || !store.record(control)) {
    throw Error(ErrorKind::kBadInput,
                "fleet " + fleet.name + " has not run against this control database");
  }
  const std::string what =
      wave.empty() ? "fleet " + fleet.name : "wave " + wave + " of fleet " + fleet.name;
  nlohmann::json out = {{"fleet", fleet.name}, {"action", action}};
  if (!wave.empty()) out["wave"] = wave;
  if (action == "pause") {
    const bool now = store.pause(control, wave, actor);
    out["paused"] = true;
    out["message"] = now ? what +
                               " is paused: its targets stop at their next safe point and none "
                               "starts until it is resumed"
                         : what + " was paused already";
  } else if (action == "resume") {
    const int n = store.resume(control, wave, actor);
    out["lifted"] = n;
    out["message"] = n == 0 ? what + " was not paused; nothing to resume"
                            : what + ": " + std::to_string(n) + (n == 1 ? " pause" : " pauses") +
                                  " lifted; its runners go on";
  } else if (action == "retry") {
    const int n = store.retry(control, target, actor);
    out["retried"] = n;
    out["message"] = "fleet " + fleet.name + ": " + std::to_string(n) +
                     (n == 1 ? " target" : " targets") +
                     " failed or held set to pending; every runner of the fleet takes " +
                     (n == 1 ? "it" : "them") + " up at its next poll";
  } else if (action == "approve") {
    store.approve_cleanup(control, actor);
    out["approved"] = "cleanup";
    out["message"] = "fleet " + fleet.name +
                     ": cleanup approved; each target cleans up once every target is cut over";
  } else {
    throw Error(ErrorKind::kBadInput, "fleet: unknown action " + action);
  }
  return out;
}

std::string fleet_status_text(const nlohmann::json& s) {
  std::ostringstream out;
  out << "fleet " << text_of(s["name"]) << " (migration " << text_of(s["migration"])
      << "): " << text_of(s["state"]) << ", " << s["targets"].size() << " targets"
      << (s["paused_by"].is_string() ? "; paused by " + text_of(s["paused_by"]) : "") << "\n";
  for (const auto& w : s["waves"]) {
    std::vector<std::string> parts;
    for (auto it = w["states"].begin(); it != w["states"].end(); ++it) {
      parts.push_back(std::to_string(it.value().get<int>()) + " " + it.key());
    }
    out << "  wave " << text_of(w["name"]) << ": " << join(parts, ", ")
        << (w["paused_by"].is_string() ? "; paused by " + text_of(w["paused_by"]) : "") << "\n";
  }
  out << "\n"
      << std::left << std::setw(12) << "WAVE" << std::setw(16) << "TARGET" << std::setw(18)
      << "STATE" << std::setw(13) << "PHASE" << std::setw(12) << "ROWS" << std::setw(7) << "SINCE"
      << "NOTE\n";
  for (const auto& t : s["targets"]) {
    std::string note = t["last_error"].is_string() ? text_of(t["last_error"]) : text_of(t["owner"]);
    if (note.size() > 100) note = utf8_prefix(note, 97) + "...";
    const std::string phase = text_of(t["phase"]);
    out << std::setw(12) << text_of(t["wave"]) << std::setw(16) << text_of(t["name"])
        << std::setw(18) << text_of(t["state"]) << std::setw(13) << (phase.empty() ? "-" : phase)
        << std::setw(12) << with_commas(t["rows_done"].get<long long>()) << std::setw(7)
        << age(t["since_seconds"].get<double>()) << note << "\n";
  }
  return out.str();
}

}  // namespace tandem
