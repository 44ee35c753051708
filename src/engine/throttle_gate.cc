#include "engine/throttle_gate.h"

#include <spdlog/spdlog.h>

#include "engine/run_errors.h"

namespace tandem {

ThrottleVerdict ThrottleGate::verdict(Connection& conn, const Settings& st) {
  if (ctx_.control && ctx_.control->manually_throttled()) {
    return {"manual", "throttled by an operator", false};
  }
  ThrottleReadings r = read_throttle_signals(conn, st, own_, tables_);
  if (r.wal_lsn) {
    const WalRate::Reading w = wal_rate_.observe(*r.wal_lsn, st.throttle_wal_rate_mb * 1048576.0);
    r.wal_bytes_per_second = w.bytes_per_second;
    r.wal_bytes_ahead = w.bytes_ahead;
  }
  r.commit_quick_owed = commit_hold_.observe(r.commit_seconds, st.throttle_commit_latency);
  return decide_throttle(st, r);
}

ThrottleVerdict ThrottleGate::poll(std::string& last, TimeSource::Clock::time_point& since) {
  ThrottleVerdict v;
  Connection* conn = nullptr;
  try {
    conn = &session_();
    v = verdict(*conn, ctx_.settings());
  } catch (const LockHeldError&) {
    throw;
  } catch (const Error& e) {
    // The batches' own retries deal with a lost connection.
    spdlog::warn("cannot read the throttle signals: {}", e.what());
  }
  if (v.critical) {
    if (!last.empty()) {
      const double held = ctx_.time->seconds_since(since);
      ctx_.report([&](ProgressSink& p) { p.throttling("", held); });
    }
    spdlog::error(
        "ALERT: migration {} paused: {}. No work is lost; resume it when the cause "
        "is gone (tandemctl resume {}, or run the same command again)",
        ctx_.migration, v.detail, ctx_.migration);
    try {
      ctx_.store->event(*conn, "critical_pause", std::nullopt, "", ctx_.actor,
                        {{"reason", v.reason}, {"detail", v.detail}});
    } catch (const Error& e) {
      spdlog::warn("cannot record the pause in the event log: {}", e.what());
    }
    throw CriticalPauseError(v.detail);
  }
  if (!v.reason.empty() || !last.empty()) {
    const double held = last.empty() ? 0 : ctx_.time->seconds_since(since);
    ctx_.report([&](ProgressSink& p) { p.throttling(v.reason, held); });
  }
  since = ctx_.time->now();
  if (v.reason != last) {
    say(v, last);
    last = v.reason;
  }
  return v;
}

void ThrottleGate::say(const ThrottleVerdict& v, const std::string& last) {
  // A WAL rate cap or a commit latency limit holds and lets go every second
  // or so: the first hold of each is said at info level, the rest at debug
  // (status and metrics show them all).
  const std::string& paced = v.reason.empty() ? last : v.reason;
  const unsigned bit = paced == "wal_rate" ? 1u : paced == "commit_latency" ? 2u : 0u;
  const auto level =
      (pacing_said_.fetch_or(bit) & bit) != 0 ? spdlog::level::debug : spdlog::level::info;
  if (!v.reason.empty()) {
    spdlog::log(level, "{}: throttled: {}{}", ctx_.migration, v.detail,
                level == spdlog::level::info && bit != 0
                    ? "; further holds for this reason are logged at debug level"
                    : "");
  } else {
    spdlog::log(level, "{}: throttle lifted", ctx_.migration);
  }
}

bool ThrottleGate::wait() {
  std::string last;
  auto since = ctx_.time->now();
  for (;;) {
    if (poll(last, since).reason.empty()) return true;
    for (int i = 0; i < 5; ++i) {
      if (ctx_.stop_requested()) {
        const double held = ctx_.time->seconds_since(since);
        ctx_.report([&](ProgressSink& p) { p.throttling("", held); });
        return false;
      }
      ctx_.time->sleep_for(std::chrono::milliseconds(100));
    }
  }
}

}  // namespace tandem
