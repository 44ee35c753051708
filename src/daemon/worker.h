// The migration worker: one migration `tandemd serve` owns, with what status
// shows (written by its thread, read by commands), the progress sink its
// Executor reports to, and what the operator asked of it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "daemon/manager.h"
#include "daemon/metrics.h"
#include "daemon/worker_state.h"
#include "engine/progress.h"
#include "engine/run_control.h"
#include "tandem/run.h"

namespace tandem {

// One migration the daemon owns. The fields under `mu` are what status shows;
// the worker thread writes them, commands read them.
struct MigrationManager::Worker : ProgressSink {
  std::string name, file, spec_text;
  std::optional<Spec> spec;
  std::optional<Plan> plan;
  std::atomic<bool> stop{false};
  std::atomic<bool> finished{false};  // the thread has returned: completed, rolled back, ...
  std::atomic<bool> retired{false};   // forgotten or resubmitted: its thread ends, unlisted
  std::mutex launch_mu;               // guards thread
  std::thread thread;

  std::mutex mu;
  std::condition_variable cv;
  long generation = 0;  // bumped by every command; a waiting worker wakes on it
  // Bumped, with the live settings applied under `mu`, by `set` and
  // `throttle`: a re-read of the row that began before is older than them.
  long live_version = 0;
  Desired desired = Desired::kRun;
  // What was asked for and is not yet recorded in tandem.submissions (the
  // database did not answer): it holds in memory, and the poller records
  // it; until then, what the database says does not overwrite it.
  struct Pending {
    long seq = 0;
    Desired desired = Desired::kRun;
    std::string event, actor;
  };
  std::optional<Pending> pending;
  std::set<Phase> approved;
  std::set<std::string> accepted;  // shadow-read pairs whose failed gate the operator accepts
  Activity activity = Activity::kStarting;  // see docs/control-protocol.md
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
  std::string approval_withheld;            // why an approval of waiting_for was not taken
  std::optional<RoundReport> round_report;  // the last shadow-read round finished at the gate
  nlohmann::json slices;                    // in slices: as last read (slices_json), else null
  std::string blocked_by;                   // waiting_for_table: the earlier migration and table
  std::unique_ptr<RunControl> control;      // set when the spec parses
  std::shared_ptr<MigrationStore> store;    // its state; set when the spec parses
  Settings base;  // the spec's settings, the daemon's defaults for the rest
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
  void shadow_compared(const std::string& pair, bool differed, double old_ms,
                       double new_ms) override {
    std::lock_guard<std::mutex> l(mu);
    auto& p = metrics.shadow_reads[pair];
    ++p.compared;
    if (differed) ++p.differed;
    p.old_seconds.observe(old_ms / 1000);
    p.new_seconds.observe(new_ms / 1000);
  }
  void retrying(const std::string& sqlstate) override {
    std::lock_guard<std::mutex> l(mu);
    ++metrics.retries;
    if (sqlstate == "55P03") ++metrics.lock_timeouts;
  }

  // Changes the activity; a change is logged (log_activity).
  void set_activity(Activity a, const std::string& error = "") {
    Activity before;
    {
      std::lock_guard<std::mutex> l(mu);
      before = activity;
      activity = a;
      if (!error.empty()) last_error = error;
    }
    if (before != a) log_activity(name, a, error);
  }
  // Waits until a command changes something, or shutdown. Returns false on shutdown.
  bool wait_for_command(long seen, const std::atomic<bool>& shutting_down,
                        std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> l(mu);
    cv.wait_for(l, timeout, [&] { return generation != seen || shutting_down.load(); });
    return !shutting_down.load();
  }
};

}  // namespace tandem
