#include "daemon/fleet_host.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <map>
#include <optional>
#include <sstream>

#include "daemon/manager.h"
#include "daemon/metrics.h"
#include "db/connection.h"
#include "fleet/fleet_runner.h"
#include "fleet/fleet_spec.h"
#include "fleet/fleet_status.h"
#include "fleet/fleet_store.h"
#include "tandem/plan.h"
#include "tandem/spec.h"
#include "util/text.h"

namespace tandem {

struct FleetHost::Fleet {
  std::string file;
  FleetSpec fleet;
  std::optional<Spec> spec;
  std::optional<Plan> plan;
  std::string control;  // the control database's DSN
  std::atomic<bool> stop{false};
  std::unique_ptr<FleetRunner> runner;
  std::thread thread;
  std::mutex mu;                          // guards outcome and the rollback below
  std::string outcome;                    // "running", "completed", or why the runner stopped
  std::unique_ptr<FleetRunner> rollback;  // a rollback under way (or the last one)
  std::thread rollback_thread;
  std::atomic<bool> rolling_back{false};
};

FleetHost::FleetHost(Options options) : options_(std::move(options)) {}

FleetHost::~FleetHost() { stop(); }

void FleetHost::start() {
  for (const auto& file : options_.files) {
    auto f = std::make_unique<Fleet>();
    f->file = file;
    auto parsed = load_fleet_file(file);
    if (!parsed.fleet) {
      throw std::runtime_error("fleet file " + file +
                               " does not load: " + parsed.errors.front().to_string());
    }
    f->fleet = std::move(*parsed.fleet);
    auto spec = load_spec_file(f->fleet.migration_path);
    if (!spec.spec) {
      throw std::runtime_error("fleet file " + file +
                               ": its migration does not load: " + spec.errors.front().to_string());
    }
    f->spec = std::move(spec.spec);
    f->plan = make_plan(*f->spec);
    if (f->fleet.name.empty()) f->fleet.name = f->spec->name;
    for (const auto& other : fleets_) {
      if (other->fleet.name == f->fleet.name) {
        throw std::runtime_error("fleet files " + other->file + " and " + file +
                                 " name the same fleet, " + f->fleet.name);
      }
    }
    f->control = f->fleet.control_dsn.empty() ? options_.dsn : f->fleet.control_dsn;
    fleets_.push_back(std::move(f));
  }
  for (auto& f : fleets_) {
    FleetRunOptions o;
    o.control_dsn = f->control;
    o.actor = "tandemd serve (pid " + std::to_string(getpid()) + ")";
    o.stop = &f->stop;
    o.poll = options_.poll;
    o.connect = options_.connect;
    o.keep_going = true;
    f->runner = std::make_unique<FleetRunner>(f->fleet, *f->spec, *f->plan, o);
    Fleet* raw = f.get();
    f->thread = std::thread([this, raw] { run(*raw); });
  }
}

void FleetHost::run(Fleet& f) {
  {
    std::lock_guard<std::mutex> l(f.mu);
    f.outcome = "running";
  }
  while (!stop_ && !f.stop) {
    try {
      const FleetOutcome outcome = f.runner->run();
      std::lock_guard<std::mutex> l(f.mu);
      f.outcome = outcome == FleetOutcome::kCompleted ? "completed" : "stopped";
      spdlog::info("fleet {}: {}", f.fleet.name, f.runner->report());
      return;
    } catch (const std::exception& e) {
      spdlog::error("fleet {}: {}; trying again in 5s", f.fleet.name, e.what());
      {
        std::lock_guard<std::mutex> l(f.mu);
        f.outcome = std::string("error: ") + e.what();
      }
      for (int i = 0; i < 50 && !stop_ && !f.stop; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }
}

void FleetHost::stop() {
  stop_ = true;
  for (auto& f : fleets_) f->stop = true;
  for (auto& f : fleets_) {
    if (f->thread.joinable()) f->thread.join();
    if (f->rollback_thread.joinable()) f->rollback_thread.join();
  }
}

FleetHost::Fleet& FleetHost::find(const std::string& name) {
  std::vector<std::string> names;
  for (auto& f : fleets_) {
    if (f->fleet.name == name) return *f;
    names.push_back(f->fleet.name);
  }
  throw CommandError("unknown_fleet", "this tandemd runs no fleet named \"" + name + "\"" +
                                          (names.empty() ? " (its config names no fleets)"
                                                         : "; it runs " + join(names, ", ")));
}

nlohmann::json FleetHost::handle(const control::Request& r, const std::string& actor) {
  if (r.action == "list") {
    nlohmann::json list = nlohmann::json::array();
    for (auto& f : fleets_) {
      const auto rows = f->runner ? f->runner->snapshot() : std::vector<FleetTargetRow>{};
      std::lock_guard<std::mutex> l(f->mu);
      list.push_back({{"name", f->fleet.name},
                      {"migration", f->spec->name},
                      {"file", f->file},
                      {"targets", rows.size()},
                      {"state", rows.empty() ? "starting" : fleet_state_of(rows)},
                      {"runner", f->outcome}});
    }
    return {{"fleets", list}};
  }
  Fleet& f = find(r.fleet);
  if (!r.wave.empty() && std::none_of(f.fleet.waves.begin(), f.fleet.waves.end(),
                                      [&](const FleetWave& w) { return w.name == r.wave; })) {
    throw CommandError("bad_field", "fleet " + f.fleet.name + " has no wave " + r.wave);
  }
  auto conn = options_.connect ? options_.connect(f.control, "tandemd fleet command")
                               : connect_postgres(f.control, "tandemd fleet command");
  FleetStore store(f.fleet.name);
  if (r.action == "status") {
    auto status = fleet_status_json(*conn, f.fleet.name);
    if (!status) {
      throw CommandError("conflict", "fleet " + f.fleet.name + " has not started yet");
    }
    return *status;
  }
  if (r.action == "events")
    return {{"fleet", f.fleet.name}, {"events", store.events(*conn, r.limit)}};
  if (r.action != "rollback") {
    try {
      return fleet_switch(*conn, f.fleet, r.action, r.wave, r.target, actor);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kBadInput) throw;
      throw CommandError("conflict", e.what());
    }
  }
  const std::string what =
      r.wave.empty() ? "fleet " + f.fleet.name : "wave " + r.wave + " of fleet " + f.fleet.name;
  nlohmann::json out = {{"fleet", f.fleet.name}, {"action", r.action}};
  if (!r.wave.empty()) out["wave"] = r.wave;
  {
    if (f.rolling_back.exchange(true)) {
      throw CommandError("conflict", "fleet " + f.fleet.name + " is rolling back already");
    }
    if (f.rollback_thread.joinable()) f.rollback_thread.join();
    FleetRunOptions o;
    o.control_dsn = f.control;
    o.actor = actor;
    o.stop = &f.stop;
    o.connect = options_.connect;
    o.lease_wait = std::chrono::seconds(60);
    f.rollback = std::make_unique<FleetRunner>(f.fleet, *f.spec, *f.plan, o);
    Fleet* raw = &f;
    const std::string wave = r.wave;
    f.rollback_thread = std::thread([raw, wave] {
      try {
        const FleetOutcome outcome = raw->rollback->rollback(wave);
        spdlog::info("fleet {}: rollback{}: {}", raw->fleet.name,
                     outcome == FleetOutcome::kRolledBack ? " done" : " not done",
                     raw->rollback->report());
      } catch (const std::exception& e) {
        spdlog::error("fleet {}: rollback: {}", raw->fleet.name, e.what());
      }
      raw->rolling_back = false;
    });
    out["message"] = what +
                     " is paused and rolling back, later waves first; `tandemctl fleet "
                     "status " +
                     f.fleet.name + "` follows it. It stays paused afterwards";
  }
  return out;
}

std::string FleetHost::metrics() {
  std::ostringstream out;
  if (fleets_.empty()) return "";
  out << "# HELP tandem_fleet_targets Targets of each fleet by wave and state.\n"
         "# TYPE tandem_fleet_targets gauge\n";
  std::vector<std::pair<Fleet*, std::vector<FleetTargetRow>>> all;
  for (auto& f : fleets_) all.push_back({f.get(), f->runner->snapshot()});
  for (const auto& [f, rows] : all) {
    std::map<std::pair<std::string, std::string>, int> counts;
    for (const auto& r : rows) ++counts[{r.wave, r.state}];
    for (const auto& [key, n] : counts) {
      out << "tandem_fleet_targets{fleet=\"" << escape_label(f->fleet.name) << "\",wave=\""
          << escape_label(key.first) << "\",state=\"" << escape_label(key.second) << "\"} " << n
          << "\n";
    }
  }
  out << "# HELP tandem_fleet_target_state Each target's state (1 for the state it is in).\n"
         "# TYPE tandem_fleet_target_state gauge\n";
  for (const auto& [f, rows] : all) {
    for (const auto& r : rows) {
      out << "tandem_fleet_target_state{fleet=\"" << escape_label(f->fleet.name) << "\",wave=\""
          << escape_label(r.wave) << "\",target=\"" << escape_label(r.target) << "\",state=\""
          << escape_label(r.state) << "\"} 1\n";
    }
  }
  out << "# HELP tandem_fleet_target_rows Rows the target's current step has done.\n"
         "# TYPE tandem_fleet_target_rows gauge\n";
  for (const auto& [f, rows] : all) {
    for (const auto& r : rows) {
      out << "tandem_fleet_target_rows{fleet=\"" << escape_label(f->fleet.name) << "\",wave=\""
          << escape_label(r.wave) << "\",target=\"" << escape_label(r.target) << "\"} "
          << r.rows_done << "\n";
    }
  }
  return out.str();
}

}  // namespace tandem
