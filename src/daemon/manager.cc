#include "daemon/manager.h"

#include <spdlog/spdlog.h>

#include <array>
#include <cmath>

#include "daemon/fleet_host.h"
#include "daemon/metrics.h"
#include "daemon/submission_store.h"
#include "daemon/worker.h"
#include "engine/executor.h"
#include "engine/shadow_samples.h"
#include "engine/slices.h"
#include "engine/state_store.h"
#include "spec/settings.h"
#include "spec/suggest.h"
#include "tandem_version.h"
#include "util/duration.h"
#include "util/json.h"
#include "util/text.h"

namespace tandem {

namespace {
// How long pause, resume, rollback and abort wait for their record in the
// database before they answer (with "recorded": false; it is recorded later).
constexpr std::chrono::seconds kRecordWait{2};
}  // namespace

MigrationManager::MigrationManager(Options options)
    : options_(std::move(options)),
      own_submissions_(options_.submissions ? nullptr : std::make_unique<PgSubmissionStore>()),
      submissions_(options_.submissions ? *options_.submissions : *own_submissions_),
      hooks_(options_.hooks.enabled() ? std::make_unique<Hooks>(options_.hooks) : nullptr) {}

std::unique_ptr<Connection> MigrationManager::open_session(const std::string& app) const {
  return options_.connect ? options_.connect(options_.dsn, app)
                          : connect_postgres(options_.dsn, app);
}

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
      if (!db_ || !db_->is_open()) db_ = open_session("tandemd control");
      db_up_ = true;
      f(*db_);
      return;
    } catch (const Error& e) {
      if (!db_ || !db_->is_open()) db_up_ = false;
      if (attempt > 0 || (db_ && db_->is_open())) throw;
      db_.reset();  // the connection was lost: once more on a new one
    }
  }
}

void MigrationManager::recover() {
  with_db([&](Connection& c) { submissions_.prepare(c); });
  adopt_submissions();
  if (!options_.fleets.empty() && !fleets_) {
    FleetHost::Options o;
    o.files = options_.fleets;
    o.dsn = options_.dsn;
    o.connect = options_.connect;
    auto host = std::make_unique<FleetHost>(o);
    host->start();
    fleets_ = std::move(host);
  }
  if (!poller_.joinable()) poller_ = std::thread([this] { poll_loop(); });
}

void MigrationManager::adopt_submissions() {
  std::vector<SubmissionStore::Submission> fresh;
  with_db([&](Connection& c) {
    auto all = submissions_.all(c);
    std::lock_guard<std::mutex> l(mu_);
    for (auto& s : all) {
      if (!workers_.count(s.name)) fresh.push_back(std::move(s));
    }
  });
  for (const auto& f : fresh) start_worker(f.name, f.spec_text, f.file, f.desired, f.approved);
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
                                    const std::string& file, Desired desired,
                                    const std::set<Phase>& approved) {
  auto w = std::make_unique<Worker>();
  w->name = name;
  w->file = file;
  w->spec_text = spec_text;
  w->desired = desired;
  w->approved = approved;
  auto parsed = parse_spec(spec_text, file);
  if (!parsed.spec) {
    w->activity = Activity::kFailed;
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
    w->store = options_.migration_store ? options_.migration_store(name)
                                        : std::make_shared<StateStore>(name);
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
      w.set_activity(Activity::kFailed, std::string("internal error: ") + e.what());
      spdlog::error("migration {}: {}", w.name, e.what());
    }
    w.finished = true;
  });
}

bool MigrationManager::run_once(Worker& w, Desired desired, const std::set<Phase>& approved,
                                long seen) {
  const std::string actor = "tandemd";
  RunOptions o;
  o.dsn = options_.dsn;
  o.control = w.control.get();
  o.approve = approved;
  {
    std::lock_guard<std::mutex> l(w.mu);
    o.accept_differences = w.accepted;
  }
  o.actor = actor;
  o.stop = &w.stop;
  o.progress = &w;
  o.lock_wait = std::chrono::milliseconds(500);
  o.connect = options_.connect;
  o.store = w.store.get();
  o.under_daemon = true;
  o.hooks = hooks_.get();
  try {
    Executor ex(*w.spec, *w.plan, o);
    if (desired == Desired::kRollback) {
      w.set_activity(Activity::kRollingBack);
      auto outcome = ex.rollback();
      if (outcome == RollbackOutcome::kStopped) return true;
      w.set_activity(Activity::kRolledBack);
      return false;
    }
    w.set_activity(Activity::kRunning);
    auto outcome = ex.run();
    switch (outcome) {
      case RunOutcome::kCompleted:
      case RunOutcome::kAlreadyCompleted:
        w.set_activity(Activity::kCompleted);
        return false;
      case RunOutcome::kWaitingApproval:
        return wait_at_gate(w, ex, approved.count(Phase::kCutover) > 0, seen);
      case RunOutcome::kStopped:
      case RunOutcome::kReachedUntil:
        return true;  // a command asked to stop: the loop reads what it wants now
      case RunOutcome::kPaused:
        pause_for(w, "paused: " + ex.pause_reason());
        return true;
    }
  } catch (const Error& e) {
    return after_failure(w, seen, e);
  } catch (const std::exception& e) {
    // The database went away, or the like: try again after a pause.
    w.set_activity(Activity::kRetrying, e.what());
    spdlog::warn("migration {}: {}", w.name, e.what());
    return w.wait_for_command(seen, shutting_down_, std::chrono::seconds(5));
  }
  return true;
}

namespace {

// How often a migration in slices waiting at its cutover gate reads them
// (they move from outside the daemon too: `tandemd slices`).
constexpr std::chrono::milliseconds kSlicesLookEvery{2000};

}  // namespace

bool MigrationManager::wait_at_gate(Worker& w, Executor& ex, bool cutover_approved, long seen) {
  {
    std::lock_guard<std::mutex> l(w.mu);
    w.activity = Activity::kWaitingApproval;
    w.waiting_for = ex.waiting_phase();
    w.approval_withheld = ex.approval_withheld();
  }
  const std::string withheld = ex.approval_withheld();
  spdlog::info("migration {}: waiting for approval of {}{}", w.name, phase_name(ex.waiting_phase()),
               withheld.empty() ? "" : " (an approval is withheld: " + withheld + ")");
  const bool rounds = ex.waiting_phase() == Phase::kCutover && !w.spec->shadow_reads.empty();
  if (!w.spec->shadow_reads.empty()) {
    try {
      // The last round, as the database holds it (an earlier daemon's too).
      std::optional<RoundReport> last;
      with_db([&](Connection& c) {
        RoundReport r = read_last_round(c, w.spec->name, w.spec->shadow_reads, nullptr);
        if (r.round > 0) last = r;
      });
      std::lock_guard<std::mutex> l(w.mu);
      w.round_report = last;
    } catch (const std::exception& e) {
      spdlog::warn("migration {}: cannot read its last shadow-read round: {}", w.name, e.what());
    }
  }
  // At the cutover gate: shadow-read rounds against live traffic, one every
  // shadow_round_interval, until a command comes. In slices: the canary of
  // live slices every canary.every, and the slices looked at every few
  // seconds (they move from outside too, `tandemd slices`): once every
  // slice is complete, the run goes on to cutover.
  using Clock = std::chrono::steady_clock;
  const Slices* sliced = ex.waiting_phase() == Phase::kCutover ? w.spec->sliced() : nullptr;
  const Canary* canary = sliced && sliced->canary ? &*sliced->canary : nullptr;
  auto next_round = Clock::now() + w.control->settings().shadow_round_interval;
  auto next_canary = Clock::now() + (canary ? canary->every : kSlicesLookEvery);
  auto next_look = Clock::now() + kSlicesLookEvery;
  // Held by a failing before-cutover hook: the run tries it again this often.
  const bool held = ex.held_by_hook() && hooks_;
  const auto next_hook = Clock::now() + (held ? hooks_->settings().retry : std::chrono::hours(1));
  // Whether complete slices are all cutover waits for (else an approval is).
  const bool look = sliced && (!w.spec->requires_approval(Phase::kCutover) || cutover_approved);
  for (;;) {
    const auto every = w.control->settings().shadow_round_interval;
    const bool due = rounds && every.count() > 0;
    auto until = Clock::now() + std::chrono::hours(1);
    if (due) until = std::min(until, next_round);
    if (canary) until = std::min(until, next_canary);
    if (sliced) until = std::min(until, next_look);
    if (held) until = std::min(until, next_hook);
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (!w.wait_for_command(seen, shutting_down_, std::max(wait, std::chrono::milliseconds(0))))
      return false;
    {
      std::lock_guard<std::mutex> l(w.mu);
      if (w.generation != seen) break;
    }
    if (sliced && slices_at_gate(w, canary, look, next_canary, next_look)) break;
    if (held && Clock::now() >= next_hook) break;
    if (!due || Clock::now() < next_round) continue;
    next_round = Clock::now() + every;
    const RoundReport r = ex.shadow_round();
    if (!r.stopped) {
      std::lock_guard<std::mutex> l(w.mu);
      w.round_report = r;
    }
    // A stop, or an approval waiting for a round that passes: run again
    // (the approval is judged on the last round).
    if (r.stopped || (r.passed() && cutover_approved)) break;
  }
  std::lock_guard<std::mutex> l(w.mu);
  w.waiting_for.reset();
  w.approval_withheld.clear();
  return true;
}

void MigrationManager::record_slices(Worker& w, const SlicesState& s) {
  std::lock_guard<std::mutex> l(w.mu);
  w.slices = slices_json(s);
  w.metrics.slices.clear();
  for (const auto& x : s.slices) w.metrics.slices[x.name] = {to_string(x.stage), x.keys};
}

bool MigrationManager::slices_at_gate(Worker& w, const Canary* canary, bool look,
                                      std::chrono::steady_clock::time_point& next_canary,
                                      std::chrono::steady_clock::time_point& next_look) {
  using Clock = std::chrono::steady_clock;
  bool go_on = false;
  try {
    with_db([&](Connection& c) {
      if (canary && Clock::now() >= next_canary) {
        next_canary = Clock::now() + canary->every;
        const CanaryOutcome o = watch_canary(c, *w.spec, w.control->settings());
        if (!o.rolled_back.empty()) {
          {
            std::lock_guard<std::mutex> l(w.mu);
            ++w.metrics.canary_rollbacks;
          }
          record_slices(w, read_slices(c, w.spec->name));
          pause_for(w, o.alert);
          go_on = true;  // the work loop sees the pause
          return;
        }
      }
      if (Clock::now() >= next_look) {
        next_look = Clock::now() + kSlicesLookEvery;
        const SlicesState s = read_slices(c, w.spec->name);
        record_slices(w, s);
        go_on = look && s.blocker().empty();
        if (go_on && !w.spec->shadow_reads.empty()) {
          // A failing round holds cutover too: run again only once one passes.
          const RoundReport r = read_last_round(c, w.spec->name, w.spec->shadow_reads, nullptr);
          go_on = r.round == 0 || r.passed();
        }
      }
    });
  } catch (const std::exception& e) {
    spdlog::warn("migration {}: cannot look at its slices: {}", w.name, e.what());
  }
  return go_on;
}

void MigrationManager::work(Worker& w) {
  while (!shutting_down_ && !w.retired) {
    bool paused_now = false;
    {
      // A pause given in memory shows at once: the re-read below may wait
      // on a control session that does not answer (up to its deadline).
      std::lock_guard<std::mutex> l(w.mu);
      paused_now = w.desired == Desired::kPause && w.activity != Activity::kPaused;
      if (paused_now) w.activity = Activity::kPaused;
    }
    if (paused_now) log_activity(w.name, Activity::kPaused, "");
    try {
      refresh(w);
    } catch (const std::exception& e) {
      spdlog::warn("migration {}: cannot read what was asked of it: {}", w.name, e.what());
    }
    Desired desired;
    std::set<Phase> approved;
    long seen;
    {
      std::lock_guard<std::mutex> l(w.mu);
      desired = w.desired;
      approved = w.approved;
      seen = w.generation;
      w.stop = false;
    }
    if (desired == Desired::kPause) {
      w.set_activity(Activity::kPaused);
      if (!w.wait_for_command(seen, shutting_down_, std::chrono::hours(1))) return;
      continue;
    }
    if (desired == Desired::kRun) {
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
        w.set_activity(Activity::kWaitingForTable);
        if (!w.wait_for_command(seen, shutting_down_, options_.poll)) return;
        continue;
      }
    }
    if (!run_once(w, desired, approved, seen)) return;
  }
}

namespace {

using SystemClock = RunControl::SystemClock;

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
  long before, live_before;
  bool unrecorded;
  {
    std::lock_guard<std::mutex> l(w.mu);
    before = w.generation;
    live_before = w.live_version;
    unrecorded = w.pending.has_value();
  }
  std::optional<SubmissionStore::Wishes> row;
  const bool read = try_with_db([&](Connection& c) { row = submissions_.wishes(c, w.name); },
                                std::chrono::seconds(1));
  // The control session busy for longer (a database that does not answer
  // it): the worker goes on with what it was told in memory.
  if (!read) spdlog::debug("migration {}: the control session is busy; not re-read", w.name);
  if (!row) return;
  std::lock_guard<std::mutex> l(w.mu);
  // Likewise a `set` or `throttle` given while the row was read.
  if (w.live_version == live_before) apply_live(*w.control, w.base, row->live);
  // A command not yet recorded when the read began, or given since, is newer
  // than the row, even once it is recorded: the row would undo it (a resume
  // given then was lost, and the migration stayed paused). The next read,
  // after the poller recorded it, agrees with memory.
  if (unrecorded || w.generation != before) return;
  w.desired = row->desired;
  w.approved = row->approved;
  w.accepted.clear();
  if (row->live.contains("accepted") && row->live["accepted"].is_array()) {
    for (const auto& a : row->live["accepted"])
      if (a.is_string()) w.accepted.insert(a.get<std::string>());
  }
}

std::string MigrationManager::blocking_migration(Worker& w) {
  const std::set<std::string> mine = tables_touched(*w.spec);
  if (mine.empty()) return "";
  std::vector<std::pair<std::string, std::string>> earlier;
  with_db([&](Connection& c) {
    // Once started, a migration holds its tables: the gate is only for starting.
    const auto record = w.store->load(c);
    if (record && record->state != MigrationState::kRolledBack) return;
    earlier = submissions_.ahead_of(c, w.name);
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
  auto c = open_session("tandemd control cancel");
  // Only that migration's own sessions: a pid may have been reused.
  Rows r = c->exec(
      "SELECT bool_or(pg_cancel_backend(pid)) FROM pg_stat_activity"
      " WHERE pid = ANY ($1::int[]) AND application_name LIKE $2 AND state = 'active'",
      {list, "tandemd " + w.name + " pid %"});
  return !r.empty() && r.text(0, 0) == "t";
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
  nlohmann::json j = {{"version", 1},
                      {"name", w.name},
                      {"file", w.file},
                      {"state", to_string(w.activity)},
                      {"desired", to_string(w.desired)},
                      {"step", text_or_null(w.step)},
                      {"rows_done", w.rows_done},
                      {"rows_per_second", std::llround(w.rate)},
                      {"ranges", w.ranges},
                      {"ranges_finished", w.ranges_finished},
                      {"workers", w.workers},
                      {"last_error", text_or_null(w.last_error)}};
  j["phase"] = w.phase ? nlohmann::json(phase_name(*w.phase)) : nlohmann::json();
  j["rows_total"] = w.rows_total ? nlohmann::json(*w.rows_total) : nlohmann::json();
  j["percent"] =
      w.rows_total && *w.rows_total > 0
          ? nlohmann::json(std::min(100.0, std::round(1000.0 * w.rows_done / *w.rows_total) / 10))
          : nlohmann::json();
  j["eta_seconds"] = w.eta ? nlohmann::json(std::llround(*w.eta)) : nlohmann::json();
  j["waiting_for"] = w.waiting_for ? nlohmann::json(phase_name(*w.waiting_for)) : nlohmann::json();
  j["approval_withheld"] = text_or_null(w.approval_withheld);
  j["round"] = w.round_report ? round_json(*w.round_report, "") : nlohmann::json();
  if (w.spec && w.spec->sliced()) j["slices"] = w.slices;
  j["blocked_by"] = text_or_null(w.blocked_by);
  // Throttled: by hand (maybe until a time), or by a signal right now.
  std::string reason = w.metrics.throttle_reason;
  std::optional<RunControl::SystemClock::time_point> until;
  if (w.control && w.control->manually_throttled()) {
    reason = "manual";
    until = w.control->throttle_until();
  }
  j["throttled"] = text_or_null(reason);
  j["throttled_until"] = until ? nlohmann::json(rfc3339(*until)) : nlohmann::json();
  j["throttled_for_seconds"] =
      until
          ? nlohmann::json(std::max<long long>(0, std::chrono::duration_cast<std::chrono::seconds>(
                                                      *until - RunControl::SystemClock::now())
                                                      .count()))
          : nlohmann::json();
  // Shadow-read pairs compared since this daemon started; `tandemctl diffs`
  // shows what differed.
  nlohmann::json reads = nlohmann::json::object();
  for (const auto& [pair, p] : w.metrics.shadow_reads)
    reads[pair] = {{"compared", p.compared}, {"differed", p.differed}};
  j["shadow_reads"] = reads;
  if (w.control) {
    nlohmann::json settings = nlohmann::json::object();
    const Settings current = w.control->settings();
    for (const auto& key : setting_keys()) settings[key] = setting_text(current, key);
    j["settings"] = settings;
  }
  return j;
}

bool MigrationManager::set_desired(Worker& w, Desired desired, const std::string& actor,
                                   const std::string& event) {
  // In memory first: the migration obeys at its next safe point whether or
  // not the database answers the control session.
  long seq;
  {
    std::lock_guard<std::mutex> l(w.mu);
    w.desired = desired;
    ++w.generation;
    w.stop = desired != Desired::kRun;
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
  with_db(
      [&](Connection& c) { submissions_.set_desired(c, w.name, p->desired, p->event, p->actor); });
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
      w.set_activity(Activity::kRunningElsewhere, e.what());
      return w.wait_for_command(seen, shutting_down_, options_.poll);
    case Failure::kRollbackRefused:
      pause_for(w, e.what(), Activity::kFailed);
      return true;
    case Failure::kStepFailed:
      w.set_activity(Activity::kFailed, e.what());
      return w.wait_for_command(seen, shutting_down_, std::chrono::hours(1));
    case Failure::kStopped:  // run() and rollback() return these as outcomes
    case Failure::kPaused:
    case Failure::kNone:
      break;
  }
  // The database went away, or the like: try again after a pause.
  w.set_activity(Activity::kRetrying, e.what());
  spdlog::warn("migration {}: {}", w.name, e.what());
  return w.wait_for_command(seen, shutting_down_, std::chrono::seconds(5));
}

void MigrationManager::pause_for(Worker& w, const std::string& why, Activity activity) {
  {
    std::lock_guard<std::mutex> l(w.mu);
    w.desired = Desired::kPause;
    w.pending = Worker::Pending{++w.generation, Desired::kPause, "", ""};
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

void MigrationManager::shutdown() {
  shutting_down_ = true;
  poll_cv_.notify_all();
  if (poller_.joinable()) poller_.join();
  // Each fleet's targets stop at their next safe point (another runner of
  // the fleet, or this daemon restarted, resumes them).
  if (fleets_) fleets_->stop();
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
    std::string s = w->name + " " + to_string(w->activity);
    if (w->activity == Activity::kRunning && w->phase)
      s += " " + std::string(phase_name(*w->phase));
    if (w->activity == Activity::kRunning && w->rows_total && *w->rows_total > 0) {
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
    m.state = to_string(w->activity);
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
  return render_metrics(all, TANDEM_VERSION, db_up_.load()) +
         (fleets_ ? fleets_->metrics() : std::string());
}

}  // namespace tandem
