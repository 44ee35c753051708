// tandemd: online, zero-downtime schema migrations for PostgreSQL.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/usage.h"
#include "tandem/phase.h"
#include "tandem_version.h"
#include "util/logging.h"
#include "util/text.h"

// Long, and left so: one CLI11 subcommand after another, as `tandemd --help`
// lists them, each with its options.
int main(int argc, char** argv) {
  using namespace tandem;
  CLI::App app{"tandemd - online, zero-downtime schema migrations for PostgreSQL"};
  app.footer(std::string("\nThe database comes from --dsn, else TANDEM_DSN, else libpq's PG* "
                         "variables.\nA password in --dsn is visible to every user in the process "
                         "list: keep it in\n~/.pgpass, a service file (PGSERVICE, service=...), "
                         "TANDEM_DSN or, for serve,\nthe config's dsn_file.\n") +
             kExitCodeHelp);
  app.set_version_flag("--version", std::string("tandemd ") + TANDEM_VERSION);
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  std::string log_format = "text";
  app.add_option("--log-format", log_format,
                 "text (under systemd: priority prefixes, no timestamps) or json (one object "
                 "per line)")
      ->check(CLI::IsMember({"text", "json"}));

  std::vector<std::string> validate_files;
  auto* validate = app.add_subcommand("validate", "Check spec files; exit 0 when all are valid");
  validate->add_option("FILE", validate_files, "spec files")->required();
  validate->footer(
      "\nExit codes:\n  0  every file is valid\n  1  a file is not (each error as "
      "file:line:column: message)\n  2  bad command line\n");

  std::string file;
  bool json = false;
  auto* plan = app.add_subcommand("plan", "Print every step of every phase: SQL, rollback, lock");
  plan->add_option("FILE", file, "spec file")->required();
  plan->add_flag("--json", json, "machine-readable output (the same as --format json)");
  std::string plan_format = "text";
  plan->add_option("--format", plan_format,
                   "text, json, or markdown (for a pull request's comment: the steps as a table, "
                   "irreversible ones flagged, the SQL folded)")
      ->check(CLI::IsMember({"text", "json", "markdown"}));
  std::string plan_dsn;
  plan->add_option("--dsn", plan_dsn,
                   "also run the read-only prechecks against this database (exit 1 if refused)"
                   " and estimate what each backfill will write: rows, growth, WAL (default "
                   "TANDEM_DSN when set; else the plan is made offline)");
  plan->footer(
      "\nExit codes:\n  0  planned (and, with a database, every precheck passed)\n  1  invalid "
      "spec, or a precheck refused\n  2  bad command line\n  6  the database cannot be "
      "reached\n");

  const auto phases = phase_names();
  RunArgs run_args;
  auto* run = app.add_subcommand("run", "Run or resume a migration in the foreground");
  run->add_option("FILE", run_args.file, "spec file")->required();
  run->add_option("--dsn", run_args.dsn, "libpq connection string");
  run->add_option("--until", run_args.until, "stop after this phase")->check(CLI::IsMember(phases));
  std::vector<std::string> approvable = phases;
  approvable.push_back("all");
  run->add_option("--approve", run_args.approve,
                  "approve a phase that needs approval (cleanup always does), or all")
      ->check(CLI::IsMember(approvable));
  run->add_option("--accept-differences", run_args.accept_differences,
                  "go on past the failed gate of this shadow-read pair with the differences it "
                  "found (repeatable; recorded with who accepted them)");
  // Hooks (docs/hooks.md), for run and rollback.
  const auto add_hook_options = [](CLI::App* sub, HookArgs& h) {
    sub->add_option("--hooks-path", h.path,
                    "run the executables in this directory named tandem-on-EVENT[-...] on the "
                    "migration's events (start, phase-change, waiting-approval, before-cutover, "
                    "critical-pause, success, failure, rolled-back); a failing before-cutover "
                    "hook holds the cutover");
    sub->add_option("--hook-url", h.url, "POST each event's JSON to this http:// URL");
    sub->add_option("--hook-timeout", h.timeout,
                    "how long one hook may take before it is killed and counts as failed "
                    "(default 10s)");
  };
  add_hook_options(run, run_args.hooks);
  run->footer(kExitCodeHelp);

  std::string dsn;
  HookArgs rollback_hooks;
  auto* rollback = app.add_subcommand("rollback", "Undo a migration back to its starting state");
  rollback->add_option("FILE", file, "spec file")->required();
  rollback->add_option("--dsn", dsn, "libpq connection string");
  add_hook_options(rollback, rollback_hooks);
  rollback->footer(kExitCodeHelp);

  auto* status = app.add_subcommand("status", "Show where a migration stands");
  status->add_option("FILE", file, "spec file")->required();
  status->add_option("--dsn", dsn, "libpq connection string");
  status->add_flag("--json", json, "machine-readable output");
  std::string pair;
  int limit = 20;
  auto* diffs = app.add_subcommand(
      "diffs", "The shadow-read parameter sets whose old and new answers differed, with the rows");
  diffs->add_option("FILE", file, "spec file")->required();
  diffs->add_option("--dsn", dsn, "libpq connection string");
  diffs->add_option("--pair", pair, "only this shadow-read pair");
  diffs->add_option("--limit", limit, "how many (1-1000)")->check(CLI::Range(1, 1000));
  diffs->add_flag("--json", json, "machine-readable output");

  RoundsArgs rounds_args;
  auto* rounds = app.add_subcommand(
      "rounds",
      "While a migration waits at the cutover gate: compare its shadow-read pairs again on new "
      "samples, round after round");
  rounds->add_option("FILE", rounds_args.file, "spec file")->required();
  rounds->add_option("--dsn", rounds_args.dsn, "libpq connection string");
  rounds->add_option("--count", rounds_args.count, "how many rounds (default 1)")
      ->check(CLI::Range(1, 100000));
  rounds->add_option("--every", rounds_args.every,
                     "pause between rounds, e.g. 30s (default: none)");
  rounds->add_flag("--json", rounds_args.json, "one JSON object per round on stdout");
  rounds->footer(kExitCodeHelp);

  SlicesArgs slices_args;
  auto* slices = app.add_subcommand(
      "slices",
      "A migration done in slices: list its slices, check one's copy, or move one up or down "
      "its stages (old, shadow, live, complete)");
  slices->add_option("FILE", slices_args.file, "spec file")->required();
  slices->add_option("ACTION", slices_args.action,
                     "list (default); check, promote, demote or rollback (to old) SLICE; watch "
                     "(the canary of live slices); resume (lift the hold of a canary rollback)");
  slices->add_option("SLICE", slices_args.slice, "the slice to check or move");
  slices->add_option("--count", slices_args.count, "watch: how many readings (default 1)")
      ->check(CLI::Range(1, 1000000));
  slices->add_option("--every", slices_args.every,
                     "watch: pause between readings (default: the canary's every)");
  slices->add_option("--dsn", slices_args.dsn, "libpq connection string");
  slices->add_flag("--json", slices_args.json, "machine-readable output");
  slices->footer(kExitCodeHelp);

  std::string schema_of = "spec";
  auto* schema = app.add_subcommand(
      "schema",
      "Print the JSON Schema of a migration spec (spec) or of tandemd.yaml (config), for editors "
      "and linters");
  schema->add_option("WHICH", schema_of, "spec (default) or config")
      ->check(CLI::IsMember({"spec", "config"}));

  // tandemd fleet ACTION FILE: one migration on many databases.
  FleetArgs fleet_args;
  auto* fleet = app.add_subcommand(
      "fleet",
      "Run one migration on many databases in waves (docs/fleet.md): run, status, "
      "pause, resume, retry, rollback, events, validate");
  fleet->require_subcommand(1);
  fleet->footer(
      "\nEach action's --help lists its options and exit codes; docs/fleet.md has the "
      "fleet file.\n");
  const auto fleet_action = [&](const std::string& name, const std::string& about) {
    auto* sub = fleet->add_subcommand(name, about);
    sub->add_option("FILE", fleet_args.file, "fleet file")->required();
    if (name != "validate") {
      sub->add_option("--control-dsn", fleet_args.control_dsn,
                      "the control database that keeps the fleet's state (default: the fleet "
                      "file's control, else TANDEM_CONTROL_DSN)");
    }
    sub->footer(
        "\nExit codes:\n  0  done (run: every target completed; rollback: every target "
        "rolled back)\n  1  invalid fleet file or spec; nothing was changed\n  2  bad command "
        "line\n  3  run: waits for an approval (cleanup: --approve cleanup)\n  4  a target "
        "failed or is held, and nothing else can go on (fleet status says why)\n  6  the "
        "control database cannot be reached\n  8  stopped by a signal at a safe point; run "
        "again to resume\n");
    sub->callback([&fleet_args, name] { fleet_args.action = name; });
    return sub;
  };
  auto* fleet_run =
      fleet_action("run",
                   "Run the fleet's migration on every target, wave by wave; with several runners "
                   "at once they share the targets");
  fleet_run
      ->add_option("--approve", fleet_args.approve,
                   "approve a phase on every target (cleanup: once for the fleet, after "
                   "every target cut over)")
      ->check(CLI::IsMember(phases));
  fleet_run->add_option("--owner", fleet_args.owner,
                        "how this runner is named in the fleet table (default host:pid)");
  auto* fleet_status = fleet_action("status", "Show every target's state, with counts per wave");
  fleet_status->add_flag("--json", fleet_args.json, "machine-readable output");
  auto* fleet_rollback =
      fleet_action("rollback", "Roll back every target of a wave (or of the whole fleet)");
  fleet_rollback->add_option("--wave", fleet_args.wave, "only this wave's targets");
  auto* fleet_events = fleet_action("events", "Print the fleet's event log, oldest first");
  fleet_events->add_option("--limit", fleet_args.limit, "how many of the newest (default 50)");
  fleet_events->add_flag("--json", fleet_args.json, "one JSON object per line");
  fleet_action("validate", "Check a fleet file and its migration spec; exit 0 when valid");
  fleet_action("pause",
               "Pause the fleet (or a wave): every runner stops its targets at their next safe "
               "point and starts none until resumed")
      ->add_option("--wave", fleet_args.wave, "only this wave");
  fleet_action("resume", "Lift the pause of a wave (--wave) or every pause of the fleet")
      ->add_option("--wave", fleet_args.wave, "only this wave's pause");
  fleet_action("retry",
               "Set failed and held targets to pending; running runners take them up at once")
      ->add_option("--target", fleet_args.target, "only this target");

  ServeArgs serve_args;
  auto* serve = app.add_subcommand(
      "serve", "Run as a daemon: own submitted migrations, obey tandemctl on the control socket");
  serve->add_option("--config", serve_args.config, "the daemon's YAML config file");
  serve->add_option("--dsn", serve_args.dsn,
                    "libpq connection string (overrides the config; put no password here: "
                    "others can read the command line, use dsn_file or ~/.pgpass)");
  serve->add_option("--socket", serve_args.socket,
                    "control socket path (overrides the config; default "
                    "/run/tandemd/control.sock)");
  serve->add_option("--metrics-listen", serve_args.metrics_listen,
                    "serve Prometheus metrics on HOST:PORT (overrides the config), e.g. "
                    "127.0.0.1:9188 (9187 is postgres_exporter's)");
  serve->add_flag("--check-config", serve_args.check_config,
                  "load the config, print what it resolves to (password hidden), exit 0 or 1");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = usage_error(app, e, argc, argv, "tandemd");
    return rc == 0 ? kExitOk : kExitUsage;
  }

  setup_logging(*parse_log_format(log_format), log_level);
  // For serve, given flags win over the config file's log settings.
  if (app.get_option("--log-level")->count()) serve_args.log_level = log_level;
  if (app.get_option("--log-format")->count()) serve_args.log_format = log_format;

  if (*validate) return cmd_validate(validate_files);
  if (*plan) return cmd_plan(file, json ? "json" : plan_format, plan_dsn);
  if (*run) {
    run_args.progress_tty = isatty(STDERR_FILENO);
    return cmd_run(run_args);
  }
  if (*rollback) return cmd_rollback(file, dsn, rollback_hooks);
  if (*status) return cmd_status(file, dsn, json);
  if (*diffs) return cmd_diffs(file, dsn, pair, limit, json);
  if (*rounds) return cmd_rounds(rounds_args);
  if (*slices) return cmd_slices(slices_args);
  if (*serve) return cmd_serve(serve_args);
  if (*schema) return cmd_schema(schema_of);
  if (*fleet) return cmd_fleet(fleet_args);
  return kExitUsage;
}
