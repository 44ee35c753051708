#include "fleet/fleet_runner.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "db/conninfo.h"
#include "engine/progress.h"
#include "fleet/fleet_store.h"
#include "tandem/error.h"
#include "tandem/run.h"
#include "util/text.h"

namespace tandem {

namespace fs = fleet_state;
using Clock = std::chrono::steady_clock;

namespace {

bool among(const std::string& s, std::initializer_list<const char*> states) {
  for (const char* x : states) {
    if (s == x) return true;
  }
  return false;
}

// A target that went through the checks before cutover (together) or through
// cutover (each): its wave has passed it.
bool passed(const std::string& state, FleetCutover cutover) {
  if (cutover == FleetCutover::kTogether) {
    return among(state,
                 {fs::kReady, fs::kCuttingOver, fs::kCutOver, fs::kCleaningUp, fs::kCompleted});
  }
  return among(state, {fs::kCutOver, fs::kCleaningUp, fs::kCompleted});
}

bool bad(const std::string& state) { return among(state, {fs::kFailed, fs::kHeld}); }

// A runner is working on it (or was, and died): whoever takes its lease goes on.
bool active(const std::string& state) {
  return among(state, {fs::kRunning, fs::kCuttingOver, fs::kCleaningUp});
}

}  // namespace

class FleetRunner::Impl {
 public:
  Impl(const FleetSpec& fleet, const Spec& spec, const Plan& plan, FleetRunOptions o)
      : fleet_(fleet), spec_(spec), plan_(plan), o_(std::move(o)), store_(fleet.name) {
    const auto touched = tables_touched(spec_);
    tables_.assign(touched.begin(), touched.end());
  }

  ~Impl() {
    for (auto& [name, j] : jobs_) {
      j->stop = true;
      if (j->thread.joinable()) j->thread.join();
    }
  }

  FleetOutcome run();
  FleetOutcome rollback(const std::string& wave);
  std::string report_;
  mutable std::mutex snapshot_mu_;
  std::vector<FleetTargetRow> snapshot_;  // guarded by snapshot_mu_

 private:
  enum class Kind { kUp, kCutover, kCleanup, kRollback };
  struct Job {
    std::string target;
    Kind kind = Kind::kUp;
    FleetTargetRow row;              // as it was when the job started
    std::vector<std::string> locks;  // held on lease_ for it
    std::atomic<bool> stop{false};
    std::atomic<bool> done{false};
    bool waited = false;     // stopped at a phase that waits for an approval
    bool lock_held = false;  // another session holds the target's migration lock
    bool ok = false;         // reached what the job is for
    std::thread thread;
  };

  // Tells the fleet table where a job's target is: phase and step at once,
  // rows at most once a second.
  class Progress : public ProgressSink {
   public:
    Progress(Impl& impl, std::string target) : impl_(impl), target_(std::move(target)) {}
    void phase_started(Phase p) override {
      phase_ = phase_name(p);
      write(true);
    }
    void step_started(const Step& s) override {
      phase_ = phase_name(s.phase);
      step_ = s.id;
      rows_ = 0;
      write(true);
    }
    void progress(const ProgressUpdate& u) override {
      rows_ = u.rows_done;
      write(false);
    }
    void step_finished(const Step&, double) override {}

   private:
    void write(bool now) {
      const auto t = Clock::now();
      if (!now && t - last_ < std::chrono::seconds(1)) return;
      last_ = t;
      try {
        impl_.with_db(
            [&](Connection& c) { impl_.store_.progress(c, target_, phase_, step_, rows_); });
      } catch (const std::exception& e) {
        spdlog::debug("fleet {}: target {}: progress not recorded: {}", impl_.fleet_.name, target_,
                      e.what());
      }
    }
    Impl& impl_;
    std::string target_, phase_, step_;
    long long rows_ = 0;
    Clock::time_point last_{};
  };

  std::unique_ptr<Connection> open(const std::string& dsn, const std::string& app) const {
    return o_.connect ? o_.connect(dsn, app) : connect_postgres(dsn, app);
  }
  // Runs `f` on the control session (one thread at a time), opening it again
  // when it was lost, up to three attempts a second apart.
  void with_db(const std::function<void(Connection&)>& f) {
    std::lock_guard<std::mutex> l(db_mu_);
    for (int attempt = 1;; ++attempt) {
      try {
        if (!db_ || !db_->is_open()) db_ = open(o_.control_dsn, "tandem fleet " + fleet_.name);
        f(*db_);
        return;
      } catch (const Error& e) {
        const bool lost = !db_ || !db_->is_open();
        if (attempt >= 3 || (!lost && e.kind() != ErrorKind::kRetryable)) throw;
        spdlog::warn("fleet {}: control database: {}; trying again", fleet_.name, e.what());
        db_.reset();
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
    }
  }
  void set_state(const std::string& target, const char* state, const std::string& error = "",
                 const std::string& stamp = "") {
    const std::string owner =
        among(state, {fs::kRunning, fs::kCuttingOver, fs::kCleaningUp, fs::kRollingBack}) ? o_.owner
                                                                                          : "";
    with_db(
        [&](Connection& c) { store_.set_state(c, target, state, error, owner, stamp, o_.actor); });
  }

  // Advisory locks on lease_, the runner's own control session: a lock
  // this runner holds already is not taken again (pg_try_advisory_lock
  // would stack it and say yes).
  bool try_lock(const std::string& what);
  void unlock(const std::string& what);
  // The target's lease and, for `slot`, one of its wave's `parallel` slots;
  // and one of its server's per_host slots. Empty when any is taken.
  std::vector<std::string> acquire(const FleetTargetRow& row, bool slot);
  void release(Job& j);

  // Who this runner is, the targets (a targets_query run now) and their
  // waves; throws Error(kBadInput) when a target is in no wave or in two.
  std::vector<FleetMember> resolve();
  void start(const FleetTargetRow& row, Kind kind, std::vector<std::string> locks);
  void work(Job& j);
  // Before a target first starts: false (and the target held) when the
  // schema of the tables the migration touches differs from the reference's.
  bool schema_matches(const FleetTarget& t);
  // Joins finished jobs and lets go of their locks.
  void reap();
  // Starts what may start; returns the outcome when nothing more can happen.
  std::optional<FleetOutcome> step(const std::vector<FleetTargetRow>& rows,
                                   const FleetRecord& record,
                                   const std::map<std::string, std::string>& pauses);
  // A job stopped at a safe point: nobody owns its target now.
  void stopped(Job& j);
  void wait_a_little();
  std::string summary(const std::vector<FleetTargetRow>& rows) const;

  const FleetSpec& fleet_;
  const Spec& spec_;
  const Plan& plan_;
  FleetRunOptions o_;
  FleetStore store_;
  std::vector<std::string> tables_;
  std::vector<FleetTarget> targets_;
  std::map<std::string, const FleetTarget*> by_name_;
  std::mutex db_mu_;
  std::unique_ptr<Connection> db_;
  std::unique_ptr<Connection> lease_;  // the main thread's only
  std::set<std::string> held_;         // locks lease_ holds
  std::map<std::string, std::unique_ptr<Job>> jobs_;
  std::map<std::string, Clock::time_point> not_before_;
  std::set<std::string> waited_;  // stopped at an approval in this run: not tried again in it
  std::mutex done_mu_;
  std::condition_variable done_cv_;
};

bool FleetRunner::Impl::try_lock(const std::string& what) {
  if (held_.count(what)) return false;
  for (int attempt = 1;; ++attempt) {
    try {
      if (!lease_ || !lease_->is_open()) {
        lease_ = open(o_.control_dsn, "tandem fleet lease " + fleet_.name);
        // The locks went with the lost session: take them again.
        std::set<std::string> again;
        again.swap(held_);
        for (const auto& h : again) {
          if (lease_->exec("SELECT pg_try_advisory_lock(" + store_.lock_key_sql(h) + ")")
                  .text(0, 0) == "t") {
            held_.insert(h);
          } else {
            spdlog::warn(
                "fleet {}: lease {} was lost with the control session and another "
                "runner holds it now",
                fleet_.name, h);
          }
        }
      }
      const bool got =
          lease_->exec("SELECT pg_try_advisory_lock(" + store_.lock_key_sql(what) + ")")
              .text(0, 0) == "t";
      if (got) held_.insert(what);
      return got;
    } catch (const Error& e) {
      if (attempt >= 3) throw;
      spdlog::warn("fleet {}: lease session: {}; opening it again", fleet_.name, e.what());
      lease_.reset();
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
}

void FleetRunner::Impl::unlock(const std::string& what) {
  if (!held_.erase(what)) return;
  try {
    if (lease_ && lease_->is_open()) {
      lease_->exec("SELECT pg_advisory_unlock(" + store_.lock_key_sql(what) + ")");
    }
  } catch (const Error& e) {
    spdlog::warn("fleet {}: letting go of lease {}: {}", fleet_.name, what, e.what());
    lease_.reset();  // a session that lost its locks: the next try_lock opens another
    held_.clear();
  }
}

std::vector<std::string> FleetRunner::Impl::acquire(const FleetTargetRow& row, bool slot) {
  std::vector<std::string> got;
  auto give_back = [&] {
    for (const auto& g : got) unlock(g);
    return std::vector<std::string>{};
  };
  const std::string lease = "target/" + row.target;
  if (!try_lock(lease)) return {};
  got.push_back(lease);
  const auto take_one = [&](const std::string& prefix, int n) {
    for (int i = 0; i < n; ++i) {
      const std::string what = prefix + std::to_string(i);
      if (try_lock(what)) {
        got.push_back(what);
        return true;
      }
    }
    return false;
  };
  if (slot && !take_one("slot/" + row.wave + "/", fleet_.waves.at(row.wave_ordinal).parallel)) {
    return give_back();
  }
  if (!take_one("host/" + row.server + "/", fleet_.per_host)) return give_back();
  return got;
}

void FleetRunner::Impl::release(Job& j) {
  for (auto it = j.locks.rbegin(); it != j.locks.rend(); ++it) unlock(*it);
  j.locks.clear();
}

std::vector<FleetMember> FleetRunner::Impl::resolve() {
  if (o_.owner.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    o_.owner = std::string(host) + ":" + std::to_string(getpid());
  }
  with_db([&](Connection& c) {
    FleetStore::prepare(c);
    targets_ =
        fleet_.targets_query.empty() ? fleet_.targets : targets_from_query(c, fleet_.targets_query);
  });
  std::vector<SpecError> errors;
  const std::vector<int> waves = assign_waves(fleet_, targets_, errors);
  if (!errors.empty()) {
    std::vector<std::string> lines;
    for (const auto& e : errors) lines.push_back(e.to_string());
    throw Error(ErrorKind::kBadInput, "fleet " + fleet_.name + ": " + join(lines, "\n  "));
  }
  std::vector<FleetMember> members;
  std::map<int, int> per_wave;
  for (size_t i = 0; i < targets_.size(); ++i) {
    by_name_[targets_[i].name] = &targets_[i];
    members.push_back({targets_[i].name, fleet_.waves[waves[i]].name, server_of(targets_[i].dsn),
                       redacted_conninfo(targets_[i].dsn), waves[i], per_wave[waves[i]]++});
  }
  return members;
}

bool FleetRunner::Impl::schema_matches(const FleetTarget& t) {
  auto conn = open(t.dsn, "tandem fleet drift");
  const std::string text = schema_fingerprint_text(*conn, tables_);
  conn.reset();
  const std::string fp = fingerprint_of(text);
  FleetRecord ref;
  with_db([&](Connection& c) {
    store_.set_fingerprint(c, t.name, fp);
    ref = store_.reference(c, t.name, fp, text);
  });
  if (ref.reference == fp) return true;
  set_state(t.name, fs::kHeld,
            "its schema differs from " + ref.reference_target +
                "'s (the reference) in the tables the migration touches: " +
                fingerprint_diff(ref.reference_text, text) +
                ". Nothing was changed on it; make the schemas alike (or set drift: ignore), "
                "then run the fleet again");
  return false;
}

void FleetRunner::Impl::work(Job& j) {
  const FleetTarget& t = *by_name_.at(j.target);
  Progress progress(*this, j.target);
  RunOptions ro;
  ro.dsn = t.dsn;
  ro.actor = o_.actor;
  ro.stop = &j.stop;
  ro.progress = &progress;
  ro.connect = o_.connect;
  for (Phase p : o_.approve) {
    if (p != Phase::kCleanup) ro.approve.insert(p);
  }
  const bool together = fleet_.cutover == FleetCutover::kTogether;
  try {
    if (j.kind == Kind::kRollback) {
      set_state(j.target, fs::kRollingBack);
      Executor ex(spec_, plan_, ro);
      switch (ex.rollback()) {
        case RollbackOutcome::kRolledBack:
        case RollbackOutcome::kNothingToDo:
          set_state(j.target, fs::kRolledBack);
          j.ok = true;
          break;
        case RollbackOutcome::kStopped:
          stopped(j);
          break;
      }
      return;
    }
    const char* reached = fs::kReady;
    std::string reached_stamp = "ready_at";
    if (j.kind == Kind::kUp) {
      // Nothing of the migration on the target yet (never started, or rolled
      // back): its schema must match the reference's; then it starts over.
      // Else it resumes (failed and retried, stopped, taken over).
      const bool fresh = j.row.started_at.empty() || j.row.state == fs::kRolledBack;
      if (fresh && fleet_.hold_on_drift && !schema_matches(t)) return;
      set_state(j.target, fs::kRunning, "", fresh ? "started_at" : "");
      if (together) {
        ro.until = Phase::kShadowRead;
      } else {
        ro.until = Phase::kCutover;
        ro.approve.insert(Phase::kCutover);
        reached = fs::kCutOver;
        reached_stamp = "cut_over_at";
      }
    } else if (j.kind == Kind::kCutover) {
      set_state(j.target, fs::kCuttingOver, "", "cutover_started_at");
      ro.until = Phase::kCutover;
      ro.approve.insert(Phase::kCutover);
      reached = fs::kCutOver;
      reached_stamp = "cut_over_at";
    } else {
      set_state(j.target, fs::kCleaningUp);
      ro.approve.insert(Phase::kCutover);
      ro.approve.insert(Phase::kCleanup);
    }
    Executor ex(spec_, plan_, ro);
    switch (ex.run()) {
      case RunOutcome::kCompleted:
      case RunOutcome::kAlreadyCompleted:
        set_state(j.target, fs::kCompleted, "", "completed_at");
        j.ok = true;
        break;
      case RunOutcome::kReachedUntil:
        set_state(j.target, reached, "", reached_stamp);
        j.ok = true;
        break;
      case RunOutcome::kWaitingApproval: {
        const char* p = phase_name(ex.waiting_phase());
        const std::string& withheld = ex.approval_withheld();
        set_state(j.target, fs::kWaitingApproval,
                  std::string("waits for the approval of ") + p +
                      (withheld.empty() ? "" : " (withheld: " + withheld + ")") +
                      "; run the fleet again with --approve " + p);
        j.waited = true;
        break;
      }
      case RunOutcome::kStopped:
        stopped(j);  // its state stays; whoever runs it next resumes it
        break;
      case RunOutcome::kPaused:
        set_state(j.target, fs::kFailed,
                  "paused: " + ex.pause_reason() + "; no work is lost: run the fleet again");
        break;
    }
  } catch (const Error& e) {
    if (e.failure() == Failure::kLockHeld) {
      j.lock_held = true;
      spdlog::info("fleet {}: target {}: {}; trying again later", fleet_.name, j.target, e.what());
      return;
    }
    std::string what = e.what();
    if (!e.sqlstate().empty() && what.find(e.sqlstate()) == std::string::npos) {
      what += " (SQLSTATE " + e.sqlstate() + ")";
    }
    spdlog::error("fleet {}: target {} failed: {}", fleet_.name, j.target, what);
    try {
      set_state(j.target, fs::kFailed, what);
    } catch (const std::exception& e2) {
      spdlog::error("fleet {}: target {}: the failure could not be recorded: {}", fleet_.name,
                    j.target, e2.what());
    }
  } catch (const std::exception& e) {
    spdlog::error("fleet {}: target {}: {}", fleet_.name, j.target, e.what());
    try {
      set_state(j.target, fs::kFailed, e.what());
    } catch (const std::exception&) {
    }
  }
}

void FleetRunner::Impl::stopped(Job& j) {
  spdlog::info("fleet {}: target {} stopped at a safe point", fleet_.name, j.target);
  try {
    with_db([&](Connection& c) { store_.disown(c, j.target); });
  } catch (const std::exception& e) {
    // Its row still names this runner; the lease (gone with this runner's
    // session, or let go of now) is what counts for whoever comes next.
    spdlog::warn("fleet {}: target {}: could not record that it stopped: {}", fleet_.name, j.target,
                 e.what());
  }
}

void FleetRunner::Impl::start(const FleetTargetRow& row, Kind kind,
                              std::vector<std::string> locks) {
  auto j = std::make_unique<Job>();
  j->target = row.target;
  j->kind = kind;
  j->row = row;
  j->locks = std::move(locks);
  Job* raw = j.get();
  jobs_[row.target] = std::move(j);
  raw->thread = std::thread([this, raw] {
    work(*raw);
    {
      std::lock_guard<std::mutex> l(done_mu_);
      raw->done = true;
    }
    done_cv_.notify_all();
  });
}

void FleetRunner::Impl::reap() {
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    Job& j = *it->second;
    if (!j.done) {
      ++it;
      continue;
    }
    j.thread.join();
    release(j);
    if (j.waited) waited_.insert(j.target);
    if (j.lock_held) not_before_[j.target] = Clock::now() + std::chrono::seconds(5);
    it = jobs_.erase(it);
  }
}

void FleetRunner::Impl::wait_a_little() {
  std::unique_lock<std::mutex> l(done_mu_);
  done_cv_.wait_for(l, o_.poll, [&] {
    for (auto& [n, j] : jobs_) {
      if (j->done) return true;
    }
    return o_.stop && o_.stop->load();
  });
}

std::optional<FleetOutcome> FleetRunner::Impl::step(
    const std::vector<FleetTargetRow>& rows, const FleetRecord& record,
    const std::map<std::string, std::string>& pauses) {
  // A paused wave (or fleet): its jobs stop at their next safe point and
  // none of its targets starts; the runner waits for the resume.
  const auto paused = [&](const std::string& wave) {
    return pauses.count("") > 0 || pauses.count(wave) > 0;
  };
  bool any_paused = false;
  for (auto& [name, j] : jobs_) {
    if (paused(j->row.wave) && !j->stop) {
      spdlog::info("fleet {}: wave {} is paused: stopping target {} at its next safe point",
                   fleet_.name, j->row.wave, name);
      j->stop = true;
    }
  }
  const bool together = fleet_.cutover == FleetCutover::kTogether;
  // Which waves may start targets: each while every wave before it passed
  // (a failed target of an on_error: continue wave does not hold it back)
  // and soaked.
  int open_through = -1;
  bool blocked = false, soaking = false;
  for (size_t w = 0; w < fleet_.waves.size(); ++w) {
    open_through = static_cast<int>(w);
    bool all_passed = true, failed = false;
    double youngest = 1e18;
    for (const auto& r : rows) {
      if (r.wave_ordinal != static_cast<int>(w)) continue;
      if (bad(r.state)) {
        failed = true;
        if (!fleet_.waves[w].stop_on_error) continue;
      }
      if (!passed(r.state, fleet_.cutover)) {
        all_passed = false;
        continue;
      }
      youngest = std::min(youngest, r.passed_seconds);
    }
    if (failed && fleet_.waves[w].stop_on_error) {
      blocked = true;
      break;
    }
    if (!all_passed) break;
    if (w + 1 < fleet_.waves.size() &&
        youngest < std::chrono::duration<double>(fleet_.waves[w].soak).count()) {
      soaking = true;
      break;
    }
  }
  bool all_ready = true, cutover_failed = false, all_cut_over = true, all_completed = true;
  bool any_active = false, any_waiting = false;
  for (const auto& r : rows) {
    if (!passed(r.state, FleetCutover::kTogether)) all_ready = false;
    if (bad(r.state) && !r.cutover_started_at.empty()) cutover_failed = true;
    if (!among(r.state, {fs::kCutOver, fs::kCleaningUp, fs::kCompleted})) all_cut_over = false;
    if (r.state != fs::kCompleted) all_completed = false;
    if (active(r.state) || r.state == fs::kRollingBack) any_active = true;
    if (r.state == fs::kWaitingApproval) any_waiting = true;
  }
  if (all_completed) return FleetOutcome::kCompleted;
  const bool barrier = together && all_ready && !cutover_failed;
  // Cleanup, once approved: when every target is cut over, or (cleanup:
  // wave) every target of the wave.
  std::map<int, bool> wave_cut_over;
  for (const auto& r : rows) {
    const bool done = among(r.state, {fs::kCutOver, fs::kCleaningUp, fs::kCompleted});
    auto [it, fresh] = wave_cut_over.emplace(r.wave_ordinal, done);
    if (!fresh) it->second = it->second && done;
  }
  const auto cleanup = [&](const FleetTargetRow& r) {
    if (record.cleanup_approved_by.empty()) return false;
    return fleet_.cleanup_per_wave ? wave_cut_over[r.wave_ordinal] : all_cut_over;
  };
  bool tried = false;
  for (const auto& r : rows) {
    if (static_cast<int>(jobs_.size()) >= fleet_.per_daemon) {
      tried = true;
      break;
    }
    if (jobs_.count(r.target)) continue;
    if (paused(r.wave)) {
      any_paused = true;
      continue;
    }
    auto nb = not_before_.find(r.target);
    if (nb != not_before_.end() && nb->second > Clock::now()) {
      tried = true;
      continue;
    }
    const bool wave_open =
        r.wave_ordinal < open_through || (r.wave_ordinal == open_through && !blocked);
    std::optional<Kind> kind;
    if (r.state == fs::kRunning) {
      kind = Kind::kUp;  // taken over: work begun is always carried on
    } else if (r.state == fs::kCuttingOver) {
      kind = Kind::kCutover;
    } else if (r.state == fs::kCleaningUp) {
      kind = Kind::kCleanup;
    } else if ((r.state == fs::kPending || r.state == fs::kRolledBack) && wave_open) {
      kind = Kind::kUp;
    } else if (r.state == fs::kWaitingApproval && !waited_.count(r.target)) {
      kind = !r.cut_over_at.empty()          ? Kind::kCleanup
             : !r.cutover_started_at.empty() ? Kind::kCutover
                                             : Kind::kUp;
    } else if (r.state == fs::kReady && barrier) {
      kind = Kind::kCutover;
    } else if (r.state == fs::kCutOver && cleanup(r)) {
      kind = Kind::kCleanup;
    }
    if (r.state == fs::kRollingBack) {
      // A rollback whose runner is gone (its lease is free) stopped part way.
      auto locks = acquire(r, false);
      if (!locks.empty()) {
        set_state(r.target, fs::kFailed,
                  "its rollback stopped part way (the runner that rolled it back is gone); "
                  "roll it back again: tandemd fleet rollback FILE --wave " +
                      r.wave);
        for (auto it = locks.rbegin(); it != locks.rend(); ++it) unlock(*it);
      }
      tried = true;
      continue;
    }
    if (!kind) continue;
    tried = true;
    auto locks = acquire(r, *kind == Kind::kUp && !active(r.state));
    if (locks.empty()) continue;  // another runner has it, or a slot is full
    if (active(r.state) && r.owner.empty()) {
      spdlog::info("fleet {}: target {} ({}) resumes from its checkpoints", fleet_.name, r.target,
                   r.state);
    } else if (active(r.state)) {
      spdlog::info("fleet {}: target {} was {} by {}; taking it over from its checkpoints",
                   fleet_.name, r.target, r.state, r.owner);
    }
    start(r, *kind, std::move(locks));
  }
  if (!jobs_.empty() || tried || any_active || soaking || any_paused) return std::nullopt;
  if (all_cut_over) return FleetOutcome::kWaitingApproval;
  if (any_waiting) return FleetOutcome::kWaitingApproval;
  return FleetOutcome::kFailed;
}

std::string FleetRunner::Impl::summary(const std::vector<FleetTargetRow>& rows) const {
  std::map<std::string, int> counts;
  for (const auto& r : rows) ++counts[r.state];
  std::vector<std::string> parts;
  for (const auto& [state, n] : counts) parts.push_back(std::to_string(n) + " " + state);
  std::string out = "fleet " + fleet_.name + ": " + std::to_string(rows.size()) +
                    " targets: " + join(parts, ", ");
  for (const auto& r : rows) {
    if (bad(r.state) || r.state == fs::kWaitingApproval) {
      out += "\n  " + r.target + " (wave " + r.wave + ") " + r.state + ": " + r.last_error;
    }
  }
  return out;
}

FleetOutcome FleetRunner::Impl::run() {
  const std::vector<FleetMember> members = resolve();
  with_db([&](Connection& c) {
    store_.enrol(c, spec_.name, hex(fnv1a(spec_.text), 16), members, o_.actor);
    if (o_.approve.count(Phase::kCleanup)) store_.approve_cleanup(c, o_.actor);
  });
  for (;;) {
    reap();
    if (o_.stop && o_.stop->load()) {
      for (auto& [n, j] : jobs_) j->stop = true;
      while (!jobs_.empty()) {
        wait_a_little();
        reap();
      }
      std::vector<FleetTargetRow> rows;
      with_db([&](Connection& c) { rows = store_.targets(c); });
      report_ = summary(rows) + "\nstopped at a safe point; run the same command to resume";
      return FleetOutcome::kStopped;
    }
    std::vector<FleetTargetRow> rows;
    std::optional<FleetRecord> record;
    std::map<std::string, std::string> pauses;
    with_db([&](Connection& c) {
      rows = store_.targets(c);
      record = store_.record(c);
      pauses = store_.pauses(c);
    });
    if (!record) throw Error(ErrorKind::kFatal, "fleet " + fleet_.name + " has no record");
    {
      std::lock_guard<std::mutex> l(snapshot_mu_);
      snapshot_ = rows;
    }
    auto outcome = step(rows, *record, pauses);
    if (outcome && *outcome != FleetOutcome::kCompleted && o_.keep_going) {
      const std::string now = summary(rows);
      if (now != report_) spdlog::info("{}; waiting for an operator", now);
      report_ = now;
      outcome.reset();
    }
    if (outcome) {
      report_ = summary(rows);
      if (*outcome == FleetOutcome::kWaitingApproval) {
        bool cut_over = true;
        for (const auto& r : rows) {
          if (!among(r.state, {fs::kCutOver, fs::kCompleted})) cut_over = false;
        }
        report_ += cut_over ? "\nevery target is cut over; cleanup cannot be undone and waits "
                              "for approval: run again with --approve cleanup"
                            : "\nrun again with the approvals named above";
      } else if (*outcome == FleetOutcome::kFailed) {
        report_ +=
            "\nnothing more can go on. Fix what each failed target says and run again (failed "
            "and held targets are retried), or roll a wave back: tandemd fleet rollback FILE "
            "--wave WAVE";
      }
      return *outcome;
    }
    wait_a_little();
  }
}

FleetOutcome FleetRunner::Impl::rollback(const std::string& wave) {
  resolve();
  std::vector<FleetTargetRow> rows;
  with_db([&](Connection& c) {
    if (!store_.record(c)) {
      throw Error(ErrorKind::kBadInput, "fleet " + fleet_.name +
                                            " has never run against this control database; "
                                            "nothing to roll back");
    }
    rows = store_.targets(c);
  });
  if (!wave.empty() && std::none_of(fleet_.waves.begin(), fleet_.waves.end(),
                                    [&](const FleetWave& w) { return w.name == wave; })) {
    throw Error(ErrorKind::kBadInput, "fleet " + fleet_.name + " has no wave " + wave);
  }
  with_db([&](Connection& c) { store_.pause(c, wave, o_.actor); });
  std::vector<FleetTargetRow> todo;
  for (const auto& r : rows) {
    if (wave.empty() || r.wave == wave) todo.push_back(r);
  }
  // The later waves first, each wave's targets in reverse order.
  std::reverse(todo.begin(), todo.end());
  std::vector<std::string> busy, failed;
  size_t next = 0;
  while (next < todo.size() || !jobs_.empty()) {
    reap();
    if (o_.stop && o_.stop->load()) {
      for (auto& [n, j] : jobs_) j->stop = true;
    }
    int limit = fleet_.per_daemon;
    for (const auto& w : fleet_.waves) {
      if (w.name == wave) limit = std::min(limit, w.parallel);
    }
    while (next < todo.size() && static_cast<int>(jobs_.size()) < limit &&
           !(o_.stop && o_.stop->load())) {
      const FleetTargetRow& r = todo[next];
      auto locks = acquire(r, false);
      // A runner that the pause is stopping lets go within a batch or so.
      for (auto until = Clock::now() + o_.lease_wait;
           locks.empty() && Clock::now() < until && !(o_.stop && o_.stop->load());) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        locks = acquire(r, false);
      }
      if (locks.empty()) {
        busy.push_back(r.target + (r.owner.empty() ? "" : " (" + r.owner + ")"));
        ++next;
        continue;
      }
      start(r, Kind::kRollback, std::move(locks));
      ++next;
    }
    if (!jobs_.empty()) wait_a_little();
  }
  with_db([&](Connection& c) { rows = store_.targets(c); });
  for (const auto& r : rows) {
    if ((wave.empty() || r.wave == wave) && r.state != fs::kRolledBack) failed.push_back(r.target);
  }
  report_ = summary(rows) + "\n" + (wave.empty() ? std::string("the fleet") : "wave " + wave) +
            " stays paused, so that no runner starts it again: resume it to run it again "
            "(tandemd fleet resume" +
            (wave.empty() ? std::string() : " --wave " + wave) + ")";
  if (!busy.empty()) {
    report_ += "\nanother runner works on " + join(busy, ", ") +
               ": stop it (tandemd fleet run stops at a safe point on SIGTERM), then roll back "
               "again";
  }
  if (o_.stop && o_.stop->load()) return FleetOutcome::kStopped;
  return failed.empty() ? FleetOutcome::kRolledBack : FleetOutcome::kFailed;
}

FleetRunner::FleetRunner(const FleetSpec& fleet, const Spec& spec, const Plan& plan,
                         FleetRunOptions options)
    : impl_(std::make_unique<Impl>(fleet, spec, plan, std::move(options))) {}
FleetRunner::~FleetRunner() = default;
FleetOutcome FleetRunner::run() { return impl_->run(); }
FleetOutcome FleetRunner::rollback(const std::string& wave) { return impl_->rollback(wave); }
const std::string& FleetRunner::report() const { return impl_->report_; }
std::vector<FleetTargetRow> FleetRunner::snapshot() const {
  std::lock_guard<std::mutex> l(impl_->snapshot_mu_);
  return impl_->snapshot_;
}

}  // namespace tandem
