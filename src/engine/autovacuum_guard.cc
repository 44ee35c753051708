#include "engine/autovacuum_guard.h"

#include <spdlog/spdlog.h>

#include "engine/run_errors.h"
#include "engine/throttle.h"
#include "util/duration.h"
#include "util/ident.h"

namespace tandem {

using namespace std::chrono_literals;

namespace {

// How often a long wait for an autovacuum is logged again.
constexpr auto kAutovacuumReportEvery = 1min;

}  // namespace

void AutovacuumGuard::yield(Connection& conn, const Step& step) {
  if (!step.lock.conflicts_with_vacuum()) return;
  if (tables_.empty()) return;
  // Autovacuum workers holding VACUUM's lock on one of the tables; and any
  // session holding it that this role may not see (backend_type hidden):
  // most likely an autovacuum too (or another role's VACUUM, ANALYZE or
  // index build), which it may not cancel either.
  const std::string sql =
      "SELECT DISTINCT l.pid, n.nspname || '.' || c.relname,"
      " coalesce(a.query LIKE '%(to prevent wraparound)%', false), a.backend_type IS NULL,"
      " v.phase, v.heap_blks_scanned, v.heap_blks_total"
      " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
      " LEFT JOIN pg_stat_progress_vacuum v ON v.pid = l.pid"
      " JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace"
      " WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'ShareUpdateExclusiveLock'"
      " AND l.pid IS NOT NULL AND l.pid <> pg_backend_pid()"
      " AND (a.backend_type = 'autovacuum worker' OR a.backend_type IS NULL)"
      " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
      " AND n.nspname || '.' || c.relname IN (" +
      quote_literals(tables_) + ") ORDER BY 1";
  std::string waiting_for;  // what the last wait was for, once logged
  const auto since = ctx_.time->now();
  auto last_said = since;
  VacuumPace pace;
  for (;;) {
    Rows r = conn.exec(sql);
    std::string wait;
    std::string progress;  // of the vacuum waited for, when this role may read it
    for (size_t i = 0; i < r.size(); ++i) {
      const std::string pid = r.text(i, 0), table = r.text(i, 1);
      std::string why;
      if (r.text(i, 3) == "t") {
        wait = "a session that tandemd's role may not see (pid " + pid + ") holding " + table +
               " in SHARE UPDATE EXCLUSIVE mode: most likely its autovacuum, which this role " +
               "may not cancel (superuser, or pg_signal_autovacuum_worker on PostgreSQL 18)";
        progress.clear();
        continue;
      }
      if (r.text(i, 2) == "t") {
        why = "it runs to prevent transaction ID wraparound and must not be cancelled";
      } else {
        why = cancel(conn, step, pid, table);
        if (why.empty()) continue;
      }
      wait = "the autovacuum of " + table + " (pid " + pid + "): " + why;
      progress = r.is_null(i, 4) ? ""
                                 : pace.describe(std::stoll(pid), r.text(i, 4), r.integer(i, 5),
                                                 r.integer(i, 6));
    }
    if (wait.empty()) break;
    if (wait != waiting_for) {
      spdlog::warn(
          "step {}: waiting for {}{}. The step does not queue its lock meanwhile, so the "
          "application is not held up behind it",
          step.id, wait, progress.empty() ? "" : "; " + progress);
      waiting_for = wait;
      last_said = ctx_.time->now();
      ctx_.report([&](ProgressSink& p) { p.throttling("autovacuum", 0); });
    } else if (ctx_.time->now() - last_said >= kAutovacuumReportEvery) {
      // A vacuum to prevent wraparound may take hours: say how it goes.
      spdlog::warn("step {}: still waiting, for {} now, for {}{}", step.id,
                   format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(
                       ctx_.time->now() - since)),
                   wait, progress.empty() ? "" : "; " + progress);
      last_said = ctx_.time->now();
    }
    for (int i = 0; i < 20; ++i) {
      if (ctx_.stop_requested()) throw StoppedError("step " + step.id + " stopped");
      ctx_.time->sleep_for(50ms);
    }
  }
  if (!waiting_for.empty()) {
    const double held = ctx_.time->seconds_since(since);
    ctx_.report([&](ProgressSink& p) { p.throttling("", held); });
    spdlog::info("step {}: the autovacuum is over; going on", step.id);
  }
}

std::string AutovacuumGuard::cancel(Connection& conn, const Step& step, const std::string& pid,
                                    const std::string& table) {
  try {
    if (conn.exec("SELECT pg_cancel_backend(" + pid + ")").text(0, 0) != "t") {
      return "it could not be signalled";
    }
  } catch (const Error& e) {
    if (e.sqlstate() != "42501") throw;
    return "tandemd's role may not cancel it (superuser, or pg_signal_autovacuum_worker on "
           "PostgreSQL 18)";
  }
  spdlog::warn(
      "step {}: cancelled the autovacuum of {} (pid {}): it held a lock the step needs. "
      "PostgreSQL cancels it the same way for any lock request that waits deadlock_timeout; "
      "it runs again later",
      step.id, table, pid);
  ctx_.store->event(conn, "autovacuum_cancelled", step.phase, step.id, ctx_.actor,
                    {{"pid", std::stoll(pid)}, {"table", table}});
  return "";
}

}  // namespace tandem
