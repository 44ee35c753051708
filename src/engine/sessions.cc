// The executor's sessions: its own, which holds the migration's lock, and
// the backfill workers', which hold the lock of the range they work on; how
// they are opened, locked and let go, and the locks a step takes first.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>

#include "engine/executor.h"
#include "util/text.h"

namespace tandem {

std::string ExecutorCore::application_name() const {
  return "tandemd " + spec_.name + " pid " + std::to_string(getpid());
}

ExecutorCore::Lane& ExecutorCore::worker_lane(size_t i) {
  while (workers_.size() <= i) {
    workers_.push_back(std::make_unique<Lane>());
    workers_.back()->worker = static_cast<int>(workers_.size() - 1);
  }
  return *workers_[i];
}

void ExecutorCore::connect(Lane& lane) {
  lane.conn.reset();
  const bool worker = lane.worker >= 0;
  const std::string app =
      application_name() + (worker ? " worker " + std::to_string(lane.worker) : "");
  auto conn =
      options_.connect ? options_.connect(options_.dsn, app) : connect_postgres(options_.dsn, app);
  if (!worker) store_.prepare(*conn);
  lane.held = -1;
  lane.conn = std::move(conn);
  try {
    take_lock(lane);
  } catch (...) {
    lane.conn.reset();
    throw;
  }
  if (!worker) {
    ever_connected_ = true;
    deadlock_timeout_ms_ =
        lane.conn->exec("SELECT setting::bigint FROM pg_settings WHERE name = 'deadlock_timeout'")
            .integer(0, 0, 0);
  }
  if (options_.control)
    options_.control->set_backend_pid(lane.worker + 1, lane.conn->backend_pid());
}

// Takes `order` in order (see Step::locks): the first waits up to `budget`,
// each later one only for what is left of it, and so do the statements run
// after them in the transaction (at least 1 ms: 0 would mean no limit). When
// a later lock times out while earlier ones are held, the application most
// likely takes that table first and was waiting for a lock this step held:
// the next attempt takes it first.
void ExecutorCore::add_queried_locks(Transaction& tx, const Step& step,
                                     std::vector<TableLock>& order) {
  if (!step.locks_query) return;
  Rows rows = tx.exec(*step.locks_query);
  for (size_t i = 0; i < rows.size(); ++i) {
    TableLock lock{rows.text(i, 0), rows.text(i, 1)};
    const bool known = std::any_of(order.begin(), order.end(),
                                   [&](const TableLock& l) { return l.table == lock.table; });
    if (!known) order.push_back(lock);
  }
}

void ExecutorCore::take_locks_first(Transaction& tx, std::vector<TableLock>& order,
                                    std::chrono::milliseconds budget, const std::string& step_id) {
  if (order.empty()) return;
  const auto start = std::chrono::steady_clock::now();
  auto left = budget;
  for (size_t i = 0; i < order.size(); ++i) {
    tx.exec("SET LOCAL lock_timeout = '" + std::to_string(left.count()) + "ms'");
    try {
      tx.exec("LOCK TABLE " + order[i].table + " IN " + order[i].mode + " MODE");
    } catch (const Error& e) {
      if (i == 0 || e.sqlstate() != "55P03") throw;
      std::vector<std::string> held;
      for (size_t j = 0; j < i; ++j) held.push_back(order[j].table);
      spdlog::warn(
          "step {}: timed out waiting for {} while holding {}, which its writers were likely "
          "waiting for: the next attempt takes {} first",
          step_id, order[i].table, join(held, ", "), order[i].table);
      std::rotate(order.begin(), order.begin() + static_cast<long>(i),
                  order.begin() + static_cast<long>(i) + 1);
      throw;
    }
    const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    left = std::max(std::chrono::milliseconds(1), budget - spent);
  }
  tx.exec("SET LOCAL lock_timeout = '" + std::to_string(left.count()) + "ms'");
}

std::chrono::milliseconds ExecutorCore::lock_wait(const Settings& st) {
  const long long deadlock = deadlock_timeout_ms_;
  if (deadlock <= 0 || st.lock_timeout.count() < deadlock) return st.lock_timeout;
  const std::chrono::milliseconds cut{std::max(1LL, deadlock * 9 / 10)};
  if (warned_lock_timeout_ms_.exchange(st.lock_timeout.count()) != st.lock_timeout.count()) {
    spdlog::warn(
        "{}: lock_timeout {}ms is not shorter than the server's deadlock_timeout {}ms; steps "
        "wait at most {}ms for a lock, so that in a deadlock with the application PostgreSQL "
        "cancels tandem's statement and not the application's transaction",
        spec_.name, st.lock_timeout.count(), deadlock, cut.count());
  }
  return cut;
}

void ExecutorCore::take_lock(Lane& lane) {
  Connection& conn = *lane.conn;
  const bool worker = lane.worker >= 0;
  if (worker && lane.held >= 0) {
    store_.release_range_lock(conn, lane.held);
    lane.held = -1;
  }
  if (worker && lane.range < 0) return;
  auto deadline = time_.now() + options_.lock_wait;
  std::string holder;
  while (worker ? !store_.try_range_lock(conn, lane.range, holder)
                : !store_.try_lock(conn, holder)) {
    if (time_.now() >= deadline) {
      throw LockHeldError("migration \"" + spec_.name + "\" is being run by another tandemd: " +
                          holder + ". Wait for it to finish or stop it, then run again.");
    }
    time_.sleep_for(std::chrono::milliseconds(200));
  }
  lane.held = lane.range;
}

void ExecutorCore::release(Lane& lane, bool close) {
  lane.range = -1;
  if (!close && lane.conn && lane.conn->is_open()) {
    try {
      take_lock(lane);  // lets go of the range's lock and takes none
      return;
    } catch (const std::exception& e) {
      spdlog::debug("worker {}: closing its session: {}", lane.worker, e.what());
    }
  }
  lane.conn.reset();
  lane.held = -1;
  if (options_.control) options_.control->set_backend_pid(lane.worker + 1, 0);
}

ExecutorCore::SessionScope::SessionScope(ExecutorCore& e) : e_(e) {
  // The first connection, the state schema and the lock go through the
  // retry path like everything else; only a server that cannot be reached
  // at all fails at once.
  e_.with_retries(
      "", "connecting", [] {}, [] { return false; });
}

ExecutorCore::SessionScope::~SessionScope() {
  for (auto& lane : e_.workers_) e_.release(*lane, true);
  e_.workers_.clear();
  e_.conn_.reset();
}

void ExecutorCore::with_session_timeouts(const std::function<void()>& work) {
  // Statements that cannot run in a transaction cannot use SET LOCAL; the
  // session settings are put back whatever happens.
  const Settings st = settings();
  conn_->exec("SET lock_timeout = '" + std::to_string(lock_wait(st).count()) +
              "ms'; SET statement_timeout = '" + std::to_string(st.statement_timeout.count()) +
              "ms'");
  try {
    work();
  } catch (const Error&) {
    if (conn_->is_open()) conn_->exec(kSessionLimitsSql);
    throw;
  }
  conn_->exec(kSessionLimitsSql);
}

void ExecutorCore::exec_outside_transaction(const std::string& sql, bool generates) {
  if (!generates) {
    conn_->exec(sql);
    return;
  }
  Rows statements = conn_->exec(sql);
  for (size_t i = 0; i < statements.size(); ++i) {
    spdlog::info("{}: {}", spec_.name, statements.text(i, 0));
    conn_->exec(statements.text(i, 0));
  }
}

}  // namespace tandem
