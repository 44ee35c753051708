// Progress reporting for long work: a rate meter and the sinks that show it.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "tandem/plan.h"

namespace tandem {

// Rows per second, smoothed over recent batches (exponentially weighted, so a
// pause or a burst moves the estimate without whipsawing the ETA).
class RateMeter {
 public:
  explicit RateMeter(double smoothing = 0.3) : smoothing_(smoothing) {}
  void add(long long rows, double seconds);
  double rows_per_second() const { return rate_; }
  // Seconds left for `remaining` rows; nullopt until a rate is known.
  std::optional<double> eta_seconds(long long remaining) const;

 private:
  double smoothing_;
  double rate_ = 0;
  bool primed_ = false;
};

struct ProgressUpdate {
  const Step* step = nullptr;
  long long rows_done = 0;
  std::optional<long long> rows_total;
  double rows_per_second = 0;
  std::optional<double> eta_seconds;
  // The step's key ranges, how many are finished, and how many workers are
  // running batches over them.
  int ranges = 1;
  int ranges_finished = 0;
  int workers = 1;
};

class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  virtual void phase_started(Phase phase) = 0;
  virtual void step_started(const Step& step) = 0;
  virtual void progress(const ProgressUpdate& update) = 0;
  virtual void step_finished(const Step& step, double seconds) = 0;
  // A step's rollback committed (rollback runs the steps in reverse order).
  virtual void step_rolled_back(const Step& /*step*/) {}
  // One backfill or verify batch of up to `batch_size` keys committed: `rows`
  // rows in `seconds`, of which `mismatches` differed (verify).
  virtual void batch_done(const Step& /*step*/, int /*batch_size*/, long long /*rows*/,
                          double /*seconds*/, long long /*mismatches*/) {}
  // Throttle reports: the backfill is now held back for `reason` ("manual",
  // "active_sessions", "lock_waits", ...; "autovacuum": a DDL step waits for
  // one it may not cancel; empty: it goes on), and `seconds` passed held back
  // for the reason of the previous report.
  virtual void throttling(const std::string& /*reason*/, double /*seconds*/) {}
  // An attempt failed with a retryable error and will be retried.
  virtual void retrying(const std::string& /*sqlstate*/) {}
  // A shadow-read pair compared one parameter set: whether the answers
  // differed, and each side's time.
  virtual void shadow_compared(const std::string& /*pair*/, bool /*differed*/, double /*old_ms*/,
                               double /*new_ms*/) {}
};

// On a terminal: one status line rewritten in place. Otherwise: log lines,
// at most one progress line every `interval`.
std::unique_ptr<ProgressSink> make_terminal_progress();
std::unique_ptr<ProgressSink> make_log_progress(std::chrono::seconds interval);

std::string format_progress(const ProgressUpdate& u);
// `line` cut to `width` columns (UTF-8 aware), ending in "…" when cut: the
// progress line redrawn in place must not wrap.
std::string fit_to_width(const std::string& line, int width);

}  // namespace tandem
