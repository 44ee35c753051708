#include "daemon/manager.h"

#include <spdlog/spdlog.h>

#include <array>
#include <cmath>

#include "daemon/metrics.h"
#include "engine/executor.h"
#include "engine/state_store.h"
#include "spec/settings.h"
#include "spec/suggest.h"
#include "tandem_version.h"
#include "util/duration.h"
#include "util/text.h"

namespace tandem {

// One migration the daemon owns. The fields under `mu` are what status shows;
// the worker thread writes them, commands read them.
struct MigrationManager::Worker : ProgressSink {
  std::string name, file, spec_text;
  std::optional<Spec> spec;
  std::optional<Plan> plan;
  std::atomic<bool> stop{false};
  std::atomic<bool> finished{false};  // the thread has returned: completed, rolled back, ...
  std::mutex launch_mu;               // guards thread
  std::thread thread;

  std::mutex mu;
  std::condition_variable cv;
  long generation = 0;          // bumped by every command; a waiting worker wakes on it
  std::string desired = "run";  // run | pause | rollback
  // What was asked for and is not yet recorded in tandem.submissions (the
  // database did not answer): it holds in memory, and the poller records
  // it; until then, what the database says does not overwrite it.
  struct Pending {
    long seq = 0;
    std::string desired, event, actor;
  };
  std::optional<Pending> pending;
  std::set<Phase> approved;
  std::string activity = "starting";  // see docs/control-protocol.md
  std::optional<Phase> phase;
  std::string step;
  long long rows_done = 0;
  std::optional<long long> rows_total;
  double rate = 0;
  std::optional<double> eta;
  int ranges = 1;  // of the current step
  int ranges_finished = 0;
  int workers = 1;  // running batches over them
  std::string last_error;
  std::optional<Phase> waiting_for;
  std::string blocked_by;               // waiting_for_table: the earlier migration and table
  std::unique_ptr<RunControl> control;  // set when the spec parses
  Settings base;                        // the spec's settings, the daemon's defaults for the rest
  MigrationMetrics metrics;

  void phase_started(Phase p) override {
    std::lock_guard<std::mutex> l(mu);
    phase = p;
  }
  void step_started(const Step& s) override {
    std::lock_guard<std::mutex> l(mu);
    phase = s.phase;
    step = s.id;
    rows_done = 0;
    rows_total.reset();
    rate = 0;
    eta.reset();
    ranges = 1;
    ranges_finished = 0;
    workers = 1;
  }
  void progress(const ProgressUpdate& u) override {
    std::lock_guard<std::mutex> l(mu);
    rows_done = u.rows_done;
    rows_total = u.rows_total;
    rate = u.rows_per_second;
    eta = u.eta_seconds;
    ranges = u.ranges;
    ranges_finished = u.ranges_finished;
    workers = u.workers;
  }
  void step_finished(const Step&, double) override {}
  void batch_done(const Step& s, int batch_size, long long rows, double seconds,
                  long long mismatches) override {
    std::lock_guard<std::mutex> l(mu);
    metrics.batch_size = batch_size;
    if (s.kind == StepKind::kVerify) {
      metrics.verify_rows += rows;
      metrics.verify_mismatches += mismatches;
      metrics.verify_batch_seconds.observe(seconds);
    } else {
      metrics.backfill_rows += rows;
      metrics.backfill_batch_seconds.observe(seconds);
    }
  }
  void throttling(const std::string& reason, double seconds) override {
    std::lock_guard<std::mutex> l(mu);
    if (!metrics.throttle_reason.empty()) {
      metrics.throttled_seconds[metrics.throttle_reason] += seconds;
    }
    metrics.throttle_reason = reason;
  }
  void retrying(const std::string& sqlstate) override {
    std::lock_guard<std::mutex> l(mu);
    ++metrics.retries;
    if (sqlstate == "55P03") ++metrics.lock_timeouts;
  }

  void set_activity(const std::string& a, const std::string& error = "") {
    std::lock_guard<std::mutex> l(mu);
    activity = a;
    if (!error.empty()) last_error = error;
  }
  // Waits until a command changes something, or shutdown. Returns false on shutdown.
  bool wait_for_command(long seen, const std::atomic<bool>& shutting_down,
                        std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> l(mu);
    cv.wait_for(l, timeout, [&] { return generation != seen || shutting_down.load(); });
    return !shutting_down.load();
  }
};

namespace {
// How long pause, resume, rollback and abort wait for their record in the
// database before they answer (with "recorded": false; it is recorded later).
constexpr std::chrono::seconds kRecordWait{2};
}  // namespace

MigrationManager::MigrationManager(Options options) : options_(std::move(options)) {}

MigrationManager::~MigrationManager() { shutdown(); }

void MigrationManager::with_db(const std::function<void(Connection&)>& f) {
  std::lock_guard<std::timed_mutex> l(db_mu_);
  on_db(f);
}

bool MigrationManager::try_with_db(const std::function<void(Connection&)>& f,
                                   std::chrono::milliseconds wait) {
  std::unique_lock<std::timed_mutex> l(db_mu_, std::defer_lock);
  if (!l.try_lock_for(wait)) return false;
  on_db(f);
  return true;
}

void MigrationManager::on_db(const std::function<void(Connection&)>& f) {
  for (int attempt = 0;; ++attempt) {
    try {
      if (!db_ || !db_->is_open()) db_ = connect_postgres(options_.dsn, "tandemd control");
      f(*db_);
      return;
    } catch (const Error& e) {
      if (attempt > 0 || (db_ && db_->is_open())) throw;
      db_.reset();  // the connection was lost: once more on a new one
    }
  }
}

void MigrationManager::recover() {
  with_db([&](Connection& c) { StateStore::ensure_schema(c); });
  adopt_submissions();
  if (!poller_.joinable()) poller_ = std::thread([this] { poll_loop(); });
}

void MigrationManager::adopt_submissions() {
  std::vector<std::array<std::string, 5>> fresh;
  with_db([&](Connection& c) {
    Rows r = c.exec(
        "SELECT name, spec_text, file, desired, approved::text FROM tandem.submissions"
        " ORDER BY submitted_at");
    std::lock_guard<std::mutex> l(mu_);
    for (size_t i = 0; i < r.size(); ++i) {
      if (!workers_.count(r.text(i, 0))) {
        fresh.push_back({r.text(i, 0), r.text(i, 1), r.text(i, 2), r.text(i, 3), r.text(i, 4)});
      }
    }
  });
  for (const auto& f : fresh) start_worker(f[0], f[1], f[2], f[3], parse_phase_array(f[4]));
}

void MigrationManager::poll_loop() {
  while (!shutting_down_) {
    {
      std::unique_lock<std::mutex> l(poll_mu_);
      poll_cv_.wait_for(l, options_.poll, [&] { return shutting_down_.load() || record_now_; });
      record_now_ = false;
    }
    if (shutting_down_) return;
    for (Worker* w : all_workers()) {
      try {
        record_pending(*w);
      } catch (const std::exception& e) {
        spdlog::warn("migration {}: cannot record what was asked of it yet: {}", w->name, e.what());
      }
    }
    // Migrations another daemon accepted: this one stands by to take them over.
    try {
      adopt_submissions();
    } catch (const std::exception& e) {
      spdlog::warn("cannot read submitted migrations: {}", e.what());
    }
  }
}

void MigrationManager::start_worker(const std::string& name, const std::string& spec_text,
                                    const std::string& file, const std::string& desired,
                                    const std::set<Phase>& approved) {
  auto w = std::make_unique<Worker>();
  w->name = name;
  w->file = file;
  w->spec_text = spec_text;
  w->desired = desired;
  w->approved = approved;
  auto parsed = parse_spec(spec_text, file);
  if (!parsed.spec) {
    w->activity = "failed";
    w->last_error = "the stored spec no longer parses: " + parsed.errors.at(0).to_string();
  } else {
    w->spec = std::move(parsed.spec);
    w->plan = make_plan(*w->spec);
    w->base = w->spec->settings;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [key, value] : options_.defaults) {
        if (!w->spec->settings_given.count(key)) set_setting(w->base, key, value);
      }
    }
    if (!check_settings(w->base).empty()) w->base = w->spec->settings;
    w->control = std::make_unique<RunControl>(w->base);
  }
  Worker& ref = *w;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (workers_.count(name) || shutting_down_) return;
    workers_[name] = std::move(w);
  }
  if (ref.spec) launch(ref);
}

void MigrationManager::launch(Worker& w) {
  std::lock_guard<std::mutex> l(w.launch_mu);
  if (w.thread.joinable()) {
    if (!w.finished) return;  // still running: it reads the new command itself
    w.thread.join();
  }
  w.finished = false;
  w.thread = std::thread([this, &w] {
    try {
      work(w);
    } catch (const std::exception& e) {
      w.set_activity("failed", std::string("internal error: ") + e.what());
      spdlog::error("migration {}: {}", w.name, e.what());
    }
    w.finished = true;
  });
}

void MigrationManager::work(Worker& w) {
  const std::string actor = "tandemd";
  while (!shutting_down_) {
    try {
      refresh(w);
    } catch (const std::exception& e) {
      spdlog::warn("migration {}: cannot read what was asked of it: {}", w.name, e.what());
    }
    std::string desired;
    std::set<Phase> approved;
    long seen;
    {
      std::lock_guard<std::mutex> l(w.mu);
      desired = w.desired;
      approved = w.approved;
      seen = w.generation;
      w.stop = false;
    }
    if (desired == "pause") {
      w.set_activity("paused");
      if (!w.wait_for_command(seen, shutting_down_, std::chrono::hours(1))) return;
      continue;
    }
    if (desired == "run") {
      std::string blocker;
      try {
        blocker = blocking_migration(w);
      } catch (const std::exception& e) {
        blocker = "unknown (cannot read the state store: " + std::string(e.what()) + ")";
      }
      {
        std::lock_guard<std::mutex> l(w.mu);
        w.blocked_by = blocker;
      }
      if (!blocker.empty()) {
        w.set_activity("waiting_for_table");
        if (!w.wait_for_command(seen, shutting_down_, options_.poll)) return;
        continue;
      }
    }
    RunOptions o;
    o.dsn = options_.dsn;
    o.control = w.control.get();
    o.approve = approved;
    o.actor = actor;
    o.stop = &w.stop;
    o.progress = &w;
    o.lock_wait = std::chrono::milliseconds(500);
    try {
      Executor ex(*w.spec, *w.plan, o);
      if (desired == "rollback") {
        w.set_activity("rolling_back");
        auto outcome = ex.rollback();
        if (outcome == RollbackOutcome::kStopped) continue;
        w.set_activity("rolled_back");
        return;
      }
      w.set_activity("running");
      auto outcome = ex.run();
      switch (outcome) {
        case RunOutcome::kCompleted:
        case RunOutcome::kAlreadyCompleted:
          w.set_activity("completed");
          return;
        case RunOutcome::kWaitingApproval: {
          {
            std::lock_guard<std::mutex> l(w.mu);
            w.activity = "waiting_approval";
            w.waiting_for = ex.waiting_phase();
          }
          if (!w.wait_for_command(seen, shutting_down_, std::chrono::hours(1))) return;
          std::lock_guard<std::mutex> l(w.mu);
          w.waiting_for.reset();
          continue;
        }
        case RunOutcome::kStopped:
        case RunOutcome::kReachedUntil:
          continue;  // a command asked to stop: the loop reads what it wants now
        case RunOutcome::kPaused:
          pause_for(w, "paused: " + ex.pause_reason());
          continue;
      }
    } catch (const Error& e) {
      if (!after_failure(w, seen, e)) return;
    } catch (const std::exception& e) {
      // The database went away, or the like: try again after a pause.
      w.set_activity("retrying", e.what());
      spdlog::warn("migration {}: {}", w.name, e.what());
      if (!w.wait_for_command(seen, shutting_down_, std::chrono::seconds(5))) return;
    }
  }
}

namespace {

using SystemClock = RunControl::SystemClock;

long long epoch_ms(SystemClock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// Applies tandem.submissions.live: the spec's settings with the operator's
// changes on top, and the manual throttle.
void apply_live(RunControl& control, const Settings& base, const nlohmann::json& live) {
  Settings s = base;
  if (live.contains("settings") && live["settings"].is_object()) {
    for (const auto& [key, value] : live["settings"].items()) {
      if (value.is_string()) set_setting(s, key, value.get<std::string>());
    }
  }
  control.set_settings(s);
  const auto& t = live.contains("throttle") ? live["throttle"] : nlohmann::json();
  if (!t.is_object()) {
    control.lift_throttle();
  } else if (t.contains("until") && t["until"].is_number_integer()) {
    control.throttle(
        SystemClock::time_point(std::chrono::milliseconds(t["until"].get<long long>())));
  } else {
    control.throttle(std::nullopt);
  }
}

}  // namespace

void MigrationManager::refresh(Worker& w) {
  if (!w.spec) return;
  std::optional<std::array<std::string, 3>> row;
  const bool read = try_with_db(
      [&](Connection& c) {
        Rows r = c.exec(
            "SELECT desired, approved::text, live::text FROM tandem.submissions WHERE name = $1",
            {w.name});
        if (!r.empty()) row = std::array<std::string, 3>{r.text(0, 0), r.text(0, 1), r.text(0, 2)};
      },
      std::chrono::seconds(1));
  // The control session busy for longer (a database that does not answer
  // it): the worker goes on with what it was told in memory.
  if (!read) spdlog::debug("migration {}: the control session is busy; not re-read", w.name);
  if (!row) return;
  apply_live(*w.control, w.base, nlohmann::json::parse((*row)[2], nullptr, false));
  std::lock_guard<std::mutex> l(w.mu);
  if (!w.pending) w.desired = (*row)[0];
  w.approved = parse_phase_array((*row)[1]);
}

std::string MigrationManager::blocking_migration(Worker& w) {
  const std::set<std::string> mine = tables_touched(*w.spec);
  if (mine.empty()) return "";
  std::vector<std::pair<std::string, std::string>> earlier;
  with_db([&](Connection& c) {
    // Once started, a migration holds its tables: the gate is only for starting.
    Rows started = c.exec(
        "SELECT 1 FROM tandem.migrations WHERE name = $1 AND state <> 'rolled_back'", {w.name});
    if (!started.empty()) return;
    Rows r = c.exec(
        "SELECT s.name, s.spec_text FROM tandem.submissions s"
        " LEFT JOIN tandem.migrations m ON m.name = s.name,"
        " (SELECT submitted_at, name FROM tandem.submissions WHERE name = $1) me"
        " WHERE (s.submitted_at, s.name) < (me.submitted_at, me.name)"
        " AND coalesce(m.state, 'pending') NOT IN ('completed', 'rolled_back')"
        " AND NOT (m.name IS NULL AND s.desired = 'rollback')"
        " UNION ALL"
        // Migrations run by `tandemd run`, which the daemon does not own.
        " SELECT m.name, m.spec_text FROM tandem.migrations m"
        " WHERE m.name <> $1 AND m.state NOT IN ('completed', 'rolled_back')"
        " AND NOT EXISTS (SELECT 1 FROM tandem.submissions s WHERE s.name = m.name)",
        {w.name});
    for (size_t i = 0; i < r.size(); ++i) earlier.emplace_back(r.text(i, 0), r.text(i, 1));
  });
  for (const auto& [name, text] : earlier) {
    auto parsed = parse_spec(text, name);
    if (!parsed.spec) continue;
    for (const auto& table : tables_touched(*parsed.spec)) {
      if (mine.count(table)) return name + " (" + table + ")";
    }
  }
  return "";
}

bool MigrationManager::cancel_in_flight(Worker& w) {
  const std::vector<int> pids = w.control ? w.control->backend_pids() : std::vector<int>{};
  if (pids.empty() || w.finished) return false;
  std::string list;
  for (int pid : pids) list += (list.empty() ? "{" : ",") + std::to_string(pid);
  list += "}";
  // On a session of its own: the control session may be the one that is stuck.
  auto c = connect_postgres(options_.dsn, "tandemd control cancel");
  // Only that migration's own sessions: a pid may have been reused.
  Rows r = c->exec(
      "SELECT bool_or(pg_cancel_backend(pid)) FROM pg_stat_activity"
      " WHERE pid = ANY ($1::int[]) AND application_name LIKE $2 AND state = 'active'",
      {list, "tandemd " + w.name + " pid %"});
  return !r.empty() && r.text(0, 0) == "t";
}

nlohmann::json MigrationManager::throttle(Worker& w, const control::Request& r,
                                          const std::string& actor) {
  if (!w.control) throw CommandError("conflict", "migration \"" + w.name + "\" cannot run");
  std::optional<SystemClock::time_point> until;
  if (r.throttle_for) until = SystemClock::now() + *r.throttle_for;
  with_db([&](Connection& c) {
    Transaction tx(c);
    if (r.off) {
      tx.exec(
          "UPDATE tandem.submissions SET live = live - 'throttle', updated_at = now()"
          " WHERE name = $1",
          {w.name});
      StateStore(w.name).event(c, "throttle_lifted", std::nullopt, "", actor);
    } else {
      nlohmann::json t = {{"until", until ? nlohmann::json(epoch_ms(*until)) : nlohmann::json()}};
      tx.exec(
          "UPDATE tandem.submissions SET live = jsonb_set(live, '{throttle}', $2::jsonb),"
          " updated_at = now() WHERE name = $1",
          {w.name, t.dump()});
      nlohmann::json detail = nlohmann::json::object();
      if (r.throttle_for) detail["for"] = format_duration(*r.throttle_for);
      StateStore(w.name).event(c, "throttle_requested", std::nullopt, "", actor, detail);
    }
    tx.commit();
  });
  if (r.off) {
    w.control->lift_throttle();
  } else {
    w.control->throttle(until);
  }
  return {{"name", w.name},
          {"throttled", !r.off},
          {"until", until ? nlohmann::json(epoch_ms(*until)) : nlohmann::json()}};
}

nlohmann::json MigrationManager::set_settings(Worker& w, const control::Request& r,
                                              const std::string& actor) {
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
  with_db([&](Connection& c) {
    Transaction tx(c);
    tx.exec(
        "UPDATE tandem.submissions SET live = jsonb_set(live, '{settings}',"
        " coalesce(live->'settings', '{}') || $2::jsonb), updated_at = now() WHERE name = $1",
        {w.name, changed.dump()});
    StateStore(w.name).event(c, "settings_changed", std::nullopt, "", actor, changed);
    tx.commit();
  });
  w.control->set_settings(next);
  nlohmann::json now = nlohmann::json::object();
  for (const auto& key : setting_keys()) now[key] = setting_text(next, key);
  return {{"name", w.name}, {"settings", now}};
}

std::vector<MigrationManager::Worker*> MigrationManager::all_workers() {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<Worker*> all;
  for (auto& [n, w] : workers_) all.push_back(w.get());
  return all;
}

MigrationManager::Worker& MigrationManager::find(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = workers_.find(name);
  if (it == workers_.end()) {
    std::vector<std::string> names;
    for (const auto& [n, w] : workers_) names.push_back(n);
    throw CommandError("unknown_migration", "no migration \"" + name + "\" was submitted" +
                                                (names.empty() ? "" : did_you_mean(name, names)));
  }
  return *it->second;
}

nlohmann::json MigrationManager::status_of(Worker& w) {
  std::lock_guard<std::mutex> l(w.mu);
  nlohmann::json j = {{"name", w.name},
                      {"file", w.file},
                      {"state", w.activity},
                      {"desired", w.desired},
                      {"step", w.step},
                      {"rows_done", w.rows_done},
                      {"rows_per_second", std::llround(w.rate)},
                      {"ranges", w.ranges},
                      {"ranges_finished", w.ranges_finished},
                      {"workers", w.workers},
                      {"last_error", w.last_error}};
  j["phase"] = w.phase ? nlohmann::json(phase_name(*w.phase)) : nlohmann::json();
  j["rows_total"] = w.rows_total ? nlohmann::json(*w.rows_total) : nlohmann::json();
  j["percent"] =
      w.rows_total && *w.rows_total > 0
          ? nlohmann::json(std::min(100.0, std::round(1000.0 * w.rows_done / *w.rows_total) / 10))
          : nlohmann::json();
  j["eta_seconds"] = w.eta ? nlohmann::json(std::llround(*w.eta)) : nlohmann::json();
  j["waiting_for"] = w.waiting_for ? nlohmann::json(phase_name(*w.waiting_for)) : nlohmann::json();
  j["blocked_by"] = w.blocked_by.empty() ? nlohmann::json() : nlohmann::json(w.blocked_by);
  // Throttled: by hand (maybe until a time), or by a signal right now.
  std::string reason = w.metrics.throttle_reason;
  std::optional<RunControl::SystemClock::time_point> until;
  if (w.control && w.control->manually_throttled()) {
    reason = "manual";
    until = w.control->throttle_until();
  }
  j["throttled"] = reason.empty() ? nlohmann::json() : nlohmann::json(reason);
  j["throttled_until"] =
      until ? nlohmann::json(
                  std::chrono::duration_cast<std::chrono::milliseconds>(until->time_since_epoch())
                      .count())
            : nlohmann::json();
  if (w.control) {
    nlohmann::json settings = nlohmann::json::object();
    const Settings current = w.control->settings();
    for (const auto& key : setting_keys()) settings[key] = setting_text(current, key);
    j["settings"] = settings;
  }
  return j;
}

bool MigrationManager::set_desired(Worker& w, const std::string& desired, const std::string& actor,
                                   const std::string& event) {
  // In memory first: the migration obeys at its next safe point whether or
  // not the database answers the control session.
  long seq;
  {
    std::lock_guard<std::mutex> l(w.mu);
    w.desired = desired;
    ++w.generation;
    w.stop = desired != "run";
    seq = w.generation;
    w.pending = Worker::Pending{seq, desired, event, actor};
  }
  w.cv.notify_all();
  // A migration that completed or was rolled back starts again when asked to.
  if (w.finished && w.spec && !shutting_down_) launch(w);
  // Recorded by the poller; the answer waits for it a little.
  nudge_poller();
  std::unique_lock<std::mutex> l(w.mu);
  w.cv.wait_for(l, kRecordWait, [&] { return !w.pending || w.pending->seq != seq; });
  return !w.pending || w.pending->seq != seq;
}

void MigrationManager::record_pending(Worker& w) {
  std::optional<Worker::Pending> p;
  {
    std::lock_guard<std::mutex> l(w.mu);
    p = w.pending;
  }
  if (!p) return;
  with_db([&](Connection& c) {
    Transaction tx(c);
    tx.exec("UPDATE tandem.submissions SET desired = $2, updated_at = now() WHERE name = $1",
            {w.name, p->desired});
    if (!p->event.empty()) StateStore(w.name).event(c, p->event, std::nullopt, "", p->actor);
    tx.commit();
  });
  {
    std::lock_guard<std::mutex> l(w.mu);
    if (w.pending && w.pending->seq == p->seq) w.pending.reset();  // a newer ask stays
  }
  w.cv.notify_all();
}

bool MigrationManager::after_failure(Worker& w, long seen, const Error& e) {
  switch (e.failure()) {
    case Failure::kLockHeld:
      // Another daemon runs it; take over when that one goes away.
      w.set_activity("running_elsewhere", e.what());
      return w.wait_for_command(seen, shutting_down_, options_.poll);
    case Failure::kRollbackRefused:
      pause_for(w, e.what(), "failed");
      return true;
    case Failure::kStepFailed:
      w.set_activity("failed", e.what());
      return w.wait_for_command(seen, shutting_down_, std::chrono::hours(1));
    case Failure::kStopped:  // run() and rollback() return these as outcomes
    case Failure::kPaused:
    case Failure::kNone:
      break;
  }
  // The database went away, or the like: try again after a pause.
  w.set_activity("retrying", e.what());
  spdlog::warn("migration {}: {}", w.name, e.what());
  return w.wait_for_command(seen, shutting_down_, std::chrono::seconds(5));
}

void MigrationManager::pause_for(Worker& w, const std::string& why, const std::string& activity) {
  {
    std::lock_guard<std::mutex> l(w.mu);
    w.desired = "pause";
    w.pending = Worker::Pending{++w.generation, "pause", "", ""};
  }
  w.set_activity(activity, why);
  nudge_poller();
}

void MigrationManager::nudge_poller() {
  {
    std::lock_guard<std::mutex> l(poll_mu_);
    record_now_ = true;
  }
  poll_cv_.notify_all();
}

nlohmann::json MigrationManager::handle(const control::Request& r, const std::string& actor) {
  using control::Command;
  switch (r.command) {
    case Command::kList: {
      nlohmann::json out = nlohmann::json::array();
      for (Worker* w : all_workers()) out.push_back(status_of(*w));
      return {{"migrations", out}};
    }
    case Command::kStatus:
      return status_of(find(r.name));
    case Command::kSubmit: {
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
      bool inserted = false;
      with_db([&](Connection& c) {
        StateStore::ensure_schema(c);
        Rows existing = c.exec("SELECT spec_text FROM tandem.submissions WHERE name = $1", {name});
        if (!existing.empty()) {
          if (existing.text(0, 0) != r.spec) {
            throw CommandError("conflict", "a different spec named \"" + name +
                                               "\" was submitted already; give this one "
                                               "another name");
          }
          return;  // the same spec again: nothing to do
        }
        Transaction tx(c);
        tx.exec(
            "INSERT INTO tandem.submissions (name, spec_text, file, submitted_by)"
            " VALUES ($1, $2, $3, $4)",
            {name, r.spec, r.file, actor});
        StateStore(name).event(c, "submitted", std::nullopt, "", actor, {{"file", r.file}});
        tx.commit();
        inserted = true;
      });
      if (inserted) start_worker(name, r.spec, r.file, "run", {});
      return {{"name", name}, {"submitted", inserted}};
    }
    case Command::kPause: {
      Worker& w = find(r.name);
      const bool recorded = set_desired(w, "pause", actor, "pause_requested");
      return {{"name", r.name}, {"desired", "pause"}, {"recorded", recorded}};
    }
    case Command::kResume: {
      Worker& w = find(r.name);
      const bool recorded = set_desired(w, "run", actor, "resume_requested");
      return {{"name", r.name}, {"desired", "run"}, {"recorded", recorded}};
    }
    case Command::kRollback: {
      Worker& w = find(r.name);
      const bool recorded = set_desired(w, "rollback", actor, "rollback_requested");
      return {{"name", r.name}, {"desired", "rollback"}, {"recorded", recorded}};
    }
    case Command::kApprove: {
      Worker& w = find(r.name);
      with_db([&](Connection& c) {
        Transaction tx(c);
        tx.exec(
            "UPDATE tandem.submissions SET approved = array_append(approved, $2::int),"
            " updated_at = now() WHERE name = $1 AND NOT ($2::int = ANY (approved))",
            {w.name, std::to_string(static_cast<int>(r.phase))});
        StateStore(w.name).event(c, "approve_requested", r.phase, "", actor);
        tx.commit();
      });
      {
        std::lock_guard<std::mutex> l(w.mu);
        w.approved.insert(r.phase);
        ++w.generation;
      }
      w.cv.notify_all();
      return {{"name", r.name}, {"approved", phase_name(r.phase)}};
    }
    case Command::kThrottle:
      return throttle(find(r.name), r, actor);
    case Command::kSet:
      return set_settings(find(r.name), r, actor);
    case Command::kAbort: {
      Worker& w = find(r.name);
      const bool recorded = set_desired(w, "pause", actor, "abort_requested");
      bool cancelled = cancel_in_flight(w);
      return {
          {"name", r.name}, {"desired", "pause"}, {"recorded", recorded}, {"cancelled", cancelled}};
    }
    case Command::kEvents: {
      nlohmann::json events;
      if (!r.name.empty()) find(r.name);
      with_db([&](Connection& c) {
        if (StateStore::schema_version(c) == 0) {
          events = nlohmann::json::array();
          return;
        }
        events = StateStore(r.name).events_json(c, r.limit);
      });
      return {{"events", events}};
    }
  }
  throw CommandError("unknown_command", "unknown command");
}

void MigrationManager::shutdown() {
  shutting_down_ = true;
  poll_cv_.notify_all();
  if (poller_.joinable()) poller_.join();
  const std::vector<Worker*> all = all_workers();
  for (Worker* w : all) {
    w->stop = true;
    w->cv.notify_all();
  }
  // The batch or step in flight may finish within the grace period; after
  // it, its statement is cancelled (its transaction rolls back and runs
  // again on resume).
  std::chrono::milliseconds grace;
  {
    std::lock_guard<std::mutex> l(mu_);
    grace = options_.shutdown_grace;
  }
  auto deadline = std::chrono::steady_clock::now() + grace;
  auto running = [&] {
    std::vector<Worker*> out;
    for (Worker* w : all) {
      std::lock_guard<std::mutex> l(w->launch_mu);
      if (w->thread.joinable() && !w->finished) out.push_back(w);
    }
    return out;
  };
  while (!running().empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (Worker* w : running()) {
    try {
      if (cancel_in_flight(*w)) {
        spdlog::warn("migration {}: cancelled the statement in flight to stop in time", w->name);
      }
    } catch (const std::exception& e) {
      spdlog::warn("migration {}: cannot cancel its statement: {}", w->name, e.what());
    }
  }
  for (Worker* w : all) {
    std::lock_guard<std::mutex> l(w->launch_mu);
    if (w->thread.joinable()) w->thread.join();
  }
}

std::string MigrationManager::summary() {
  std::vector<std::string> parts;
  const std::vector<Worker*> all = all_workers();
  for (Worker* w : all) {
    std::lock_guard<std::mutex> l(w->mu);
    std::string s = w->name + " " + w->activity;
    if (w->activity == "running" && w->phase) s += " " + std::string(phase_name(*w->phase));
    if (w->activity == "running" && w->rows_total && *w->rows_total > 0) {
      s +=
          " " + std::to_string(std::min<long long>(100, 100 * w->rows_done / *w->rows_total)) + "%";
    }
    parts.push_back(s);
  }
  return std::to_string(all.size()) + (all.size() == 1 ? " migration" : " migrations") +
         (parts.empty() ? "" : ": " + join(parts, ", "));
}

}  // namespace tandem

namespace tandem {

void MigrationManager::reconfigure(std::map<std::string, std::string> defaults,
                                   std::chrono::milliseconds shutdown_grace) {
  std::lock_guard<std::mutex> l(mu_);
  options_.defaults = std::move(defaults);
  options_.shutdown_grace = shutdown_grace;
}

std::string MigrationManager::metrics() {
  std::vector<MigrationMetrics> all;
  for (Worker* w : all_workers()) {
    std::lock_guard<std::mutex> l(w->mu);
    MigrationMetrics m = w->metrics;
    m.name = w->name;
    m.state = w->activity;
    m.phase = w->phase;
    m.step_rows_done = w->rows_done;
    m.step_rows_total = w->rows_total;
    m.eta_seconds = w->eta;
    m.ranges = w->ranges;
    m.ranges_finished = w->ranges_finished;
    m.workers = w->workers;
    if (w->control) {
      if (w->control->manually_throttled()) m.throttle_reason = "manual";
    }
    all.push_back(std::move(m));
  }
  return render_metrics(all, TANDEM_VERSION);
}

}  // namespace tandem
