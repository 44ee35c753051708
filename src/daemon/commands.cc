// The control commands `tandemd serve` carries out: one row per command in
// a table, one handler each (docs/control-protocol.md). `list` and
// `status` read memory only; the rest may reach the database through the
// control session.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>

#include "daemon/fleet_host.h"
#include "daemon/manager.h"
#include "daemon/submission_store.h"
#include "daemon/worker.h"
#include "engine/shadow_samples.h"
#include "engine/slices.h"
#include "spec/settings.h"
#include "util/duration.h"
#include "util/text.h"

namespace tandem {
namespace {

using SystemClock = RunControl::SystemClock;

long long epoch_ms(SystemClock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

nlohmann::json MigrationManager::handle(const control::Request& r, const std::string& actor) {
  using control::Command;
  if (r.command == Command::kFleet) {
    if (!fleets_) {
      throw CommandError("unknown_fleet",
                         "this tandemd runs no fleets (its config's `fleets:` names none)");
    }
    nlohmann::json out = fleets_->handle(r, actor);
    if (r.action != "list" && r.action != "status" && r.action != "events") {
      spdlog::info("fleet {}: {} by {}: {}", r.fleet, r.action, actor, out.value("message", ""));
    }
    return out;
  }
  static const std::pair<Command, Handler> kCommands[] = {
      {Command::kList, &MigrationManager::cmd_list},
      {Command::kStatus, &MigrationManager::cmd_status},
      {Command::kSubmit, &MigrationManager::cmd_submit},
      {Command::kPause, &MigrationManager::cmd_pause},
      {Command::kResume, &MigrationManager::cmd_resume},
      {Command::kApprove, &MigrationManager::cmd_approve},
      {Command::kRollback, &MigrationManager::cmd_rollback},
      {Command::kEvents, &MigrationManager::cmd_events},
      {Command::kThrottle, &MigrationManager::cmd_throttle},
      {Command::kSet, &MigrationManager::cmd_set},
      {Command::kAbort, &MigrationManager::cmd_abort},
      {Command::kDiffs, &MigrationManager::cmd_diffs},
      {Command::kSlices, &MigrationManager::cmd_slices},
      {Command::kSlice, &MigrationManager::cmd_slice},
      {Command::kForget, &MigrationManager::cmd_forget},
  };
  for (const auto& [command, handler] : kCommands) {
    if (command != r.command) continue;
    nlohmann::json out = (this->*handler)(r, actor);
    // What changes something is logged with who asked and what it did.
    static const Command kReads[] = {Command::kList, Command::kStatus, Command::kEvents,
                                     Command::kDiffs, Command::kSlices};
    if (std::find(std::begin(kReads), std::end(kReads), command) == std::end(kReads)) {
      nlohmann::json what = out;
      what.erase("name");
      spdlog::info("migration {}: {} by {}: {}", out.value("name", r.name),
                   control::to_string(command), actor, what.dump());
    }
    return out;
  }
  throw CommandError("unknown_command", "unknown command");
}

nlohmann::json MigrationManager::cmd_list(const control::Request& r, const std::string&) {
  nlohmann::json out = nlohmann::json::array();
  int finished = 0;  // left out: completed or rolled back
  for (Worker* w : all_workers()) {
    nlohmann::json s = status_of(*w);
    if (!r.all && (s["state"] == "completed" || s["state"] == "rolled_back")) {
      ++finished;
      continue;
    }
    out.push_back(std::move(s));
  }
  return {{"migrations", out}, {"finished_not_shown", finished}};
}

bool MigrationManager::changed_nothing(Worker& w) {
  if (!w.store || !w.plan) return true;  // its spec never parsed: it never ran
  bool nothing = true;
  with_db([&](Connection& c) {
    for (const auto& s : w.store->steps(c)) {
      const Step* step = w.plan->find(s.step_id);
      // Done (or undone) steps changed something; a step that failed or was
      // cut short changed nothing when its transaction rolled back.
      const bool cut_short = s.status == StepStatus::kRunning || s.status == StepStatus::kFailed;
      const bool left_work = s.status == StepStatus::kDone || s.status == StepStatus::kRolledBack ||
                             (cut_short && (!step || !step->transactional));
      if (left_work && !(step && step->kind == StepKind::kPrecheck)) nothing = false;
    }
  });
  return nothing;
}

nlohmann::json MigrationManager::cmd_forget(const control::Request& r, const std::string& actor) {
  Worker& w = find(r.name);
  Activity a;
  {
    std::lock_guard<std::mutex> l(w.mu);
    a = w.activity;
  }
  const bool finished = a == Activity::kCompleted || a == Activity::kRolledBack;
  if (!finished && !(a == Activity::kFailed && changed_nothing(w))) {
    throw CommandError(
        "not_finished",
        "migration " + r.name + " is " + to_string(a) +
            "; only a completed or rolled-back migration, or one that failed before changing "
            "anything, can be forgotten (to undo it first: tandemctl rollback " +
            r.name + ")");
  }
  with_db([&](Connection& c) { submissions_.forget(c, r.name, actor); });
  retire(w);
  return {{"name", r.name}, {"forgotten", true}};
}

void MigrationManager::retire(Worker& w) {
  w.retired = true;
  {
    std::lock_guard<std::mutex> l(w.mu);
    ++w.generation;
  }
  w.stop = true;
  w.cv.notify_all();
  {
    std::lock_guard<std::mutex> l(w.launch_mu);
    if (w.thread.joinable()) w.thread.join();
  }
  std::lock_guard<std::mutex> l(mu_);
  auto it = workers_.find(w.name);
  if (it != workers_.end() && it->second.get() == &w) {
    retired_.push_back(std::move(it->second));
    workers_.erase(it);
  }
}

nlohmann::json MigrationManager::cmd_status(const control::Request& r, const std::string&) {
  return status_of(find(r.name));
}

nlohmann::json MigrationManager::cmd_submit(const control::Request& r, const std::string& actor) {
  auto parsed = parse_spec(r.spec, r.file);
  if (!parsed.spec) {
    std::vector<std::string> errors;
    for (const auto& e : parsed.errors) errors.push_back(e.to_string());
    throw CommandError("bad_spec", join(errors, "\n"));
  }
  try {
    make_plan(*parsed.spec);
  } catch (const Error& e) {
    throw CommandError("bad_spec", e.what());
  }
  const std::string name = parsed.spec->name;
  // A migration this daemon rolled back may be submitted again, with the
  // same spec or another: it starts over.
  Worker* old = nullptr;
  Activity old_activity = Activity::kStarting;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = workers_.find(name);
    if (it != workers_.end()) old = it->second.get();
  }
  if (old) {
    std::lock_guard<std::mutex> l(old->mu);
    old_activity = old->activity;
  }
  const bool again = old && old_activity == Activity::kRolledBack && old->finished;
  bool inserted = false;
  with_db([&](Connection& c) {
    submissions_.prepare(c);
    if (auto existing = submissions_.spec_text(c, name)) {
      if (again) {
        submissions_.replace(c, name, r.spec, r.file, actor);
        inserted = true;
        return;
      }
      if (old && old_activity == Activity::kCompleted) {
        throw CommandError("conflict", "migration \"" + name +
                                           "\" is completed; a new migration needs a new name "
                                           "(tandemctl forget " +
                                           name + " takes the finished one off the list)");
      }
      if (*existing != r.spec) {
        throw CommandError("conflict", "a different spec named \"" + name +
                                           "\" was submitted already and is " +
                                           (old ? to_string(old_activity) : "not finished") +
                                           "; give this one another name, or roll that one "
                                           "back (tandemctl rollback " +
                                           name + ") and submit again");
      }
      return;  // the same spec again: nothing to do
    }
    submissions_.insert(c, name, r.spec, r.file, actor);
    inserted = true;
  });
  if (again && inserted) retire(*old);
  if (inserted) start_worker(name, r.spec, r.file, Desired::kRun, {});
  nlohmann::json out = {{"name", name}, {"submitted", inserted}};
  if (again && inserted) out["resubmitted"] = true;
  if (!parsed.warnings.empty()) {
    out["warnings"] = nlohmann::json::array();
    for (const auto& w : parsed.warnings) out["warnings"].push_back(w.to_string());
  }
  return out;
}

nlohmann::json MigrationManager::ask(const control::Request& r, const std::string& actor,
                                     Desired desired, const std::string& event) {
  Worker& w = find(r.name);
  const bool recorded = set_desired(w, desired, actor, event);
  return {{"name", r.name}, {"desired", to_string(desired)}, {"recorded", recorded}};
}

nlohmann::json MigrationManager::cmd_pause(const control::Request& r, const std::string& actor) {
  return ask(r, actor, Desired::kPause, "pause_requested");
}

nlohmann::json MigrationManager::cmd_resume(const control::Request& r, const std::string& actor) {
  // A resume after a canary rollback lifts the hold on the slices too.
  Worker& w = find(r.name);
  if (w.spec && w.spec->sliced()) {
    try {
      with_db([&](Connection& c) {
        if (resume_slices(c, *w.spec, actor))
          spdlog::info("migration {}: {} lifted the hold on its slices", w.name, actor);
      });
    } catch (const std::exception& e) {
      spdlog::warn("migration {}: cannot lift the hold on its slices: {}", w.name, e.what());
    }
  }
  return ask(r, actor, Desired::kRun, "resume_requested");
}

nlohmann::json MigrationManager::cmd_rollback(const control::Request& r, const std::string& actor) {
  return ask(r, actor, Desired::kRollback, "rollback_requested");
}

nlohmann::json MigrationManager::cmd_approve(const control::Request& r, const std::string& actor) {
  Worker& w = find(r.name);
  for (const auto& pair : r.accept) {
    if (!w.spec || !w.spec->has_shadow_read(pair)) {
      throw CommandError("bad_field",
                         "migration \"" + w.name + "\" has no shadow-read pair \"" + pair + "\"");
    }
  }
  with_db([&](Connection& c) { submissions_.approve(c, w.name, r.phase, r.accept, actor); });
  {
    std::lock_guard<std::mutex> l(w.mu);
    w.approved.insert(r.phase);
    w.accepted.insert(r.accept.begin(), r.accept.end());
    ++w.generation;
  }
  w.cv.notify_all();
  nlohmann::json out = {{"name", r.name}, {"approved", phase_name(r.phase)}};
  if (!r.accept.empty()) out["accepted"] = r.accept;
  return out;
}

nlohmann::json MigrationManager::cmd_abort(const control::Request& r, const std::string& actor) {
  Worker& w = find(r.name);
  const bool recorded = set_desired(w, Desired::kPause, actor, "abort_requested");
  bool cancelled = cancel_in_flight(w);
  return {{"name", r.name},
          {"desired", to_string(Desired::kPause)},
          {"recorded", recorded},
          {"cancelled", cancelled}};
}

nlohmann::json MigrationManager::cmd_events(const control::Request& r, const std::string&) {
  nlohmann::json events;
  if (!r.name.empty()) find(r.name);
  with_db([&](Connection& c) { events = submissions_.events(c, r.name, r.limit, r.after); });
  return {{"events", events}};
}

nlohmann::json MigrationManager::cmd_diffs(const control::Request& r, const std::string&) {
  find(r.name);
  nlohmann::json diffs;
  with_db([&](Connection& c) { diffs = read_differences(c, r.name, r.pair, r.limit); });
  return {{"name", r.name}, {"diffs", diffs}};
}

namespace {

void sliced_or_refuse(const Spec* spec, const std::string& name) {
  if (!spec || !spec->sliced()) {
    throw CommandError(
        "conflict", "migration \"" + name + "\" is not done in slices (no `slices:` in its spec)");
  }
}

}  // namespace

nlohmann::json MigrationManager::cmd_slices(const control::Request& r, const std::string&) {
  Worker& w = find(r.name);
  sliced_or_refuse(w.spec ? &*w.spec : nullptr, w.name);
  SlicesState s;
  with_db([&](Connection& c) { s = read_slices(c, w.spec->name); });
  record_slices(w, s);
  nlohmann::json j = slices_json(s);
  j["name"] = w.name;
  return j;
}

nlohmann::json MigrationManager::cmd_slice(const control::Request& r, const std::string& actor) {
  Worker& w = find(r.name);
  sliced_or_refuse(w.spec ? &*w.spec : nullptr, w.name);
  // On a session of its own: a slice's copy check reads all of its rows.
  auto conn = open_session("tandemd slices");
  const SliceMoveResult m = slice_action(*conn, *w.spec, r.slice, r.action, actor,
                                         w.control ? w.control->settings() : w.spec->settings);
  record_slices(w, read_slices(*conn, w.spec->name));
  nlohmann::json j = slice_move_json(m, r.action);
  j["name"] = w.name;
  return j;
}

nlohmann::json MigrationManager::cmd_throttle(const control::Request& r, const std::string& actor) {
  Worker& w = find(r.name);
  if (!w.control) throw CommandError("conflict", "migration \"" + w.name + "\" cannot run");
  std::optional<SystemClock::time_point> until;
  if (r.throttle_for) until = SystemClock::now() + *r.throttle_for;
  const nlohmann::json until_ms = until ? nlohmann::json(epoch_ms(*until)) : nlohmann::json();
  nlohmann::json detail = nlohmann::json::object();
  if (r.throttle_for) detail["for"] = format_duration(*r.throttle_for);
  with_db([&](Connection& c) {
    submissions_.set_throttle(c, w.name, r.off ? std::nullopt : std::optional(until_ms), detail,
                              actor);
  });
  {
    std::lock_guard<std::mutex> l(w.mu);
    ++w.live_version;
    if (r.off) {
      w.control->lift_throttle();
    } else {
      w.control->throttle(until);
    }
  }
  return {{"name", w.name},
          {"throttled", !r.off},
          {"until", until ? nlohmann::json(rfc3339(*until)) : nlohmann::json()}};
}

nlohmann::json MigrationManager::cmd_set(const control::Request& r, const std::string& actor) {
  Worker& w = find(r.name);
  if (!w.control) throw CommandError("conflict", "migration \"" + w.name + "\" cannot run");
  Settings next = w.control->settings();
  nlohmann::json changed = nlohmann::json::object();
  for (const auto& [key, value] : r.settings) {
    std::string problem = set_setting(next, key, value);
    if (!problem.empty()) throw CommandError("bad_field", problem);
    changed[key] = value;
  }
  std::string problem = check_settings(next);
  if (!problem.empty()) throw CommandError("bad_field", problem);
  with_db([&](Connection& c) { submissions_.merge_settings(c, w.name, changed, actor); });
  {
    std::lock_guard<std::mutex> l(w.mu);
    ++w.live_version;
    w.control->set_settings(next);
  }
  nlohmann::json now = nlohmann::json::object();
  for (const auto& key : setting_keys()) now[key] = setting_text(next, key);
  return {{"name", w.name}, {"settings", now}};
}

}  // namespace tandem
