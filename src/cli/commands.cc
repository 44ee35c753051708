#include "cli/commands.h"

#include <pwd.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <set>
#include <thread>

#include "cli/common.h"
#include "cli/exit_codes.h"
#include "db/connection.h"
#include "engine/backfill.h"
#include "engine/executor.h"
#include "engine/hooks.h"
#include "engine/shadow_samples.h"
#include "engine/slices.h"
#include "engine/state_store.h"
#include "plan/plan_output.h"
#include "spec/schema.h"
#include "tandem/plan.h"
#include "util/duration.h"
#include "util/json.h"
#include "util/text.h"

namespace tandem {

std::atomic<bool> g_stop{false};

namespace {
void on_signal(int) { g_stop.store(true); }
}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND;  // a second signal ends the process at once
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

std::string actor(const std::string& command) {
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  const passwd* pw = getpwuid(getuid());
  return "tandemd " + command + " by " + (pw ? pw->pw_name : "?") + "@" + host + " (uid " +
         std::to_string(getuid()) + ", pid " + std::to_string(getpid()) + ")";
}

// "file:line:column: warning: message"
std::string warning_text(const SpecError& w) {
  return w.where.to_string() + ": warning: " + w.message;
}

// Loads and plans a spec; prints located errors and returns false on
// failure. With `warnings`, what the lint of sql steps found is printed
// too and kept there.
bool load(const std::string& file, std::optional<Spec>& spec, std::optional<Plan>& plan,
          std::vector<SpecError>* warnings) {
  auto parsed = load_spec_file(file);
  for (const auto& e : parsed.errors) std::cerr << e.to_string() << "\n";
  if (warnings) {
    for (const auto& w : parsed.warnings) std::cerr << warning_text(w) << "\n";
    *warnings = parsed.warnings;
  }
  if (!parsed.spec) return false;
  spec = std::move(parsed.spec);
  try {
    plan = make_plan(*spec);
  } catch (const Error& e) {
    std::cerr << file << ": " << e.what() << "\n";
    return false;
  }
  return true;
}

namespace {

// The hooks of --hooks-path/--hook-url, or none; false (after saying why)
// when the flags cannot be used.
bool make_hooks(const HookArgs& a, std::unique_ptr<Hooks>& out) {
  HookSettings s;
  s.path = a.path;
  s.url = a.url;
  if (!a.timeout.empty()) {
    const auto d = parse_duration(a.timeout);
    if (!d || d->count() <= 0) {
      std::cerr << "tandemd: --hook-timeout " << a.timeout << ": expected a duration such as 10s\n";
      return false;
    }
    s.timeout = *d;
  }
  if (!s.enabled()) return true;
  const std::string problem = check_hook_settings(s);
  if (!problem.empty()) {
    std::cerr << "tandemd: " << problem << "\n";
    return false;
  }
  out = std::make_unique<Hooks>(s);
  return true;
}

}  // namespace

int report(const std::exception& ex) {
  std::cerr << "tandemd: " << ex.what() << "\n";
  if (const auto* e = dynamic_cast<const Error*>(&ex)) return exit_code_for(*e);
  return kExitStepFailed;
}

namespace {

void print_summary(const Spec& spec, const Plan& plan, const std::string& dsn) {
  auto conn = connect_postgres(dsn, "tandemd status");
  StateStore store(spec.name);
  std::cerr << "summary of " << spec.name << ":\n";
  for (const auto& [phase, secs] : store.phase_seconds(*conn)) {
    std::fprintf(
        stderr, "  %-12s %s\n", phase_name(phase),
        format_duration(std::chrono::milliseconds(static_cast<long long>(secs * 1000))).c_str());
  }
  for (const auto& s : plan.steps) {
    if (s.kind != StepKind::kBackfill) continue;
    if (auto cp = store.checkpoint(*conn, s.id)) {
      std::cerr << "  rows moved by " << s.id << ": " << with_commas(cp->rows_done) << "\n";
    }
  }
}

}  // namespace

// JSON for people and scripts; bytes that are not UTF-8 (from the database's
// error text, say) are replaced rather than aborting the output.
std::string to_json_text(const nlohmann::json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string resolve_dsn(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("TANDEM_DSN")) return env;
  return "";
}

int cmd_schema(const std::string& which) {
  std::cout << to_json_text(which == "config" ? config_schema() : spec_schema()) << "\n";
  return kExitOk;
}

int cmd_validate(const std::vector<std::string>& files) {
  int rc = kExitOk;
  for (const auto& f : files) {
    std::optional<Spec> spec;
    std::optional<Plan> plan;
    std::vector<SpecError> warnings;
    if (load(f, spec, plan, &warnings)) {
      std::cout << f << ": ok (" << spec->name << ", " << plan->steps.size() << " steps)\n";
    } else {
      rc = kExitBadInput;
    }
  }
  return rc;
}

namespace {

// What each backfill step will write, from the catalog as it is now
// (estimate_rewrite), and the WAL between two checkpoints the server allows.
nlohmann::json estimate_backfills(Connection& conn, const Plan& plan) {
  Rows w = conn.exec(
      "SELECT pg_size_bytes(current_setting('max_wal_size')),"
      " current_setting('checkpoint_completion_target')::float8");
  const long long max_wal = w.integer(0, 0);
  // A checkpoint starts when this much WAL has been written since the last.
  const long long per_checkpoint =
      static_cast<long long>(static_cast<double>(max_wal) / (1.0 + std::stod(w.text(0, 1))));
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& s : plan.steps) {
    if (s.kind != StepKind::kBackfill || !s.batch) continue;
    const BatchWork& work = *s.batch;
    nlohmann::json e = {{"step", s.id}, {"table", work.table}};
    if (conn.exec("SELECT to_regclass($1) IS NULL", {work.table}).text(0, 0) == "t") {
      e["exists"] = false;  // an earlier operation creates it, or the prechecks refuse
      steps.push_back(e);
      continue;
    }
    const TableSize size = table_size(conn, work.table);
    e["exists"] = true;
    e["rows"] = size.rows;
    e["rows_at_most"] = !work.filter.empty();  // only rows the filter matches
    e["table_bytes"] = size.heap_bytes;
    e["index_bytes"] = size.index_bytes;
    if (work.statement.empty()) {  // an UPDATE of the table's own rows
      const RewriteEstimate r = estimate_rewrite(size);
      e["growth_bytes"] = r.growth_bytes;
      e["wal_bytes"] = r.wal_bytes;
      e["checkpoints_from_wal"] = per_checkpoint > 0 ? r.wal_bytes / per_checkpoint : 0;
    } else {  // rows written into another table: not estimated
      e["growth_bytes"] = nullptr;
      e["wal_bytes"] = nullptr;
      e["checkpoints_from_wal"] = nullptr;
    }
    steps.push_back(e);
  }
  return {{"max_wal_size_bytes", max_wal}, {"steps", steps}};
}

// What the backfills will write, one step after another (plan --dsn).
std::string estimates_text(const nlohmann::json& est) {
  std::ostringstream out;
  if (est["steps"].empty()) return "";
  out << "\nwhat the backfills will write (estimated from the catalog now):\n";
  for (const auto& e : est["steps"]) {
    const auto step = e["step"].get<std::string>(), table = e["table"].get<std::string>();
    if (!e["exists"].get<bool>()) {
      out << "  step " << step << ": " << table << " is not there yet: nothing to estimate\n";
      continue;
    }
    out << "  step " << step << ": " << (e["rows_at_most"].get<bool>() ? "at most" : "about") << " "
        << with_commas(e["rows"].get<long long>()) << " rows of " << table << " (table "
        << format_bytes(e["table_bytes"].get<long long>()) << ", indexes "
        << format_bytes(e["index_bytes"].get<long long>()) << ")\n";
    if (e["wal_bytes"].is_null()) {
      out << "    each row is written into another table; its size is not estimated\n";
      continue;
    }
    out << "    the table and its indexes grow by about "
        << format_bytes(e["growth_bytes"].get<long long>())
        << ": a new version of every row, its space reusable after VACUUM but not"
           " returned to the disk\n";
    out << "    about " << format_bytes(e["wal_bytes"].get<long long>()) << " of WAL";
    const long long checkpoints = e["checkpoints_from_wal"].get<long long>();
    if (checkpoints > 0) {
      out << ": about " << checkpoints << " checkpoint" << (checkpoints > 1 ? "s" : "")
          << " will start from its volume (max_wal_size "
          << format_bytes(est["max_wal_size_bytes"].get<long long>())
          << "), each followed by whole pages in the WAL again; a larger max_wal_size or"
             " throttle_wal_rate_mb spreads them\n";
    } else {
      out << " (max_wal_size " << format_bytes(est["max_wal_size_bytes"].get<long long>()) << ")\n";
    }
  }
  return out.str();
}

}  // namespace

int cmd_plan(const std::string& file, const std::string& format, const std::string& dsn_flag) {
  std::optional<Spec> spec;
  std::optional<Plan> plan;
  std::vector<SpecError> warnings;
  if (!load(file, spec, plan, &warnings)) return kExitBadInput;
  // Offline unless a database is named: --dsn, else TANDEM_DSN.
  const std::string dsn = resolve_dsn(dsn_flag);
  nlohmann::json refusals = nlohmann::json::array();
  nlohmann::json estimates;
  if (!dsn.empty()) {
    try {
      auto conn = connect_postgres(dsn, "tandemd plan");
      for (const auto& [step, reason] : precheck_refusals(*conn, *plan)) {
        refusals.push_back({{"step", step}, {"reason", reason}});
      }
      estimates = estimate_backfills(*conn, *plan);
    } catch (const std::exception& e) {
      return report(e);
    }
  }
  if (format == "json") {
    nlohmann::json out = plan_to_json(*plan);
    out["warnings"] = nlohmann::json::array();
    for (const auto& w : warnings) {
      out["warnings"].push_back(
          {{"line", w.where.line}, {"column", w.where.column}, {"message", w.message}});
    }
    if (!dsn.empty()) {
      out["refusals"] = refusals;
      out["estimates"] = estimates;
    }
    std::cout << to_json_text(out) << "\n";
  } else if (format == "markdown") {
    std::cout << plan_to_markdown(*plan);
    if (!warnings.empty()) {
      std::cout << "\n**Lint of hand-written SQL:**\n\n";
      for (const auto& w : warnings) {
        std::cout << "- line " << w.where.line << ": " << markdown_cell(w.message) << "\n";
      }
    }
    if (!dsn.empty()) {
      std::cout << "\n**Prechecks against the database: "
                << (refusals.empty() ? "passed" : "REFUSED") << "**\n";
      if (!refusals.empty()) std::cout << "\n";
      for (const auto& r : refusals) {
        std::cout << "- `" << r["step"].get<std::string>()
                  << "`: " << markdown_cell(r["reason"].get<std::string>()) << "\n";
      }
      const std::string est = estimates_text(estimates);
      if (!est.empty()) std::cout << "\n```" << est << "```\n";
    }
  } else {
    std::cout << plan_to_text(*plan);
    if (!dsn.empty()) {
      std::cout << "\nprechecks against the database: " << (refusals.empty() ? "passed" : "REFUSED")
                << "\n";
      for (const auto& r : refusals) {
        std::cout << "  step " << r["step"].get<std::string>() << ": "
                  << r["reason"].get<std::string>() << "\n";
      }
      std::cout << estimates_text(estimates);
    }
  }
  return refusals.empty() ? kExitOk : kExitBadInput;
}

int cmd_run(const RunArgs& args) {
  std::optional<Spec> spec;
  std::optional<Plan> plan;
  std::vector<SpecError> warnings;
  if (!load(args.file, spec, plan, &warnings)) return kExitBadInput;
  RunOptions options;
  options.dsn = resolve_dsn(args.dsn);
  options.actor = actor();
  if (!args.until.empty()) options.until = parse_phase(args.until);
  for (const auto& a : args.approve) {
    if (a == "all") {
      options.approve_all = true;
    } else {
      options.approve.insert(*parse_phase(a));
    }
  }
  for (const auto& name : args.accept_differences) {
    if (!spec->has_shadow_read(name)) {
      std::cerr << "tandemd: --accept-differences " << name << ": the spec has no shadow read "
                << "of that name\n";
      return kExitBadInput;
    }
    options.accept_differences.insert(name);
  }
  std::unique_ptr<Hooks> hooks;
  if (!make_hooks(args.hooks, hooks)) return kExitUsage;
  options.hooks = hooks.get();
  auto progress =
      args.progress_tty ? make_terminal_progress() : make_log_progress(std::chrono::seconds(5));
  options.progress = progress.get();
  options.stop = &g_stop;
  install_stop_handlers();
  try {
    Executor executor(*spec, *plan, options);
    switch (executor.run()) {
      case RunOutcome::kCompleted:
        std::cerr << "migration " << spec->name << " completed\n";
        print_summary(*spec, *plan, options.dsn);
        return kExitOk;
      case RunOutcome::kAlreadyCompleted:
        std::cerr << "migration " << spec->name << " was already completed; nothing to do\n";
        return kExitOk;
      case RunOutcome::kReachedUntil:
        std::cerr << "migration " << spec->name << " stopped after phase " << args.until
                  << " as asked; run again without --until to go on\n";
        return kExitOk;
      case RunOutcome::kWaitingApproval: {
        const char* p = phase_name(executor.waiting_phase());
        const std::string& withheld = executor.approval_withheld();
        if (executor.held_by_hook()) {
          std::cerr << "migration " << spec->name << ": cutover is held: " << withheld
                    << "\nWhen the hook passes, run again: tandemd run " << args.file << "\n";
          return kExitNeedsApproval;
        }
        if (withheld.rfind("slices not complete", 0) == 0) {
          std::cerr << "migration " << spec->name << " waits at " << p << ": " << withheld
                    << "\nThe slices: tandemd slices " << args.file
                    << "\nThen run again: tandemd run " << args.file << "\n";
          return kExitNeedsApproval;
        }
        if (!withheld.empty()) {
          std::cerr << "migration " << spec->name << ": the approval of " << p
                    << " is withheld: " << executor.approval_withheld()
                    << "\nTo compare again on new samples: tandemd rounds " << args.file
                    << "\nTo cut over with these differences: tandemd run " << args.file
                    << " --approve " << p << " --accept-differences PAIR\n";
          return kExitNeedsApproval;
        }
        std::cerr << "migration " << spec->name << " is waiting for approval of phase " << p
                  << (phase_info(executor.waiting_phase()).reversible ? ""
                                                                      : ", which cannot be undone")
                  << ".\nTo go on: tandemd run " << args.file << " --approve " << p << "\n";
        return kExitNeedsApproval;
      }
      case RunOutcome::kStopped:
        std::cerr << "migration " << spec->name
                  << " stopped at a safe point; run the same command again to resume\n";
        return kExitInterrupted;
      case RunOutcome::kPaused:
        std::cerr << "migration " << spec->name << " paused: " << executor.pause_reason()
                  << ".\nNo work is lost. When the cause is gone, run the same command again "
                     "to resume\n";
        return kExitPaused;
    }
  } catch (const std::exception& e) {
    return report(e);
  }
  return kExitOk;
}

int cmd_rollback(const std::string& file, const std::string& dsn, const HookArgs& hook_args) {
  std::optional<Spec> spec;
  std::optional<Plan> plan;
  if (!load(file, spec, plan)) return kExitBadInput;
  RunOptions options;
  options.dsn = resolve_dsn(dsn);
  options.actor = actor("rollback");
  std::unique_ptr<Hooks> hooks;
  if (!make_hooks(hook_args, hooks)) return kExitUsage;
  options.hooks = hooks.get();
  options.stop = &g_stop;
  install_stop_handlers();
  try {
    Executor executor(*spec, *plan, options);
    switch (executor.rollback()) {
      case RollbackOutcome::kRolledBack:
        std::cerr << "migration " << spec->name << " rolled back\n";
        return kExitOk;
      case RollbackOutcome::kNothingToDo:
        std::cerr << "migration " << spec->name << " has nothing to roll back\n";
        return kExitOk;
      case RollbackOutcome::kStopped:
        std::cerr << "rollback of " << spec->name
                  << " stopped at a safe point; run it again to finish\n";
        return kExitInterrupted;
    }
  } catch (const std::exception& e) {
    return report(e);
  }
  return kExitOk;
}

// A shadow-read step's samples: drawn, compared, differing, and each
// side's p50 and p99 in milliseconds (null before the first comparison).
nlohmann::json samples(Connection& conn, const std::string& migration, const std::string& step_id) {
  const SampleTally t = read_sample_tally(conn, migration, step_id, 0);
  const auto ms = [&](double v) { return t.compared > 0 ? nlohmann::json(v) : nlohmann::json(); };
  return {{"drawn", t.drawn},
          {"compared", t.compared},
          {"mismatches", t.mismatches},
          {"old_ms", {{"p50", ms(t.old_p50)}, {"p99", ms(t.old_p99)}}},
          {"new_ms", {{"p50", ms(t.new_p50)}, {"p99", ms(t.new_p99)}}}};
}

namespace {

std::string round_text(const RoundReport& r) {
  std::string out = "round " + std::to_string(r.round) + ": " +
                    (r.stopped    ? "stopped part way"
                     : r.passed() ? "passed"
                                  : "failed") +
                    "\n";
  for (const auto& p : r.pairs) {
    char times[128];
    std::snprintf(times, sizeof times, "; p50 %.2f -> %.2f ms, p99 %.2f -> %.2f ms", p.old_p50,
                  p.new_p50, p.old_p99, p.new_p99);
    out += "  " + p.pair + ": " + with_commas(p.samples) + " parameter sets, " +
           with_commas(p.mismatches) + " differ" + times + "\n";
    if (!p.verdict.empty()) out += "    gate failed: " + p.verdict + "\n";
  }
  return out;
}

}  // namespace

int cmd_rounds(const RoundsArgs& args) {
  std::optional<Spec> spec;
  std::optional<Plan> plan;
  if (!load(args.file, spec, plan)) return kExitBadInput;
  std::chrono::milliseconds every{0};
  if (!args.every.empty()) {
    const auto d = parse_duration(args.every);
    if (!d) {
      std::cerr << "tandemd: --every " << args.every << ": expected a duration such as 30s\n";
      return kExitUsage;
    }
    every = *d;
  }
  RunOptions options;
  options.dsn = resolve_dsn(args.dsn);
  options.actor = actor("rounds");
  options.stop = &g_stop;
  install_stop_handlers();
  try {
    Executor executor(*spec, *plan, options);
    RoundReport last;
    for (int i = 0; i < args.count; ++i) {
      if (i > 0) {
        // The pause, cut short by a signal.
        const auto until = std::chrono::steady_clock::now() + every;
        while (!g_stop && std::chrono::steady_clock::now() < until)
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (g_stop) break;
      last = executor.shadow_round();
      if (args.json) {
        nlohmann::json j = round_json(last, "");
        j["name"] = spec->name;
        j["stopped"] = last.stopped;
        std::cout << to_json_text(j) << std::endl;
      } else {
        std::cerr << round_text(last);
      }
      if (last.stopped) break;
    }
    if (g_stop || last.stopped) {
      std::cerr << "rounds of " << spec->name
                << " stopped at a safe point; the next `tandemd rounds` goes on with the round\n";
      return kExitInterrupted;
    }
    if (!last.passed()) {
      std::cerr << "migration " << spec->name
                << ": the last round failed; an approval of cutover is withheld until a round "
                   "passes or its differences are accepted (--accept-differences PAIR)\n";
      return kExitRoundFailed;
    }
  } catch (const std::exception& e) {
    return report(e);
  }
  return kExitOk;
}

namespace {

// tandemd slices FILE watch: the canary read --count times.
int watch_slices(Connection& conn, const Spec& spec, const SlicesArgs& args) {
  const auto& canary = spec.sliced()->canary;
  if (!canary) {
    std::cerr << "tandemd slices: migration " << spec.name
              << " has no canary (slices: canary: in the spec)\n";
    return kExitBadInput;
  }
  std::chrono::milliseconds every = canary->every;
  if (!args.every.empty()) {
    const auto d = parse_duration(args.every);
    if (!d) {
      std::cerr << "tandemd slices: --every " << args.every
                << ": expected a duration such as 10s\n";
      return kExitUsage;
    }
    every = *d;
  }
  install_stop_handlers();
  for (int i = 0; i < args.count && !g_stop; ++i) {
    if (i > 0) {
      const auto until = std::chrono::steady_clock::now() + every;
      while (!g_stop && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (g_stop) break;
    }
    const CanaryOutcome o = watch_canary(conn, spec, spec.settings);
    nlohmann::json readings = nlohmann::json::array();
    for (const auto& r : o.readings) {
      nlohmann::json e = {{"slice", r.slice}, {"value", r.value}, {"healthy", r.healthy}};
      if (!r.error.empty()) e["error"] = r.error;
      readings.push_back(std::move(e));
      if (!args.json) {
        std::cerr << "slice " << r.slice << ": " << (r.healthy ? "healthy" : "UNHEALTHY")
                  << (r.error.empty() ? " (value " + r.value + ")" : " (" + r.error + ")") << "\n";
      }
    }
    if (args.json) {
      std::cout << to_json_text({{"name", spec.name},
                                 {"readings", readings},
                                 {"rolled_back", o.rolled_back}})
                << std::endl;
    } else if (o.readings.empty()) {
      std::cerr << "migration " << spec.name << ": no slice is live; nothing to watch\n";
    }
    if (!o.rolled_back.empty()) {
      if (!args.json) std::cerr << o.alert << "\n";
      return kExitPaused;
    }
  }
  return g_stop ? kExitInterrupted : kExitOk;
}

}  // namespace

int cmd_slices(const SlicesArgs& args) {
  std::optional<Spec> spec;
  std::optional<Plan> plan;
  if (!load(args.file, spec, plan)) return kExitBadInput;
  const auto move = slice_move_from(args.action);
  const bool listing = args.action == "list";
  const bool whole = listing || args.action == "watch" || args.action == "resume";
  if (!whole && args.action != "check" && !move) {
    std::cerr << "tandemd slices: unknown action \"" << args.action
              << "\"; expected list, check, promote, demote, rollback, watch or resume\n";
    return kExitUsage;
  }
  if (!whole && args.slice.empty()) {
    std::cerr << "tandemd slices: " << args.action << " needs the name of a slice\n";
    return kExitUsage;
  }
  if (!spec->sliced()) {
    std::cerr << "tandemd slices: migration " << spec->name
              << " is not done in slices (no `slices:` in " << args.file << ")\n";
    return kExitBadInput;
  }
  try {
    auto conn = connect_postgres(resolve_dsn(args.dsn), "tandemd slices");
    if (listing) {
      const SlicesState s = read_slices(*conn, spec->name);
      if (args.json) {
        nlohmann::json j = slices_json(s);
        j["name"] = spec->name;
        std::cout << to_json_text(j) << "\n";
      } else {
        std::cout << slices_text(spec->name, slices_json(s));
      }
      return kExitOk;
    }
    if (args.action == "resume") {
      const bool lifted = resume_slices(*conn, *spec, actor("slices"));
      std::cerr << "migration " << spec->name << ": "
                << (lifted ? "the hold is lifted; slices may go live again"
                           : "the slices were not held")
                << "\n";
      return kExitOk;
    }
    if (args.action == "watch") return watch_slices(*conn, *spec, args);
    const SliceMoveResult r =
        slice_action(*conn, *spec, args.slice, args.action, actor("slices"), spec->settings);
    nlohmann::json j = slice_move_json(r, args.action);
    j["name"] = spec->name;
    if (args.json) {
      std::cout << to_json_text(j) << "\n";
    } else {
      std::cerr << slice_move_text(j);
    }
    return slice_move_exit_code(j);
  } catch (const std::exception& e) {
    return report(e);
  }
}

int cmd_diffs(const std::string& file, const std::string& dsn, const std::string& pair, int limit,
              bool json) {
  std::optional<Spec> spec;
  std::optional<Plan> plan;
  if (!load(file, spec, plan)) return kExitBadInput;
  if (!pair.empty() && !plan->find(std::string(kReadsPrefix) + pair)) {
    std::cerr << "tandemd: --pair " << pair << ": the spec has no shadow read of that name\n";
    return kExitBadInput;
  }
  try {
    auto conn = connect_postgres(resolve_dsn(dsn), "tandemd diffs");
    const nlohmann::json diffs = read_differences(*conn, spec->name, pair, limit);
    if (json) {
      std::cout << to_json_text({{"name", spec->name}, {"diffs", diffs}}) << "\n";
    } else {
      std::cout << format_differences(diffs);
    }
  } catch (const std::exception& e) {
    return report(e);
  }
  return kExitOk;
}

// Long, and left so: the status read once, then written as JSON or as text,
// field by field in the same order.
int cmd_status(const std::string& file, const std::string& dsn, bool json) {
  std::optional<Spec> spec;
  std::optional<Plan> plan;
  if (!load(file, spec, plan)) return kExitBadInput;
  try {
    auto conn = connect_postgres(resolve_dsn(dsn), "tandemd status");
    StateStore store(spec->name);
    std::optional<MigrationRecord> rec;
    RoundReport last_round;
    if (StateStore::schema_version(*conn) > 0) rec = store.load(*conn);
    nlohmann::json out = {{"version", 1}, {"name", spec->name}};
    if (!rec) {
      out["state"] = "not_started";
    } else {
      out["state"] = to_string(rec->state);
      out["phase"] = phase_name(rec->phase);
      out["updated_at"] = rec->updated_at;
      out["last_step"] = text_or_null(rec->last_step);
      out["last_error"] = text_or_null(rec->last_error);
      out["last_sqlstate"] = text_or_null(rec->last_sqlstate);
      nlohmann::json steps = nlohmann::json::array();
      for (const auto& s : store.steps(*conn)) {
        nlohmann::json j = {{"id", s.step_id},
                            {"phase", phase_name(s.phase)},
                            {"status", to_string(s.status)},
                            {"attempts", s.attempts},
                            {"started_at", text_or_null(s.started_at)},
                            {"finished_at", text_or_null(s.finished_at)}};
        if (!s.last_error.empty()) {
          j["last_error"] = s.last_error;
          j["last_sqlstate"] = s.last_sqlstate;
        }
        if (auto cp = store.checkpoint(*conn, s.step_id)) {
          j["rows_done"] = cp->rows_done;
          j["rows_total"] = cp->rows_total ? nlohmann::json(*cp->rows_total) : nlohmann::json();
          if (cp->seconds > 0) j["rows_per_second"] = cp->rows_done / cp->seconds;
          j["mismatches"] = cp->mismatches;
          j["ranges"] = cp->ranges;
          j["ranges_finished"] = cp->ranges_finished;
        }
        const Step* planned = plan->find(s.step_id);
        if (planned && planned->kind == StepKind::kShadowRead)
          j["samples"] = samples(*conn, spec->name, s.step_id);
        steps.push_back(j);
      }
      out["steps"] = steps;
      // The recorded phase is the one to run next: a run stopped after a
      // phase (--until) or at a gate has not begun it yet.
      bool started = false;
      for (const auto& s : steps) {
        started = started || (s["phase"] == out["phase"] && s["status"] != "pending");
      }
      out["phase_started"] = started;
      nlohmann::json phases = nlohmann::json::object();
      for (const auto& [p, secs] : store.phase_seconds(*conn)) phases[phase_name(p)] = secs;
      out["phase_seconds"] = phases;
      std::string finished;
      last_round = read_last_round(*conn, spec->name, spec->shadow_reads, &finished);
      out["round"] = last_round.round > 0 ? round_json(last_round, finished) : nlohmann::json();
      out["events"] = store.events_json(*conn, 10);
      if (spec->sliced()) out["slices"] = slices_json(read_slices(*conn, spec->name));
    }
    if (json) {
      std::cout << to_json_text(out) << "\n";
      return kExitOk;
    }
    std::cout << "migration " << spec->name << ": " << out["state"].get<std::string>();
    if (!rec) {
      std::cout << " on this database\n";
      return kExitOk;
    }
    std::cout << (out["phase_started"].get<bool>() ? ", phase " : " before phase ")
              << out["phase"].get<std::string>() << " (updated " << rec->updated_at << ")\n";
    std::printf("  %-28s %-12s %-12s %8s  %s\n", "step", "phase", "status", "attempts", "progress");
    for (const auto& s : out["steps"]) {
      std::string progress;
      if (s.contains("rows_done")) {
        progress = with_commas(s["rows_done"].get<long long>()) + " rows";
        if (!s["rows_total"].is_null() && s["rows_total"].get<long long>() > 0) {
          char pct[32];
          std::snprintf(pct, sizeof pct, " (%.0f%%)",
                        std::min(100.0, 100.0 * s["rows_done"].get<long long>() /
                                            s["rows_total"].get<long long>()));
          progress += pct;
        }
        const int ranges = s["ranges"].get<int>();
        if (ranges > 1) {
          progress += ", " + std::to_string(s["ranges_finished"].get<int>()) + "/" +
                      std::to_string(ranges) + " ranges finished";
        }
      }
      if (s.contains("samples") && s["samples"]["drawn"].get<long long>() > 0) {
        const auto& x = s["samples"];
        progress = with_commas(x["compared"].get<long long>()) + "/" +
                   with_commas(x["drawn"].get<long long>()) + " parameter sets compared, " +
                   with_commas(x["mismatches"].get<long long>()) + " differ";
        if (!x["old_ms"]["p50"].is_null()) {
          char times[96];
          std::snprintf(times, sizeof times, "; p50 %.2f -> %.2f ms, p99 %.2f -> %.2f ms",
                        x["old_ms"]["p50"].get<double>(), x["new_ms"]["p50"].get<double>(),
                        x["old_ms"]["p99"].get<double>(), x["new_ms"]["p99"].get<double>());
          progress += times;
        }
      }
      std::printf("  %-28s %-12s %-12s %8d  %s\n", s["id"].get<std::string>().c_str(),
                  s["phase"].get<std::string>().c_str(), s["status"].get<std::string>().c_str(),
                  s["attempts"].get<int>(), progress.c_str());
    }
    if (last_round.round > 0) std::cout << "last shadow-read " << round_text(last_round);
    if (out.contains("slices")) std::cout << slices_text(spec->name, out["slices"]);
    if (!rec->last_error.empty()) {
      std::cout << "last error (step " << rec->last_step << ", SQLSTATE " << rec->last_sqlstate
                << "): " << rec->last_error << "\n";
    }
    return kExitOk;
  } catch (const std::exception& e) {
    return report(e);
  }
}

}  // namespace tandem
