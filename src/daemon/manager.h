// The migrations `tandemd serve` owns: each submitted migration has a worker
// thread that drives an Executor, and obeys pause, resume, approve and
// rollback from the control socket. What the operator asked for is kept in
// tandem.submissions, so a restarted daemon (or another daemon on the same
// database) picks every migration up again; the migration's advisory lock
// makes sure exactly one daemon runs it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "control/protocol.h"
#include "daemon/submission_store.h"
#include "daemon/worker_state.h"
#include "db/connection.h"
#include "engine/hooks.h"
#include "engine/migration_store.h"
#include "tandem/plan.h"
#include "tandem/spec.h"

namespace tandem {

struct SlicesState;

class Executor;
class FleetHost;

// A command that cannot be carried out; `code` goes into the error response.
class CommandError : public std::runtime_error {
 public:
  CommandError(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

class MigrationManager {
 public:
  struct Options {
    std::string dsn;
    // How often to look for migrations submitted to another daemon, and to
    // retry one whose lock another daemon holds.
    std::chrono::milliseconds poll{2000};
    // On shutdown, how long the batch or step in flight may take to finish
    // before its statement is cancelled.
    std::chrono::milliseconds shutdown_grace{10000};
    // Settings for migrations whose spec does not give them (key -> text,
    // as in a spec; checked by the config loader).
    std::map<std::string, std::string> defaults;
    // Hooks told of every migration's start, phases, gates and end
    // (docs/hooks.md); read at start.
    HookSettings hooks;
    // Fleet files to run (docs/fleet.md), each with its runner thread.
    std::vector<std::string> fleets;
    // Seams for tests. How sessions are opened (connect_postgres when
    // empty); where submissions are kept (tandem.submissions when null);
    // each migration's state (a StateStore when empty).
    std::function<std::unique_ptr<Connection>(const std::string& dsn, const std::string& app)>
        connect;
    SubmissionStore* submissions = nullptr;
    std::function<std::shared_ptr<MigrationStore>(const std::string& name)> migration_store;
  };

  explicit MigrationManager(Options options);
  ~MigrationManager();

  // Creates or upgrades the state store and starts a worker for every
  // submitted migration that is not finished. Throws when the database
  // cannot be reached.
  void recover();
  // Carries out one command for `actor` ("uid:1000"); returns its result.
  // Throws CommandError.
  nlohmann::json handle(const control::Request& request, const std::string& actor);
  // Stops every worker at its next safe point and waits for them.
  void shutdown();
  // One line for systemd's STATUS=: "2 migrations: m1 backfill 45%, m2 done".
  std::string summary();
  // The Prometheus text exposition of every migration (docs/daemon.md).
  std::string metrics();
  // SIGHUP: new defaults for migrations submitted from now on, a new grace.
  void reconfigure(std::map<std::string, std::string> defaults,
                   std::chrono::milliseconds shutdown_grace);

 private:
  struct Worker;
  nlohmann::json status_of(Worker& w);
  Worker& find(const std::string& name);
  // Workers are never removed, so the pointers stay valid.
  std::vector<Worker*> all_workers();
  void start_worker(const std::string& name, const std::string& spec_text, const std::string& file,
                    Desired desired, const std::set<Phase>& approved);
  // Starts (or restarts) the worker's thread.
  void launch(Worker& w);
  void work(Worker& w);
  // Runs (or rolls back) the migration once, as `desired` says; false when
  // the worker is done: finished, rolled back, or the daemon shutting down.
  bool run_once(Worker& w, Desired desired, const std::set<Phase>& approved, long seen);
  // After `ex` stopped at a gate: waits for a command, running shadow-read
  // rounds every shadow_round_interval while the gate is cutover's. Returns
  // whether to go on (false: shutting down).
  bool wait_at_gate(Worker& w, Executor& ex, bool cutover_approved, long seen);
  // Starts a worker for every submission that has none yet.
  void adopt_submissions();
  void poll_loop();
  // Runs `f` with the control connection, reconnecting once if it was lost.
  void with_db(const std::function<void(Connection&)>& f);
  // At the cutover gate of a migration in slices: the canary when it is due
  // (a rollback pauses the worker) and the slices when due; true when the
  // worker should run again (paused, or every slice complete when `look`).
  // Keeps what was read of a worker's slices for status and metrics.
  void record_slices(Worker& w, const SlicesState& s);
  bool slices_at_gate(Worker& w, const Canary* canary, bool look,
                      std::chrono::steady_clock::time_point& next_canary,
                      std::chrono::steady_clock::time_point& next_look);
  // The same, unless the control connection stays busy for `wait`: false.
  bool try_with_db(const std::function<void(Connection&)>& f, std::chrono::milliseconds wait);
  void on_db(const std::function<void(Connection&)>& f);  // under db_mu_
  // Opens a session through Options::connect.
  std::unique_ptr<Connection> open_session(const std::string& app) const;
  // Wakes the poller to record what is pending.
  void nudge_poller();
  // What the operator asked for: in memory at once (the migration obeys at
  // its next safe point), then recorded in tandem.submissions by the poller.
  // Returns whether the record was made within kRecordWait.
  bool set_desired(Worker& w, Desired desired, const std::string& actor, const std::string& event);
  // Records what is pending for `w`; throws when the database cannot.
  void record_pending(Worker& w);
  // Pauses the migration on its own account (a critical threshold, a refused
  // rollback), with `why` as its last error, until an operator resumes it.
  void pause_for(Worker& w, const std::string& why, Activity activity = Activity::kPaused);
  // After an error ended a run of `w`: what its worker does next, by how the
  // run ended. Returns false when the daemon shuts down meanwhile.
  bool after_failure(Worker& w, long seen, const Error& e);
  // Reads what the operator asked for (maybe through another daemon) into `w`.
  void refresh(Worker& w);
  // An earlier migration, not finished, that shares a table with `w`'s:
  // "m1 (public.users)"; "" when there is none.
  std::string blocking_migration(Worker& w);
  // Cancels the statement the worker's session runs, through a session of
  // its own; false when it has none.
  bool cancel_in_flight(Worker& w);
  // The control commands (commands.cc), one row each in handle()'s table.
  using Handler = nlohmann::json (MigrationManager::*)(const control::Request&,
                                                       const std::string& actor);
  nlohmann::json cmd_list(const control::Request& r, const std::string& actor);
  nlohmann::json cmd_status(const control::Request& r, const std::string& actor);
  nlohmann::json cmd_submit(const control::Request& r, const std::string& actor);
  nlohmann::json cmd_pause(const control::Request& r, const std::string& actor);
  nlohmann::json cmd_resume(const control::Request& r, const std::string& actor);
  nlohmann::json cmd_rollback(const control::Request& r, const std::string& actor);
  nlohmann::json cmd_approve(const control::Request& r, const std::string& actor);
  nlohmann::json cmd_throttle(const control::Request& r, const std::string& actor);
  nlohmann::json cmd_set(const control::Request& r, const std::string& actor);
  nlohmann::json cmd_abort(const control::Request& r, const std::string& actor);
  nlohmann::json cmd_events(const control::Request& r, const std::string& actor);
  nlohmann::json cmd_diffs(const control::Request& r, const std::string& actor);
  nlohmann::json cmd_slices(const control::Request& r, const std::string& actor);
  nlohmann::json cmd_slice(const control::Request& r, const std::string& actor);
  nlohmann::json cmd_forget(const control::Request& r, const std::string& actor);
  // Takes a worker out of the daemon (forgotten, or replaced by a
  // resubmission): its thread ends and is joined; the object is kept, so
  // pointers to it stay valid, but no command or listing finds it.
  void retire(Worker& w);
  // Whether a failed migration changed nothing: no step but prechecks began.
  bool changed_nothing(Worker& w);
  // pause, resume and rollback: what the operator wants of the migration now.
  nlohmann::json ask(const control::Request& r, const std::string& actor, Desired desired,
                     const std::string& event);

  Options options_;  // defaults and shutdown_grace are guarded by mu_
  std::unique_ptr<SubmissionStore> own_submissions_;  // when options_.submissions is null
  SubmissionStore& submissions_;
  std::mutex mu_;  // guards workers_
  std::map<std::string, std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<Worker>> retired_;  // guarded by mu_
  std::timed_mutex db_mu_;
  std::unique_ptr<Connection> db_;
  std::atomic<bool> db_up_{false};  // the last attempt reached the database
  std::atomic<bool> shutting_down_{false};
  std::mutex poll_mu_;
  std::condition_variable poll_cv_;
  bool record_now_ = false;  // guarded by poll_mu_: a command left something to record
  std::thread poller_;
  std::unique_ptr<Hooks> hooks_;       // when options_.hooks names any
  std::unique_ptr<FleetHost> fleets_;  // when options_.fleets names any; started by recover()
};

}  // namespace tandem
