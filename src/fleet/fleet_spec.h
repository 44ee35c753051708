// A fleet file (docs/fleet.md): one migration spec run on many databases
// (targets), in waves chosen by label selectors, with a control database
// that keeps each target's state under the fleet's name.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tandem/spec.h"

namespace tandem {

class Connection;

struct FleetTarget {
  std::string name;  // unique in the fleet: a-z, 0-9, '_', '-', '.', up to 63 bytes
  std::string dsn;
  std::map<std::string, std::string> labels;
  SourceLocation where;  // in the fleet file or the targets file; line 0 from a query
};

struct FleetWave {
  std::string name;
  // label -> accepted values; every label must match one of them. Empty
  // with `rest`: the targets no other wave selects.
  std::map<std::string, std::vector<std::string>> select;
  bool rest = false;
  int parallel = 1;                   // targets of the wave worked on at once, across every runner
  bool stop_on_error = true;          // on_error: stop (true) | continue
  std::chrono::milliseconds soak{0};  // ready this long before the next wave starts
  SourceLocation where;
};

enum class FleetCutover { kTogether, kEach };

struct FleetSpec {
  std::string file;
  std::string text;
  std::string name;                  // the fleet's name; the migration's by default
  std::string migration_file;        // as written, relative to the fleet file
  std::string migration_path;        // resolved
  std::string control_dsn;           // "" : from the command line or TANDEM_CONTROL_DSN
  std::vector<FleetTarget> targets;  // inline, or read from targets_file
  std::string targets_file;          // resolved path, "" when none
  std::string targets_query;         // run against the control database, "" when none
  std::vector<FleetWave> waves;
  FleetCutover cutover = FleetCutover::kTogether;
  bool hold_on_drift = true;  // drift: hold | ignore
  // cleanup: fleet (once every target is cut over) | wave (once every
  // target of the wave is cut over); approved once for the fleet either way.
  bool cleanup_per_wave = false;
  int per_daemon = 8;  // targets one runner works on at once
  int per_host = 4;    // targets of one database server worked on at once, fleet-wide
};

struct FleetParseResult {
  std::optional<FleetSpec> fleet;
  std::vector<SpecError> errors;  // empty when fleet is set
};

// Reads and checks a fleet file: keys, values, the targets (inline or from
// targets_file), and the waves. Does not read the migration spec nor run a
// targets_query.
FleetParseResult load_fleet_file(const std::string& path);
FleetParseResult parse_fleet(const std::string& text, const std::string& file);

// Targets from a targets_query's result: columns name, dsn and (optional)
// labels as a JSON object of text values. Throws Error(kBadInput) naming
// the row that is not usable.
std::vector<FleetTarget> targets_from_query(Connection& control, const std::string& query);

// Each target's wave (an index into fleet.waves), in target order. Every
// target must be in exactly one wave: errors name the target and the waves
// (or that none selects it), located at the target.
std::vector<int> assign_waves(const FleetSpec& fleet, const std::vector<FleetTarget>& targets,
                              std::vector<SpecError>& errors);

// "host:port" of the server a DSN reaches (libpq's defaults for what it
// leaves out): targets on one server share the per_host limit.
std::string server_of(const std::string& dsn);

}  // namespace tandem
