#pragma once

#include <optional>
#include <string>
#include <vector>

namespace tandem {

// --hooks-path, --hook-url, --hook-timeout of run and rollback.
struct HookArgs {
  std::string path, url, timeout;
};

struct RunArgs {
  std::string file;
  std::string dsn;
  std::string until;
  std::vector<std::string> approve;
  std::vector<std::string> accept_differences;
  HookArgs hooks;
  bool progress_tty = false;
};

struct ServeArgs {
  std::string config;
  std::string dsn;
  std::string socket;
  std::string metrics_listen;
  std::string log_level;      // given on the command line; else the config's
  std::string log_format;     // given on the command line; else the config's
  bool check_config = false;  // load the config, report, exit
};

int cmd_validate(const std::vector<std::string>& files);
// The JSON Schema of a spec ("spec") or of the daemon's config ("config").
int cmd_schema(const std::string& which);
// `format`: text, json or markdown. With a DSN, also runs the plan's
// read-only prechecks against the database and exits 1 when any refuses.
int cmd_plan(const std::string& file, const std::string& format, const std::string& dsn);
int cmd_run(const RunArgs& args);
int cmd_rollback(const std::string& file, const std::string& dsn, const HookArgs& hooks);
int cmd_status(const std::string& file, const std::string& dsn, bool json);
// The shadow-read parameter sets whose answers differed (`pair`: one pair's).
struct RoundsArgs {
  std::string file, dsn, every;
  int count = 1;
  bool json = false;
};
// Exit 0 when the last round passed every gate, kExitRoundFailed when not.
int cmd_rounds(const RoundsArgs& args);

int cmd_diffs(const std::string& file, const std::string& dsn, const std::string& pair, int limit,
              bool json);

struct SlicesArgs {
  std::string file, dsn;
  std::string action = "list";  // list, check, promote, demote, rollback, watch, resume
  std::string slice;
  std::string every;  // watch: between readings (default: the canary's every)
  int count = 1;      // watch: how many readings
  bool json = false;
};
// The slices of a migration (list), or one slice checked or moved: exit 0
// done, 1 refused (nothing changed), kExitRoundFailed when the slice's copy
// check found differences.
int cmd_slices(const SlicesArgs& args);
// tandemd fleet ACTION FILE (docs/fleet.md).
struct FleetArgs {
  std::string action;  // run, status, rollback, validate, events, pause, resume, retry
  std::string file, control_dsn, wave, owner, target;
  std::vector<std::string> approve;
  bool json = false;
  int limit = 50;  // events
};
// run: 0 completed, 3 waits for an approval (cleanup's), 4 a target failed
// or is held and nothing else can go on, 8 stopped by a signal.
// rollback: 0 every target of the wave rolled back, 4 not all.
int cmd_fleet(const FleetArgs& args);
// The daemon: runs until SIGTERM; see docs/daemon.md.
int cmd_serve(const ServeArgs& args);

// --dsn, else TANDEM_DSN, else "" (libpq reads PGHOST, PGPORT, ...).
std::string resolve_dsn(const std::string& flag);

}  // namespace tandem
