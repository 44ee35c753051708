// What the executor hands its collaborators (the throttle gate, the
// autovacuum guard): the migration's name, who acts, the state store, the
// clock, and the executor's answers to "is a stop requested?", "which
// settings are in force now?" and "tell the progress sink".
#pragma once

#include <functional>
#include <string>

#include "engine/migration_store.h"
#include "engine/progress.h"
#include "engine/run_control.h"
#include "engine/time_source.h"
#include "tandem/spec.h"

namespace tandem {

struct RunContext {
  std::string migration;
  std::string actor;
  MigrationStore* store = nullptr;
  TimeSource* time = nullptr;
  RunControl* control = nullptr;  // live settings and the manual throttle; may be null
  std::function<bool()> stop_requested;
  std::function<Settings()> settings;
  // Calls the progress sink, if any, one thread at a time.
  std::function<void(const std::function<void(ProgressSink&)>&)> report;
};

}  // namespace tandem
