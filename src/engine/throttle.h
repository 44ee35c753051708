// The signals that hold a backfill back (docs/spec.md, "Throttling"): a
// daily window, replica lag, busy or lock-waiting sessions and a query of the
// operator's own. Reading them is one round trip (plus the throttle query and
// a heartbeat when configured); deciding is pure, so tests can drive it.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "db/connection.h"
#include "tandem/spec.h"

namespace tandem {

// A daily window in local time, "HH:MM-HH:MM"; it may cross midnight
// ("22:00-06:00"). Minutes after midnight; start != end.
struct DailyWindow {
  int start = 0;
  int end = 0;
  bool contains(int minute_of_day) const;
  // Minutes from `minute_of_day` until the window opens (0 when inside it).
  int minutes_until_open(int minute_of_day) const;
};
std::optional<DailyWindow> parse_window(const std::string& text);
// Minutes after local midnight.
int local_minute_of_day(std::chrono::system_clock::time_point t);

// What the database said, before any decision.
struct ThrottleReadings {
  long long active_sessions = 0;
  long long lock_waits = 0;
  long long replicas = 0;
  double replica_lag_seconds = 0;    // the slowest replica's, by heartbeat
  std::optional<std::string> query;  // the throttle query's first value; nullopt: no row or NULL
  std::string query_error;           // the throttle query failed
  std::optional<long long> wal_lsn;  // bytes of WAL written so far, when watched
  // From wal_lsn and the readings before it (WalRate).
  std::optional<double> wal_bytes_per_second;
  double wal_bytes_ahead = 0;
  // throttle_commit_latency's probe: how long its one-row commit took, and
  // why it failed if it did (it then counts as slow as it took).
  std::optional<double> commit_seconds;
  std::string commit_error;
  // Quick probes in a row the commit latency hold still waits for before it
  // lets go (CommitLatencyHold); 0: not held.
  int commit_quick_owed = 0;
  int minute_of_day = 0;  // local time
};

struct ThrottleVerdict {
  // "" (go on), or: outside_window, replica_lag, wal_rate, commit_latency,
  // active_sessions, lock_waits, throttle_query. A critical verdict pauses
  // the migration.
  std::string reason;
  std::string detail;  // "replica lag 12.3s over throttle_replica_lag 5s"
  bool critical = false;
};

// Critical thresholds first, then the throttles in the order above.
ThrottleVerdict decide_throttle(const Settings& st, const ThrottleReadings& r);

// Whether any signal needs the database.
bool reads_database(const Settings& st);

// Reads the signals `st` asks for on `conn` (outside any transaction), writing
// a heartbeat first when replica lag or commit latency is watched. Sessions whose
// application_name starts with `own_sessions` (when not empty) are not counted.
// With `tables` (schema.name), lock waits count only the sessions waiting
// for a lock on one of them or blocked by one of the own sessions (a row a
// batch holds); without, every session waiting for a lock.
ThrottleReadings read_throttle_signals(Connection& conn, const Settings& st,
                                       const std::string& own_sessions = "",
                                       const std::vector<std::string>& tables = {});

// A throttle query's value means "throttle": true, or a number above zero.
bool throttle_value_set(const std::string& value);

// throttle_wal_rate_mb's bookkeeping, from successive readings of the
// server's WAL position: a budget that grows at the cap (up to one second's
// worth unspent) and shrinks by the WAL written, so the cap holds on average
// however coarse the readings; and, to show, the rate over the last kWindow.
// While the budget is already spent (the backfill holds), what others write
// deepens the debt to kMaxHeldDebt of the cap's worth at most: the backfill
// goes on soon after the application quiets down instead of repaying WAL it
// did not write. Thread-safe: the executor's workers read the throttle too.
class WalRate {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kWindow{2000};
  static constexpr double kMaxHeldDebt = 2.0;  // seconds of the cap
  struct Reading {
    // Over the last kWindow; nullopt while the readings span less than a
    // tenth of it (the throttle is read five times a second).
    std::optional<double> bytes_per_second;
    double bytes_ahead = 0;  // written beyond the budget: hold until it is repaid
  };
  Reading observe(long long lsn, double cap_bytes_per_second, Clock::time_point now = Clock::now());

 private:
  std::mutex mu_;
  std::deque<std::pair<Clock::time_point, long long>> readings_;
  double budget_ = 0;  // bytes that may still be written; negative: ahead of the cap
};

// throttle_commit_latency's hold: one probe over the limit holds the
// backfill, and the hold lets go after kQuickToLift probes in a row under it.
// A commit that arrives while another session flushes the WAL often rides on
// that flush and waits only for the rest of it, so a quick probe among slow
// ones is luck, not a sign that commits are quick again. Thread-safe.
class CommitLatencyHold {
 public:
  static constexpr int kQuickToLift = 3;
  // The probe's time (nullopt: not probed) against the limit (0: off).
  // Returns how many more quick probes the hold waits for: 0 once it has
  // let go (or never held), kQuickToLift after a slow probe.
  int observe(std::optional<double> seconds, std::chrono::milliseconds limit);

 private:
  std::mutex mu_;
  int owed_ = 0;
};

// How a vacuum a step waits for is going, from pg_stat_progress_vacuum
// readings: its phase, the heap blocks scanned, and while it scans the heap,
// the time left at its pace since this first saw that vacuum (by pid).
class VacuumPace {
 public:
  using Clock = std::chrono::steady_clock;
  std::string describe(long long pid, const std::string& phase, long long scanned, long long total,
                       Clock::time_point now = Clock::now());

 private:
  struct FirstSeen {
    long long scanned;
    Clock::time_point at;
  };
  std::map<long long, FirstSeen> first_;  // by pid
};

}  // namespace tandem
