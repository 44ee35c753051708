// tandemctl: steers `tandemd serve` through its control socket.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

#include "cli/usage.h"
#include "control/client.h"
#include "control/protocol.h"
#include "engine/shadow_samples.h"
#include "engine/slices.h"
#include "fleet/fleet_status.h"
#include "spec/settings.h"
#include "tandem/phase.h"
#include "tandem_version.h"
#include "util/duration.h"
#include "util/text.h"

namespace {

using nlohmann::json;
using tandem::control::Command;

constexpr int kOk = 0;
constexpr int kRefused = 1;      // the daemon answered with an error
constexpr int kUsage = 2;        // bad command line
constexpr int kUnreachable = 6;  // the socket cannot be reached
constexpr int kTimedOut = 11;    // wait: the state did not come in time

const char* kExitHelp =
    "Exit codes:\n"
    "  0  done\n"
    "  1  tandemd refused the command (the message says why)\n"
    "  2  bad command line\n"
    "  6  the control socket cannot be reached\n"
    " 10  slice: the slice's copy check found differences (it stays where it was)\n"
    " 11  wait: the state did not come within --timeout\n";

// Sends one request, returns the response object. Throws std::runtime_error.
json call(const std::string& socket_path, const std::string& line) {
  std::string response;
  try {
    response = tandem::control::exchange(socket_path, line);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string(e.what()) +
                             (std::string(e.what()).rfind("cannot connect", 0) == 0
                                  ? " (is tandemd serve running? --socket or TANDEM_SOCKET names "
                                    "the socket)"
                                  : ""));
  }
  auto j = json::parse(response, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    throw std::runtime_error("tandemd sent an unreadable response");
  }
  return j;
}

std::string bar(double percent, int width = 20) {
  int filled = static_cast<int>(std::lround(percent / 100.0 * width));
  filled = std::max(0, std::min(width, filled));
  return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
}

std::string eta(const json& seconds) {
  if (!seconds.is_number()) return "-";
  long s = std::lround(seconds.get<double>());
  if (s >= 3600) return std::to_string(s / 3600) + "h" + std::to_string((s % 3600) / 60) + "m";
  if (s >= 60) return std::to_string(s / 60) + "m" + std::to_string(s % 60) + "s";
  return std::to_string(s) + "s";
}

std::string text(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>().empty() ? "-" : v.get<std::string>();
  return v.dump();
}

// A field that is text or null (absent): "" for null.
std::string field(const json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

// A whole number with thousands separators, as tandemd writes them; "-" for null.
std::string count(const json& v) {
  return v.is_number() ? tandem::with_commas(v.get<long long>()) : text(v);
}

void print_status(const json& m, std::ostream& out) {
  out << m["name"].get<std::string>() << "  " << text(m["state"]);
  if (m["phase"].is_string()) out << "  phase " << m["phase"].get<std::string>();
  if (!text(m["step"]).empty() && text(m["step"]) != "-") out << "  step " << text(m["step"]);
  out << "\n";
  if (m["percent"].is_number()) {
    out << "  " << bar(m["percent"].get<double>()) << " " << m["percent"].get<double>() << "%  "
        << count(m["rows_done"]) << "/" << count(m["rows_total"]) << " rows  "
        << count(m["rows_per_second"]) << " rows/s  ETA " << eta(m["eta_seconds"]);
    if (m.value("ranges", 1) > 1) {
      const int workers = m.value("workers", 1);
      out << "  " << m.value("ranges_finished", 0) << "/" << m["ranges"].get<int>()
          << " ranges finished, " << workers << (workers == 1 ? " worker" : " workers");
    }
    out << "\n";
  }
  if (m["waiting_for"].is_string()) {
    out << "  waiting for approval of " << m["waiting_for"].get<std::string>()
        << ": tandemctl approve " << m["name"].get<std::string>() << " "
        << m["waiting_for"].get<std::string>() << "\n";
  }
  if (m.contains("approval_withheld") && m["approval_withheld"].is_string()) {
    out << "  approval withheld: " << m["approval_withheld"].get<std::string>()
        << "\n  (it is taken once a round passes; to cut over with these differences: "
           "tandemctl approve "
        << m["name"].get<std::string>() << " cutover --accept-differences PAIR)\n";
  }
  if (m.contains("round") && m["round"].is_object()) {
    const auto& r = m["round"];
    out << "  shadow-read round " << r["round"].get<int>() << ": "
        << (r["passed"].get<bool>() ? "passed" : "failed") << "\n";
    for (const auto& [pair, p] : r["pairs"].items()) {
      if (p["verdict"].is_string()) out << "    " << pair << ": " << text(p["verdict"]) << "\n";
    }
  }
  if (m.contains("throttled") && m["throttled"].is_string()) {
    out << "  throttled (" << m["throttled"].get<std::string>() << ")";
    if (m.contains("throttled_for_seconds") && m["throttled_for_seconds"].is_number()) {
      out << " for " << eta(m["throttled_for_seconds"]) << " more (until "
          << text(m["throttled_until"]) << ")";
    }
    if (m["throttled"] == "manual") {
      out << "; lift with: tandemctl throttle " << m["name"].get<std::string>() << " --off";
    }
    out << "\n";
  }
  if (m.contains("blocked_by") && m["blocked_by"].is_string()) {
    out << "  waits for migration " << m["blocked_by"].get<std::string>()
        << " to finish: they touch the same table\n";
  }
  if (m.contains("shadow_reads")) {
    for (const auto& [pair, p] : m["shadow_reads"].items()) {
      out << "  shadow read " << pair << ": " << p["compared"].get<long long>() << " compared, "
          << p["differed"].get<long long>() << " differed";
      if (p["differed"].get<long long>() > 0)
        out << " (tandemctl diffs " << m["name"].get<std::string>() << " --pair " << pair << ")";
      out << "\n";
    }
  }
  if (m["desired"] != "run") out << "  asked to " << text(m["desired"]) << "\n";
  if (!text(m["last_error"]).empty() && text(m["last_error"]) != "-") {
    out << "  last error: " << text(m["last_error"]) << "\n";
  }
}

void print_event(const json& e) {
  std::cout << text(e["at"]) << "  " << text(e["kind"]) << "  " << text(e["phase"]) << "  "
            << text(e["step"]) << "  " << text(e["actor"]);
  if (!e["detail"].empty()) std::cout << "  " << e["detail"].dump();
  std::cout << "\n";
}

void print_human(Command c, const json& result) {
  switch (c) {
    case Command::kList: {
      const long long finished = result.value("finished_not_shown", 0LL);
      if (result["migrations"].empty()) {
        std::cout << (finished ? "no migration under way\n" : "no migrations\n");
      }
      for (const auto& m : result["migrations"]) print_status(m, std::cout);
      if (finished) {
        std::cout << "(" << finished
                  << " completed or rolled back not shown: tandemctl list --all)\n";
      }
      break;
    }
    case Command::kSubmit: {
      const std::string n = text(result["name"]);
      for (const auto& w : result.value("warnings", json::array())) {
        std::cerr << "tandemctl: warning: " << text(w) << "\n";
      }
      if (result.value("resubmitted", false)) {
        std::cout << "migration " << n << " submitted again: it starts over (tandemctl watch " << n
                  << ")\n";
      } else if (result.value("submitted", false)) {
        std::cout << "migration " << n << " submitted: tandemd runs it (tandemctl watch " << n
                  << ")\n";
      } else {
        std::cout << "migration " << n
                  << " was submitted already with this spec; nothing changed\n";
      }
      break;
    }
    case Command::kPause:
    case Command::kResume:
    case Command::kRollback:
    case Command::kAbort: {
      const std::string n = text(result["name"]);
      if (c == Command::kPause) {
        std::cout << "migration " << n << " pauses after the batch or step in flight\n";
      } else if (c == Command::kResume) {
        std::cout << "migration " << n << " resumes\n";
      } else if (c == Command::kRollback) {
        std::cout << "migration " << n << " rolls back (tandemctl wait " << n
                  << " --for rolled_back)\n";
      } else {
        std::cout << "migration " << n << " stops now"
                  << (result.value("cancelled", false)
                          ? ": the statement in flight is cancelled (its transaction rolls back)"
                          : "")
                  << "; tandemctl resume " << n << " goes on from its checkpoint\n";
      }
      if (!result.value("recorded", true)) {
        std::cout << "(the database did not answer the daemon in time: this holds in the daemon "
                     "now and is recorded once the database answers)\n";
      }
      break;
    }
    case Command::kApprove: {
      const std::string n = text(result["name"]);
      std::cout << "migration " << n << ": " << text(result["approved"]) << " approved";
      if (result.contains("accepted")) {
        std::string pairs;
        for (const auto& p : result["accepted"]) pairs += (pairs.empty() ? "" : ", ") + text(p);
        std::cout << ", with the differences of " << pairs << " accepted";
      }
      std::cout << "\n";
      break;
    }
    case Command::kForget:
      std::cout << "migration " << text(result["name"])
                << " forgotten: off the list (its state and events stay in the database; a "
                   "rolled-back one may be submitted again)\n";
      break;
    case Command::kStatus:
      print_status(result, std::cout);
      break;
    case Command::kEvents:
      for (const auto& e : result["events"]) print_event(e);
      break;
    case Command::kDiffs:
      std::cout << tandem::format_differences(result["diffs"]);
      break;
    case Command::kSlices:
      std::cout << tandem::slices_text(text(result["name"]), result);
      break;
    case Command::kSlice:
      std::cout << tandem::slice_move_text(result);
      break;
    case Command::kFleet:
      if (result.contains("fleets")) {
        if (result["fleets"].empty()) std::cout << "no fleets\n";
        for (const auto& f : result["fleets"]) {
          std::cout << text(f["name"]) << "  " << text(f["state"]) << "  "
                    << f["targets"].get<long long>() << " targets  migration "
                    << text(f["migration"]) << "  (" << text(f["file"]) << "; runner "
                    << text(f["runner"]) << ")\n";
        }
      } else if (result.contains("targets")) {
        std::cout << tandem::fleet_status_text(result);
      } else if (result.contains("events")) {
        for (const auto& e : result["events"]) {
          std::cout << text(e["at"]) << "  "
                    << (e["target"].is_string() ? text(e["target"]) : std::string("(fleet)"))
                    << "  " << text(e["kind"])
                    << (e["detail"].is_string() ? ": " + text(e["detail"]) : std::string()) << "  "
                    << text(e["actor"]) << "\n";
        }
      } else {
        std::cout << text(result["message"]) << "\n";
      }
      break;
    case Command::kThrottle:
      std::cout << text(result["name"])
                << (result.value("throttled", false) ? ": throttled" : ": throttle lifted");
      if (result["until"].is_string()) {
        std::cout << " until " << result["until"].get<std::string>();
      } else if (result.value("throttled", false)) {
        std::cout << " until lifted (tandemctl throttle " << text(result["name"]) << " --off)";
      }
      std::cout << "\n";
      break;
    case Command::kSet:
      for (const auto& [key, value] : result["settings"].items()) {
        std::cout << key << ": " << text(value) << "\n";
      }
      break;
    default:
      for (auto it = result.begin(); it != result.end(); ++it) {
        std::cout << it.key() << ": " << text(it.value()) << "\n";
      }
  }
}

}  // namespace

// Sends one command. With an answer, `result` holds its result and kOk
// comes back; else the error is printed (the response itself with --json)
// and the exit code comes back.
int request(const std::string& socket_path, Command c, const json& fields, bool as_json,
            json& result) {
  json response;
  try {
    response = call(socket_path, tandem::control::request_line(c, fields));
  } catch (const std::exception& e) {
    std::cerr << "tandemctl: " << e.what() << "\n";
    return kUnreachable;
  }
  if (!response.value("ok", false)) {
    if (as_json) {
      std::cout << response.dump() << "\n";
    } else {
      std::cerr << "tandemctl: " << response["error"].value("message", "error") << " ("
                << response["error"].value("code", "?") << ")\n";
    }
    return kRefused;
  }
  result = response["result"];
  return kOk;
}

// The states a migration can end in until someone acts: waiting for one of
// the others is over when the migration reaches it.
bool settled(const std::string& state) {
  return state == "completed" || state == "failed" || state == "rolled_back";
}

// tandemctl wait: status asked every `interval` until the migration is in
// `target` ("STATE" or "waiting_approval:PHASE"), it settles in another
// state (exit 1), or `timeout` passes (exit 11).
int wait_for_state(const std::string& socket_path, const std::string& name,
                   const std::string& target, std::chrono::milliseconds timeout,
                   std::chrono::milliseconds interval, bool as_json) {
  const auto colon = target.find(':');
  const std::string want = target.substr(0, colon);
  const std::string phase = colon == std::string::npos ? "" : target.substr(colon + 1);
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    json s;
    if (int rc = request(socket_path, Command::kStatus, {{"name", name}}, as_json, s); rc != kOk)
      return rc;
    const std::string state = s.value("state", "");
    const json waiting = s.value("waiting_for", json());
    const bool reached =
        state == want &&
        (phase.empty() || (waiting.is_string() && waiting.get<std::string>() == phase));
    const auto waited =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start);
    if (reached || (settled(state) && state != want)) {
      if (as_json) {
        std::cout << s.dump() << "\n";
      } else if (reached) {
        std::cout << "migration " << name << " is " << target << " (waited "
                  << tandem::format_duration(waited) << ")\n";
      } else {
        std::cerr << "tandemctl: migration " << name << " is " << state << ", not " << target
                  << (field(s, "last_error").empty() ? "" : ": " + field(s, "last_error")) << "\n";
      }
      return reached ? kOk : kRefused;
    }
    if (std::chrono::steady_clock::now() - start >= timeout) {
      std::cerr << "tandemctl: migration " << name << " is still " << state
                << (waiting.is_string() ? " (" + waiting.get<std::string>() + ")" : "") << " after "
                << tandem::format_duration(waited) << ", not " << target << "\n";
      return kTimedOut;
    }
    std::this_thread::sleep_for(interval);
  }
}

// tandemctl events --follow: the tail, then each new event as it is
// recorded (one JSON object per line with --json), until the migration
// settles: exit 0 completed or rolled back, 1 failed.
int follow_events(const std::string& socket_path, const std::string& name, int limit,
                  std::chrono::milliseconds interval, bool as_json) {
  long long last = 0;
  json fields = {{"name", name}, {"limit", limit}};
  for (;;) {
    // The state first: an event recorded between the two requests is
    // printed now or in the next round, never lost.
    json s, result;
    if (int rc = request(socket_path, Command::kStatus, {{"name", name}}, as_json, s); rc != kOk)
      return rc;
    if (int rc = request(socket_path, Command::kEvents, fields, as_json, result); rc != kOk)
      return rc;
    for (const auto& e : result["events"]) {
      if (as_json) {
        std::cout << e.dump() << "\n";
      } else {
        print_event(e);
      }
      last = std::max(last, e.value("id", 0LL));
    }
    std::cout.flush();
    const std::string state = s.value("state", "");
    if (settled(state) && result["events"].size() < 1000) {
      if (!as_json) {
        std::cerr << "tandemctl: migration " << name << " is " << state
                  << (state == "failed" && !field(s, "last_error").empty()
                          ? ": " + field(s, "last_error")
                          : "")
                  << "\n";
      }
      return state == "failed" ? kRefused : kOk;
    }
    fields = {{"name", name}, {"limit", 1000}, {"after", last}};
    if (result["events"].size() < 1000) std::this_thread::sleep_for(interval);
  }
}

// Long, and left so: one CLI11 subcommand per control command, declared
// one after another as `tandemctl --help` lists them.
int main(int argc, char** argv) {
  CLI::App app{"tandemctl - steer tandemd serve through its control socket"};
  app.footer(std::string("\n") + kExitHelp);
  app.set_version_flag("--version", std::string("tandemctl ") + TANDEM_VERSION);
  app.require_subcommand(1);
  const char* env_socket = std::getenv("TANDEM_SOCKET");
  std::string socket_path = env_socket ? env_socket : "/run/tandemd/control.sock";
  bool as_json = false;
  app.add_option("--socket", socket_path,
                 "the control socket (default $TANDEM_SOCKET, else "
                 "/run/tandemd/control.sock)");
  app.add_flag("--json", as_json, "print the daemon's JSON response");

  std::string name, file, phase;
  int limit = 20;
  double interval = 2;
  auto* list = app.add_subcommand(
      "list", "The migrations the daemon owns that are under way, with their state");
  bool list_all = false;
  list->add_flag("-a,--all", list_all, "completed and rolled-back ones too");
  auto* forget = app.add_subcommand(
      "forget",
      "Take a completed or rolled-back migration (or one that failed before changing anything) "
      "off the daemon's list; a rolled-back one may then be submitted again");
  forget->add_option("NAME", name, "the migration")->required();
  auto* status = app.add_subcommand("status", "Phase, step, progress, rate, ETA and last error");
  status->add_option("NAME", name, "the migration (default: all)");
  auto* submit = app.add_subcommand("submit", "Hand a spec file to the daemon, which runs it");
  submit->add_option("FILE", file, "spec file")->required()->check(CLI::ExistingFile);
  auto* pause = app.add_subcommand("pause", "Stop at the next safe point; rows stop moving");
  pause->add_option("NAME", name, "the migration")->required();
  auto* resume = app.add_subcommand("resume", "Go on from where it paused or failed");
  resume->add_option("NAME", name, "the migration")->required();
  auto* approve = app.add_subcommand("approve", "Approve a phase that waits for approval");
  approve->add_option("NAME", name, "the migration")->required();
  approve->add_option("PHASE", phase, "the phase")
      ->required()
      ->check(CLI::IsMember(tandem::phase_names()));
  std::vector<std::string> accept;
  approve->add_option("--accept-differences", accept,
                      "go on past the failed gate of this shadow-read pair (repeatable; "
                      "recorded with who accepted it)");
  auto* rollback = app.add_subcommand("rollback", "Undo the migration, newest step first");
  rollback->add_option("NAME", name, "the migration")->required();
  auto* abort = app.add_subcommand(
      "abort", "Stop now: cancel the batch or step in flight (it rolls back), then stay paused");
  abort->add_option("NAME", name, "the migration")->required();
  std::vector<std::string> throttle_args;
  std::string throttle_for;
  bool throttle_off = false;
  auto* throttle = app.add_subcommand(
      "throttle",
      "Hold the backfill back (after the batch in flight) until lifted, or for a while");
  throttle
      ->add_option("NAME [for DURATION]", throttle_args, "the migration, then optionally: for 10m")
      ->required()
      ->expected(1, 3);
  throttle->add_option("--for", throttle_for, "how long, e.g. 90s, 10m, 2h");
  throttle->add_flag("--off", throttle_off, "lift the throttle");
  std::vector<std::string> assignments;
  auto* set = app.add_subcommand(
      "set", "Change settings of a running migration: batch_size=2000 lock_timeout=1s ...");
  set->add_option("NAME", name, "the migration")->required();
  set->add_option("KEY=VALUE", assignments,
                  "any spec setting: " + tandem::join(tandem::setting_keys(), ", "))
      ->required();
  auto* events = app.add_subcommand("events", "The tail of the audit log");
  events->add_option("NAME", name, "the migration")->required();
  events->add_option("--limit", limit, "how many events (1-1000)")->check(CLI::Range(1, 1000));
  bool follow = false;
  events->add_flag("-f,--follow", follow,
                   "then print each new event as it is recorded (one JSON object per line with "
                   "--json), until the migration is completed or rolled back (exit 0) or failed "
                   "(exit 1)");
  double events_interval = 1;
  events->add_option("--interval", events_interval, "--follow: seconds between looks (default 1)")
      ->check(CLI::Range(0.05, 3600.0));
  std::string pair;
  auto* diffs = app.add_subcommand(
      "diffs", "The shadow-read parameter sets whose old and new answers differed, with the rows");
  diffs->add_option("NAME", name, "the migration")->required();
  diffs->add_option("--pair", pair, "only this shadow-read pair");
  diffs->add_option("--limit", limit, "how many (1-1000)")->check(CLI::Range(1, 1000));
  auto* slices = app.add_subcommand(
      "slices", "A migration done in slices: its slices, their stages and last checks");
  slices->add_option("NAME", name, "the migration")->required();
  std::vector<std::string> slice_args;
  auto* slice = app.add_subcommand(
      "slice",
      "Check one slice's copy, or move it: promote, demote (one stage), rollback (to old)");
  slice->add_option("NAME", name, "the migration")->required();
  slice->add_option("ACTION SLICE", slice_args, "check, promote, demote or rollback; the slice")
      ->required()
      ->expected(2);
  std::vector<std::string> fleet_args;
  std::string fleet_wave, fleet_target;
  auto* fleet = app.add_subcommand(
      "fleet",
      "The fleets the daemon runs (docs/fleet.md): list; status, pause, resume, retry, "
      "approve (cleanup), rollback or events of one");
  fleet
      ->add_option("ACTION FLEET", fleet_args,
                   "list | status FLEET | pause FLEET | resume FLEET | retry FLEET | "
                   "approve FLEET | rollback FLEET | events FLEET")
      ->required()
      ->expected(1, 2);
  fleet->add_option("--wave", fleet_wave, "pause, resume, rollback: only this wave");
  fleet->add_option("--target", fleet_target, "retry: only this target");
  fleet->add_option("--limit", limit, "events: how many of the newest (default 20)");
  auto* watch = app.add_subcommand("watch", "Show status again and again until interrupted");
  watch->add_option("NAME", name, "the migration (default: all)");
  watch->add_option("--interval", interval, "seconds between refreshes")
      ->check(CLI::Range(0.2, 3600.0));
  std::string wait_for, wait_timeout = "1h";
  auto* wait = app.add_subcommand(
      "wait", "Wait until a migration is in a state: completed, waiting_approval[:PHASE], ...");
  wait->add_option("NAME", name, "the migration")->required();
  wait->add_option("--for", wait_for,
                   "the state: completed, failed, rolled_back, paused, running or "
                   "waiting_approval, or waiting_approval:PHASE (e.g. waiting_approval:cutover)")
      ->required();
  wait->add_option("--timeout", wait_timeout, "give up after this long (exit 11), e.g. 30m")
      ->check([](const std::string& v) {
        return tandem::parse_duration(v) ? "" : "expected a duration such as 90s, 30m or 2h";
      });
  double wait_interval = 1;
  wait->add_option("--interval", wait_interval, "seconds between looks")
      ->check(CLI::Range(0.2, 3600.0));
  for (auto* sub : app.get_subcommands({})) {
    sub->footer(kExitHelp);
    // --json after the command too: `tandemctl status NAME --json`.
    sub->add_flag("--json", as_json, "print the daemon's JSON response");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = tandem::usage_error(app, e, argc, argv, "tandemctl");
    return rc == 0 ? kOk : kUsage;
  }

  if (*wait) {
    return wait_for_state(socket_path, name, wait_for, *tandem::parse_duration(wait_timeout),
                          std::chrono::milliseconds(static_cast<int>(wait_interval * 1000)),
                          as_json);
  }

  Command c = Command::kList;
  json fields = json::object();
  if (*status || *watch) {
    c = name.empty() ? Command::kList : Command::kStatus;
    if (!name.empty()) fields["name"] = name;
  } else if (*submit) {
    c = Command::kSubmit;
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text_in;
    text_in << in.rdbuf();
    fields = {{"spec", text_in.str()}, {"file", file}};
  } else if (*pause || *resume || *rollback) {
    c = *pause ? Command::kPause : *resume ? Command::kResume : Command::kRollback;
    fields["name"] = name;
  } else if (*approve) {
    c = Command::kApprove;
    fields = {{"name", name}, {"phase", phase}};
    if (!accept.empty()) fields["accept"] = accept;
  } else if (*abort) {
    c = Command::kAbort;
    fields["name"] = name;
  } else if (*throttle) {
    c = Command::kThrottle;
    fields["name"] = throttle_args[0];
    if (throttle_args.size() == 3 && throttle_args[1] == "for" && throttle_for.empty()) {
      throttle_for = throttle_args[2];
    } else if (throttle_args.size() != 1) {
      std::cerr << "tandemctl: expected: throttle NAME [for DURATION] [--off]\n";
      return kUsage;
    }
    if (!throttle_for.empty()) fields["for"] = throttle_for;
    if (throttle_off) fields["off"] = true;
  } else if (*set) {
    c = Command::kSet;
    json settings = json::object();
    for (const auto& a : assignments) {
      auto eq = a.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::cerr << "tandemctl: expected KEY=VALUE, got \"" << a << "\"\n";
        return kUsage;
      }
      settings[a.substr(0, eq)] = a.substr(eq + 1);
    }
    fields = {{"name", name}, {"settings", settings}};
  } else if (*events) {
    if (follow) {
      return follow_events(socket_path, name, limit,
                           std::chrono::milliseconds(static_cast<int>(events_interval * 1000)),
                           as_json);
    }
    c = Command::kEvents;
    fields = {{"name", name}, {"limit", limit}};
  } else if (*diffs) {
    c = Command::kDiffs;
    fields = {{"name", name}, {"limit", limit}};
    if (!pair.empty()) fields["pair"] = pair;
  } else if (*slices) {
    c = Command::kSlices;
    fields["name"] = name;
  } else if (*slice) {
    c = Command::kSlice;
    fields = {{"name", name}, {"action", slice_args[0]}, {"slice", slice_args[1]}};
  } else if (*forget) {
    c = Command::kForget;
    fields["name"] = name;
  } else if (*fleet) {
    c = Command::kFleet;
    fields = {{"action", fleet_args[0]}};
    if (fleet_args[0] != "list" && fleet_args.size() < 2) {
      std::cerr << "tandemctl: fleet " << fleet_args[0] << " needs the fleet's name\n";
      return kUsage;
    }
    if (fleet_args.size() > 1) fields["fleet"] = fleet_args[1];
    if (!fleet_wave.empty()) fields["wave"] = fleet_wave;
    if (!fleet_target.empty()) fields["target"] = fleet_target;
    if (fleet_args[0] == "events") fields["limit"] = limit;
  } else if (*list) {
    if (list_all) fields["all"] = true;
  } else {
    return kUsage;
  }

  for (;;) {
    json result;
    if (int rc = request(socket_path, c, fields, as_json, result); rc != kOk) return rc;
    // On a terminal the screen is redrawn; into a pipe, one status after
    // another.
    if (*watch && !as_json) std::cout << (isatty(STDOUT_FILENO) ? "\033[H\033[2J" : "\n");
    if (as_json) {
      std::cout << result.dump() << "\n";
    } else {
      print_human(c, result);
    }
    // A slice that did not move, or whose check found differences.
    if (c == Command::kSlice) return tandem::slice_move_exit_code(result);
    if (!*watch) return kOk;
    std::cout.flush();
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(interval * 1000)));
  }
}
