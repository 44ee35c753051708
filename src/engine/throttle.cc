#include "engine/throttle.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "util/duration.h"
#include "util/ident.h"

namespace tandem {

namespace {

constexpr int kDay = 24 * 60;

std::optional<int> parse_clock(const std::string& s) {
  int h = 0, m = 0;
  char extra = 0;
  if (s.size() != 5 || std::sscanf(s.c_str(), "%2d:%2d%c", &h, &m, &extra) != 2) {
    return std::nullopt;
  }
  if (h < 0 || h > 23 || m < 0 || m > 59) return std::nullopt;
  return h * 60 + m;
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fs", s);
  return buf;
}

// Replica lag over `limit` (named `setting`), when there is a replica to lag.
std::optional<ThrottleVerdict> lag_over(const ThrottleReadings& r, std::chrono::milliseconds limit,
                                        const char* setting, bool critical) {
  const auto lag = std::chrono::milliseconds(static_cast<long long>(r.replica_lag_seconds * 1000));
  if (limit.count() == 0 || r.replicas == 0 || lag <= limit) return std::nullopt;
  return ThrottleVerdict{"replica_lag",
                         "replica lag " + seconds_text(r.replica_lag_seconds) + " over " + setting +
                             " " + format_duration(limit),
                         critical};
}

// Active sessions over `limit` (named `setting`).
std::optional<ThrottleVerdict> sessions_over(const ThrottleReadings& r, int limit,
                                             const char* setting, bool critical) {
  if (limit == 0 || r.active_sessions <= limit) return std::nullopt;
  return ThrottleVerdict{"active_sessions",
                         std::to_string(r.active_sessions) + " active sessions over " + setting +
                             " " + std::to_string(limit),
                         critical};
}

}  // namespace

bool DailyWindow::contains(int minute) const {
  if (start < end) return minute >= start && minute < end;
  return minute >= start || minute < end;  // crosses midnight
}

int DailyWindow::minutes_until_open(int minute) const {
  if (contains(minute)) return 0;
  return ((start - minute) % kDay + kDay) % kDay;
}

std::optional<DailyWindow> parse_window(const std::string& text) {
  auto dash = text.find('-');
  if (dash == std::string::npos) return std::nullopt;
  auto a = parse_clock(text.substr(0, dash));
  auto b = parse_clock(text.substr(dash + 1));
  if (!a || !b || *a == *b) return std::nullopt;
  return DailyWindow{*a, *b};
}

int local_minute_of_day(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  localtime_r(&tt, &tm);
  return tm.tm_hour * 60 + tm.tm_min;
}

bool throttle_value_set(const std::string& v) {
  if (v == "t" || v == "true" || v == "on" || v == "yes") return true;
  char* end = nullptr;
  double d = std::strtod(v.c_str(), &end);
  return !v.empty() && end && *end == '\0' && d > 0;
}

ThrottleVerdict decide_throttle(const Settings& st, const ThrottleReadings& r) {
  if (auto v = lag_over(r, st.critical_replica_lag, "critical_replica_lag", true)) return *v;
  if (auto v = sessions_over(r, st.critical_active_sessions, "critical_active_sessions", true)) {
    return *v;
  }
  if (!st.backfill_window.empty()) {
    auto w = parse_window(st.backfill_window);
    if (w && !w->contains(r.minute_of_day)) {
      return {"outside_window",
              "outside backfill_window " + st.backfill_window + " (opens in " +
                  std::to_string(w->minutes_until_open(r.minute_of_day)) + " min)",
              false};
    }
  }
  if (auto v = lag_over(r, st.throttle_replica_lag, "throttle_replica_lag", false)) return *v;
  if (st.throttle_wal_rate_mb > 0 && r.wal_bytes_ahead > 0) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "WAL written %.1f MB ahead of throttle_wal_rate_mb %d",
                  r.wal_bytes_ahead / 1048576.0, st.throttle_wal_rate_mb);
    std::string detail = buf;
    if (r.wal_bytes_per_second) {
      std::snprintf(buf, sizeof buf, " (%.1f MB/s over the last 2s)",
                    *r.wal_bytes_per_second / 1048576.0);
      detail += buf;
    }
    return {"wal_rate", detail, false};
  }
  if (st.throttle_commit_latency.count() > 0 && r.commit_seconds) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f ms", *r.commit_seconds * 1000);
    const std::string limit = format_duration(st.throttle_commit_latency);
    if (*r.commit_seconds * 1000 > st.throttle_commit_latency.count()) {
      return {"commit_latency",
              (r.commit_error.empty() ? "a one-row commit took " + std::string(buf)
                                      : "a one-row commit failed after " + std::string(buf) + " (" +
                                            r.commit_error + ")") +
                  ", over throttle_commit_latency " + limit,
              false};
    }
    if (r.commit_quick_owed > 0) {
      return {"commit_latency",
              "a one-row commit took " + std::string(buf) + ", under throttle_commit_latency " +
                  limit + ": the hold waits for " + std::to_string(r.commit_quick_owed) +
                  " more such in a row",
              false};
    }
  }
  if (auto v = sessions_over(r, st.throttle_active_sessions, "throttle_active_sessions", false)) {
    return *v;
  }
  if (st.throttle_lock_waits > 0 && r.lock_waits > st.throttle_lock_waits) {
    return {"lock_waits",
            std::to_string(r.lock_waits) +
                " sessions waiting for a lock on the migration's tables or rows, over "
                "throttle_lock_waits " +
                std::to_string(st.throttle_lock_waits),
            false};
  }
  if (!st.throttle_query.empty()) {
    if (!r.query_error.empty()) {
      // Never faster than the operator asked: a query that cannot answer holds the backfill.
      return {"throttle_query", "throttle_query failed: " + r.query_error, false};
    }
    if (r.query && throttle_value_set(*r.query)) {
      return {"throttle_query", "throttle_query returned " + *r.query, false};
    }
  }
  return {};
}

bool reads_database(const Settings& st) {
  return st.throttle_active_sessions > 0 || st.throttle_lock_waits > 0 ||
         st.critical_active_sessions > 0 || st.throttle_replica_lag.count() > 0 ||
         st.critical_replica_lag.count() > 0 || !st.throttle_query.empty() ||
         st.throttle_wal_rate_mb > 0 || st.throttle_commit_latency.count() > 0;
}

// Long, and left so: one reading per signal the settings turn on, in the
// order decide_throttle weighs them.
ThrottleReadings read_throttle_signals(Connection& conn, const Settings& st,
                                       const std::string& own_sessions,
                                       const std::vector<std::string>& tables) {
  ThrottleReadings r;
  r.minute_of_day = local_minute_of_day(std::chrono::system_clock::now());
  if (!reads_database(st)) return r;
  const bool lag = st.throttle_replica_lag.count() > 0 || st.critical_replica_lag.count() > 0;
  const bool probe = st.throttle_commit_latency.count() > 0;
  const std::string heartbeat =
      "INSERT INTO tandem.heartbeat (at, lsn)"
      " VALUES (clock_timestamp(), pg_current_wal_insert_lsn())";
  if (lag && !probe) {
    // The heartbeat keeps WAL moving, so an idle primary still shows a
    // stalled replica's lag.
    conn.exec(heartbeat);
  }
  if (probe) {
    // The heartbeat (for the replica lag too), flushed to the WAL at commit as the application's
    // commits are, in three round trips: the time a client's commit waits
    // now. Not for synchronous standbys (`local`): nothing bounds a commit's
    // wait for one, and a standby that is gone would hang this session.
    // A probe that fails took at least as long as it ran.
    const auto t0 = std::chrono::steady_clock::now();
    try {
      Transaction tx(conn);
      conn.exec("SET LOCAL synchronous_commit = local; " + heartbeat);
      tx.commit();
    } catch (const Error& e) {
      if (!conn.is_open()) throw;
      r.commit_error = e.what();
    }
    r.commit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  if (lag || probe) {
    // Rows older than the longest lag worth telling apart. Heartbeats are
    // written in WAL order, so the old ones are those before the first
    // recent one, found and deleted through the index on lsn: a few rows a
    // time, not a scan of the hour's rows (up to twenty a second).
    conn.exec(
        "DELETE FROM tandem.heartbeat WHERE lsn < (SELECT lsn FROM tandem.heartbeat"
        " WHERE at >= clock_timestamp() - interval '1 hour' ORDER BY lsn LIMIT 1)");
  }
  // A lock wait that concerns the migration: on one of its tables, or behind
  // one of its own sessions (a client updating a row a batch holds waits for
  // that batch's transaction). pg_blocking_pids runs only for waiting sessions.
  std::string ours = "true";
  if (!tables.empty()) {
    ours =
        "(EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        "   JOIN pg_namespace n ON n.oid = c.relnamespace"
        "  WHERE l.pid = a.pid AND NOT l.granted AND n.nspname || '.' || c.relname IN (" +
        quote_literals(tables) +
        "))"
        " OR ($1 <> '' AND EXISTS (SELECT 1 FROM pg_stat_activity b"
        "  WHERE b.pid = ANY (pg_blocking_pids(a.pid))"
        "    AND starts_with(coalesce(b.application_name, ''), $1))))";
  }
  // The replica lag: the age of the oldest heartbeat the slowest physical
  // standby has not replayed yet.
  Rows rows = conn.exec(
      "SELECT count(*) FILTER (WHERE state = 'active'),"
      "       count(*) FILTER (WHERE wait_event_type = 'Lock' AND " +
          ours +
          "),"
          "       " +
          std::string(
              lag ? "(SELECT count(*) FROM pg_stat_replication s"
                    "   JOIN pg_stat_activity a USING (pid) WHERE a.datid IS NULL),"
                    " (SELECT coalesce(extract(epoch FROM clock_timestamp() - min(h.at)), 0)"
                    "    FROM tandem.heartbeat h"
                    "   WHERE h.lsn > (SELECT min(coalesce(s.replay_lsn, '0/0'))"
                    "                    FROM pg_stat_replication s"
                    "                    JOIN pg_stat_activity a USING (pid)"
                    "                   WHERE a.datid IS NULL))"
                  : "0, 0") +
          (st.throttle_wal_rate_mb > 0 ? ", pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
                                       : "") +
          " FROM pg_stat_activity a WHERE backend_type = 'client backend'"
          " AND datname = current_database() AND pid <> pg_backend_pid()"
          " AND ($1 = '' OR NOT starts_with(coalesce(application_name, ''), $1))",
      {own_sessions});
  r.active_sessions = rows.integer(0, 0);
  r.lock_waits = rows.integer(0, 1);
  r.replicas = rows.integer(0, 2);
  r.replica_lag_seconds = std::strtod(rows.text(0, 3).c_str(), nullptr);
  if (st.throttle_wal_rate_mb > 0) r.wal_lsn = rows.integer(0, 4);
  if (!st.throttle_query.empty()) {
    try {
      Transaction tx(conn);
      conn.exec("SET LOCAL transaction_read_only = on; SET LOCAL statement_timeout = '5s'");
      Rows q = conn.exec(st.throttle_query);
      if (!q.empty() && !q.columns.empty() && !q.is_null(0, 0)) r.query = q.text(0, 0);
      tx.commit();
    } catch (const Error& e) {
      if (!conn.is_open()) throw;
      r.query_error = e.what();
    }
  }
  return r;
}

int CommitLatencyHold::observe(std::optional<double> seconds, std::chrono::milliseconds limit) {
  std::lock_guard<std::mutex> l(mu_);
  if (!seconds || limit.count() <= 0) {
    owed_ = 0;
  } else if (*seconds * 1000 > limit.count()) {
    owed_ = kQuickToLift;
  } else if (owed_ > 0) {
    --owed_;
  }
  return owed_;
}

WalRate::Reading WalRate::observe(long long lsn, double cap, Clock::time_point now) {
  std::lock_guard<std::mutex> l(mu_);
  if (readings_.empty()) {
    budget_ = cap;
  } else {
    const auto& [at, last] = readings_.back();
    const double seconds = std::chrono::duration<double>(now - at).count();
    const double before = budget_;
    budget_ = std::min(budget_ + cap * seconds, cap) - static_cast<double>(lsn - last);
    if (before < 0) budget_ = std::max(budget_, std::min(before, -cap * kMaxHeldDebt));
  }
  readings_.emplace_back(now, lsn);
  // Keep the newest reading older than the window, so the rate spans at
  // least the window once there is one.
  while (readings_.size() > 2 && now - readings_[1].first >= kWindow) readings_.pop_front();
  Reading r;
  r.bytes_ahead = std::max(0.0, -budget_);
  const auto& [t0, lsn0] = readings_.front();
  const double seconds = std::chrono::duration<double>(now - t0).count();
  if (seconds >= std::chrono::duration<double>(kWindow).count() / 10) {
    r.bytes_per_second = static_cast<double>(lsn - lsn0) / seconds;
  }
  return r;
}

std::string VacuumPace::describe(long long pid, const std::string& phase, long long scanned,
                                 long long total, Clock::time_point now) {
  const FirstSeen& first = first_.emplace(pid, FirstSeen{scanned, now}).first->second;
  std::string out = "its phase: " + phase;
  if (total <= 0) return out;
  out += ", " + std::to_string(scanned) + " of " + std::to_string(total) +
         " heap blocks scanned (" + std::to_string(scanned * 100 / total) + "%)";
  const double seconds = std::chrono::duration<double>(now - first.at).count();
  if (phase != "scanning heap" || scanned <= first.scanned || seconds < 1) return out;
  const double left = (total - scanned) * seconds / (scanned - first.scanned);
  return out + ", about " +
         format_duration(std::chrono::milliseconds(static_cast<long long>(left * 1000))) +
         " left of the heap scan at its pace so far";
}

}  // namespace tandem
