// tandemd.yaml, the daemon's config file (docs/daemon.md): the database, the
// control socket, the metrics endpoint, logging, the shutdown grace,
// defaults for migration settings and hooks.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "daemon/server.h"
#include "engine/hooks.h"

namespace tandem {

struct DaemonConfig {
  std::string dsn;
  std::string dsn_source = "libpq's PG* variables";
  ControlServerOptions control;
  std::string metrics_listen;  // "" : no metrics endpoint
  std::string log_level = "info";
  std::string log_format = "text";
  std::chrono::milliseconds shutdown_grace{10000};
  std::map<std::string, std::string> defaults;  // migration settings
  HookSettings hooks;
  // Fleet files this daemon runs (docs/fleet.md), as given (relative to the
  // config file's directory when not absolute, resolved here).
  std::vector<std::string> fleets;
};

// Reads the config at `file` ("": every default); throws std::runtime_error
// naming file:line:column and what is wrong.
DaemonConfig load_config(const std::string& file);

}  // namespace tandem
